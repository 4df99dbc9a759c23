"""Grounding in the house archive: a job that asks for background gets the project's most
relevant archive passages in its prompt, within the model's context (counted with the tiny test
model's own tokenizer), and its drafts record them; another project's archive is never used."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

from generation import grounding, runner, services
from generation.models import Draft
from review.services import retrieval
from tests.factories import ARCHIVE, FLOOD, HARBOUR, LIBRARY, make_archive, reset_indexes

FLOOD_BRIEF = {
    "headline": "River floods the valley again",
    "lede": "Rescue crews used boats to reach people on rooftops after heavy rain in Millbrook.",
}


@pytest.fixture(autouse=True)
def _env() -> Any:
    reset_indexes()
    retrieval.forget_all()
    yield
    reset_indexes()
    retrieval.forget_all()


@pytest.fixture
def archive(cast: dict) -> Any:
    return make_archive(cast["newsroom"])


def _run(job: Any) -> list[Draft]:
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return list(Draft.objects.filter(job=job).order_by("candidate__index"))


def test_retrieval_fuses_both_rankers_and_ranks_the_story_on_the_brief_first(
    cast: dict, archive: Any
) -> None:
    query = grounding.brief_of(variables=FLOOD_BRIEF, seed_text="")
    sources, info = retrieval.background_passages(project_id=cast["newsroom"].pk, query=query, k=3)
    assert sources[0]["title"] == ARCHIVE[FLOOD]["title"]
    top = sources[0]
    # both rankers found it: the fused score is the sum of the two reciprocal ranks
    assert top["lexical_rank"] == 1 and top["semantic_rank"] == 1
    assert top["score"] == pytest.approx(2 / (retrieval.RRF_K + 1), abs=1e-6)
    assert info["semantic"]["hits"] > 0 and info["lexical"]["hits"] > 0
    # offsets point into the document's text
    from review.models import ArchiveDocument

    doc = ArchiveDocument.objects.get(pk=top["document_id"])
    assert doc.text[top["start"] : top["end"]] == top["text"]
    assert [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)


def test_only_the_projects_own_archive_is_ever_retrieved(cast: dict) -> None:
    # the flood story lives only in the other desk's archive
    make_archive(cast["other"], [ARCHIVE[FLOOD]])
    make_archive(cast["newsroom"], [ARCHIVE[HARBOUR], ARCHIVE[LIBRARY]])
    query = grounding.brief_of(variables=FLOOD_BRIEF, seed_text="")
    sources, _ = retrieval.background_passages(project_id=cast["newsroom"].pk, query=query, k=8)
    assert ARCHIVE[FLOOD]["title"] not in {s["title"] for s in sources}
    assert {s["document_id"] for s in sources} <= set(
        cast["newsroom"].archive.values_list("pk", flat=True)
    )
    # and a published draft of the project is a plagiarism source, never background
    assert all(s["document_id"] for s in sources)


@pytest.mark.parametrize("layout", grounding.LAYOUTS)
def test_the_prompt_carries_the_retrieved_passages_within_the_models_context(
    cast: dict,
    archive: Any,
    language_model: Any,
    news_template: Any,
    hold_queue: list,
    monkeypatch: Any,
    layout: str,
) -> None:
    # given: the product's layout for background is this one
    monkeypatch.setattr(grounding, "DEFAULT_LAYOUT", layout)
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables=FLOOD_BRIEF,
        n_candidates=2,
        base_seed=5,
        background=3,
    )
    # when
    drafts = _run(job)
    # then
    record = drafts[0].background
    assert record["requested"] == 3
    assert record["layout"] == layout
    assert layout in record["note"]
    kept = record["sources"]
    assert kept and kept[0]["title"] == ARCHIVE[FLOOD]["title"]
    prompt = drafts[0].prompt
    for source in kept:
        assert source["text"].removesuffix(" ...") in prompt
        if layout != grounding.LAYOUT_EXTRACT:  # the extract lists sentences, not sources
            assert source["title"] in prompt
    header = {
        grounding.LAYOUT_QUOTED: grounding.QUOTED_HEADER,
        grounding.LAYOUT_EXTRACT: grounding.EXTRACT_HEADER,
    }.get(layout, grounding.HEADER)
    if layout == grounding.LAYOUT_AFTER:
        assert prompt.index(FLOOD_BRIEF["lede"]) < prompt.index(header)
    else:  # before the brief in the user message, or in the system turn that precedes it
        assert prompt.index(header) < prompt.index(FLOOD_BRIEF["lede"])
    if layout == grounding.LAYOUT_INSTRUCTED:
        assert prompt.index(FLOOD_BRIEF["lede"]) < prompt.index(grounding.USE_FACTS)
    else:
        assert grounding.USE_FACTS not in prompt
    # counted with the tiny model's real tokenizer, the prompt leaves room for the new tokens
    tokenizer = AutoTokenizer.from_pretrained(language_model.source)
    from transformers import AutoConfig

    context = AutoConfig.from_pretrained(language_model.source).n_positions
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    max_new = job.settings["max_new_tokens"]
    assert prompt_tokens + max_new <= context
    assert record["context_length"] == context
    assert record["budget_tokens"] == context - max_new
    if layout != grounding.LAYOUT_EXTRACT:
        # three passages of about 100 words do not all fit 256 positions: the record says so
        assert len(kept) + len(record["dropped"]) == 3
        assert any(s.get("trimmed") for s in kept) or record["dropped"]
        assert "to fit" in record["note"] or "no room" in record["note"]
    assert all("text" not in s for s in record["dropped"])
    # every draft of the job records the same background
    assert all(d.background == record for d in drafts)


def test_the_extract_keeps_the_passages_sentences_nearest_the_brief() -> None:
    sources = [
        {
            "title": "Flood",
            "text": "The mayor spoke on Monday. Boats rescued people from rooftops in Millbrook. "
            'Rain fell for three days. He said "we will rebuild".',
        },
        {"title": "Harbour", "text": "The harbour reopened. Ships returned to the port."},
    ]
    brief = "Rescue crews used boats to reach people on rooftops after heavy rain in Millbrook."
    out = grounding.extract_sentences(sources, brief=brief)  # type: ignore[arg-type]
    # the two sentences sharing words with the brief, in the passage's order; the passage with
    # none keeps its first sentences
    assert out[0]["text"] == (
        "Boats rescued people from rooftops in Millbrook. Rain fell for three days."
    )
    assert out[0]["title"] == "Flood"
    assert sum(len(s["text"].split(". ")) for s in out) <= grounding.EXTRACT_TOTAL


def test_a_job_without_background_has_none(
    cast: dict, archive: Any, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables=FLOOD_BRIEF,
        base_seed=5,
    )
    [draft] = _run(job)
    assert draft.background == {}
    assert grounding.HEADER not in draft.prompt


def test_a_template_asks_for_background_and_the_job_may_override_it(
    cast: dict, language_model: Any
) -> None:
    template = services.template_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Grounded report",
        body="Write a news report: {{brief}}",
        variables=["brief"],
        background=2,
    )
    version = template.current_version
    asked = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=version,
        variables={"brief": "floods"},
    )
    assert asked.background == 2
    none = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=version,
        variables={"brief": "floods"},
        background=0,
    )
    assert none.background == 0
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as err:
        services.job_create(
            project=cast["newsroom"], user=cast["bob"], seed_text="floods", background=99
        )
    assert "background" in err.value.message_dict


@pytest.mark.parametrize("layout", [x for x in grounding.LAYOUTS if x != grounding.LAYOUT_EXTRACT])
def test_fit_background_trims_then_drops_and_never_exceeds_the_budget(layout: str) -> None:
    sources = [
        {"title": f"Doc {i}", "text": " ".join(f"word{i}x{j}" for j in range(50))} for i in range(3)
    ]

    def count(prompt: str) -> int:
        return len(prompt.split())

    system, user, record = grounding.fit_background(
        sources=sources,  # type: ignore[arg-type]
        user_text="Brief: floods",
        system_text="House style.",
        render=lambda s, u: f"{s}\n{u}",
        count_tokens=count,
        context_length=115,
        max_new_tokens=10,
        layout=layout,
    )
    assert count(f"{system}\n{user}") <= 105
    assert record["layout"] == layout
    assert [s["title"] for s in record["sources"]] == ["Doc 0", "Doc 1"]
    assert record["sources"][1]["trimmed"] is True
    assert [s["title"] for s in record["dropped"]] == ["Doc 2"]
    for source in record["sources"]:
        assert source["text"].removesuffix(" ...") in f"{system}\n{user}"
    if layout == grounding.LAYOUT_SYSTEM:
        assert user == "Brief: floods"
        assert system.startswith("House style.")
    else:
        assert system == "House style."
        assert "Brief: floods" in user
    if layout == grounding.LAYOUT_BEFORE:
        assert user.endswith("Brief: floods")


def test_an_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="layout"):
        grounding.fit_background(
            sources=[],
            user_text="x",
            render=lambda s, u: u,
            count_tokens=len,
            context_length=None,
            max_new_tokens=1,
            layout="sideways",
        )


def test_the_draft_page_and_api_list_the_background_with_links_for_members_only(
    cast: dict, archive: Any, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    from django.test import Client
    from django.urls import reverse

    from review.models import ArchiveDocument

    # given: a job asked for background through the generate form
    client = Client()
    client.force_login(cast["bob"])
    response = client.post(
        reverse("generate", args=["newsroom"]),
        {
            "template": news_template.template_id,
            f"var.{news_template.template_id}.headline": FLOOD_BRIEF["headline"],
            f"var.{news_template.template_id}.lede": FLOOD_BRIEF["lede"],
            "n_candidates": "1",
            "seed": "3",
            "background": "2",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from generation.models import GenerationJob

    job = GenerationJob.objects.latest("pk")
    assert job.background == 2
    [draft] = _run(job)
    flood = ArchiveDocument.objects.get(title=ARCHIVE[FLOOD]["title"])
    link = reverse("document_detail", args=["newsroom", flood.pk])
    # when / then: the draft page lists the sources with links to the archive documents
    page = client.get(reverse("draft_detail", args=["newsroom", draft.pk])).content.decode()
    assert "Background from the archive" in page
    assert f'href="{link}"' in page
    assert draft.background["note"] in page
    # the API gives the same record
    data = client.get(f"/api/v1/drafts/{draft.pk}/").json()
    assert data["background"]["sources"][0]["document_id"] == flood.pk
    assert data["background"]["sources"][0]["text"] in draft.prompt
    # another project's member sees neither
    outsider = Client()
    outsider.force_login(cast["eve"])
    assert outsider.get(reverse("draft_detail", args=["newsroom", draft.pk])).status_code == 404
    assert outsider.get(f"/api/v1/drafts/{draft.pk}/").status_code in {403, 404}


def test_a_bad_background_value_is_refused_naming_the_field(
    cast: dict, language_model: Any
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(cast["bob"])
    response = client.post(
        "/api/v1/projects/newsroom/jobs/",
        {"seed_text": "Floods in the valley", "background": 9},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "background" in response.json()


def test_a_free_prompt_is_grounded_too(
    cast: dict, archive: Any, language_model: Any, hold_queue: list
) -> None:
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        seed_text="Write a short news report: boats rescue people from rooftops in Millbrook.",
        base_seed=1,
        background=1,
    )
    [draft] = _run(job)
    [source] = draft.background["sources"]
    assert source["title"] == ARCHIVE[FLOOD]["title"]
    assert draft.background["query"] == job.seed_text
    assert grounding.supplied_texts(draft.background) == [source["text"]]
    assert source["text"].removesuffix(" ...") in draft.prompt


def test_a_failing_archive_search_writes_the_drafts_without_background_and_says_why(
    cast: dict, archive: Any, language_model: Any, hold_queue: list, monkeypatch: Any
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("index file unreadable")

    monkeypatch.setattr(grounding, "_retriever", broken)
    job = services.job_create(
        project=cast["newsroom"], user=cast["bob"], seed_text="Floods", base_seed=1, background=2
    )
    [draft] = _run(job)
    assert draft.background["sources"] == []
    assert draft.background["note"] == (
        "No archive background was given: RuntimeError: index file unreadable."
    )
    assert grounding.HEADER not in draft.prompt


def test_a_system_turn_carrying_background_is_no_shared_preamble() -> None:
    source = {"title": "Doc", "text": "Facts."}
    assert grounding.shared_system({})  # no background
    assert grounding.shared_system({"layout": grounding.LAYOUT_SYSTEM, "sources": []})
    assert grounding.shared_system({"layout": grounding.LAYOUT_BEFORE, "sources": [source]})
    assert not grounding.shared_system({"layout": grounding.LAYOUT_SYSTEM, "sources": [source]})
