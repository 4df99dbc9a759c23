"""Evaluation against real articles: a held-out set of archive documents, briefs made from them,
candidates written by the tiny test model through the real backend, scored against the real
text; the refusal of documents a tuned model trained on; cancel; the command; the pages and the
export (admins only)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from finetune import evaluation
from finetune.models import EvaluationRun, FineTuneRun
from finetune.training.config import TrainSettings
from generation.models import LanguageModel
from review.models import ArchiveDocument
from tests.factories import make_archive, make_house_model
from tests.test_grounding import _env  # noqa: F401 - the same fresh indexes (autouse)

TOPICS = [
    ("Harbour bridge to close", "The council voted to close the harbour bridge for two years."),
    ("Floods in the valley", "Heavy rain flooded 300 homes in the river valley overnight."),
    ("Library budget approved", "The city approved a new budget of $4 million for libraries."),
    ("School opens new wing", "A new science wing opened at the town school on Monday."),
    ("Market returns to square", "The weekly farmers market returned to the main square."),
    ("Bus fares to rise", "Bus fares will rise by ten cents from the first of April."),
]
DOCS = [
    {
        "title": title,
        "citation": "Test Gazette",
        "license": "CC BY 4.0",
        "text": f"{lede} Officials said more details would follow next week. "
        "Residents were invited to a public meeting at the town hall to ask questions.",
    }
    for title, lede in TOPICS
]


@pytest.fixture
def archive(cast: dict) -> list[int]:
    make_archive(cast["newsroom"], DOCS)
    return list(
        ArchiveDocument.objects.filter(project=cast["newsroom"])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _variants(model: LanguageModel) -> list[dict[str, Any]]:
    return [{"model_id": model.pk, "grounding": 0}, {"model_id": model.pk, "grounding": 2}]


def _tuned_run(cast: dict, base: LanguageModel) -> tuple[FineTuneRun, LanguageModel]:
    tuned = LanguageModel.objects.create(
        name="tiny-tuned", source_kind="local", source=base.source, max_new_tokens=8
    )
    run = FineTuneRun.objects.create(
        project=cast["newsroom"],
        created_by=cast["alice"],
        base_model=base,
        result_model=tuned,
        data={"archive": True},
        settings=TrainSettings(seed=7, val_fraction=0.2, test_fraction=0.2).as_dict(),
        status="succeeded",
    )
    return run, tuned


def _create(cast: dict, variants: list[dict[str, Any]], **options: Any) -> EvaluationRun:
    """An evaluation of the newsroom's archive by alice, not queued (the test runs it)."""
    return evaluation.evaluation_create(
        project=cast["newsroom"], user=cast["alice"], variants=variants, enqueue=False, **options
    )


def test_a_small_run_scores_real_candidates_against_the_real_documents(
    cast: dict, archive: list[int], language_model: LanguageModel
) -> None:
    run = _create(
        cast,
        _variants(language_model),
        n_documents=2,
        k=2,
        max_new_tokens=8,
    )
    assert len(run.document_ids) == 2 and set(run.document_ids) <= set(archive)
    assert run.total == 4 and run.estimate["tokens"] == 2 * 2 * 2 * 8
    progress: list[int] = []
    run = evaluation.evaluation_execute(run_id=run.pk, on_item=lambda r: progress.append(r.done))
    assert run.status == "succeeded", run.error
    assert progress == [1, 2, 3, 4]
    assert len(run.rows) == 2 * 2 * 2
    for row in run.rows:
        assert 0.0 <= row["rouge_l"] <= 1.0
        assert 0.0 <= row["brief_coverage"] <= 1.0
        assert row["completion_tokens"] > 0 and row["text"]
        # The real document's perplexity after the variant's own prompt, under the model.
        assert row["perplexity"] > 1.0
        assert 0 < row["reference_tokens"] <= evaluation.REFERENCE_TOKENS
        similarity = row["embedding_similarity"]
        assert (similarity is not None and -1.0 <= similarity <= 1.0) or run.estimate[
            "embedding"
        ].startswith("not measured")
        if row["variant"].endswith("(2)"):
            # grounded: archive passages were supplied, never from the document under test
            assert row["background_ids"] and row["document_id"] not in row["background_ids"]
        else:
            assert row["background_ids"] == []
    # The ROUGE-L is rouge-score's own on the stored text and the real document.
    from rouge_score import rouge_scorer

    row = run.rows[0]
    doc = ArchiveDocument.objects.get(pk=row["document_id"])
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(doc.text, row["text"])
    assert row["rouge_l"] == pytest.approx(expected["rougeL"].fmeasure, abs=1e-4)
    # One perplexity per variant and document, the same on each of its candidates; it is the
    # backend's teacher-forced score of the document after the prompt of the candidates.
    per_doc: dict[tuple[str, int], set[float]] = {}
    for r in run.rows:
        per_doc.setdefault((r["variant"], r["document_id"]), set()).add(r["perplexity"])
    assert all(len(values) == 1 for values in per_doc.values()) and len(per_doc) == 4
    from django.conf import settings as django_settings

    from generation.backends import get_backend
    from generation.model_runtime import backend_config

    backend = get_backend(
        backend_config(language_model), cache_root=django_settings.MODEL_CACHE_DIR
    )
    plain = next(r for r in run.rows if r["variant"].endswith("no grounding"))
    doc = ArchiveDocument.objects.get(pk=plain["document_id"])
    prompt = backend.render_prompt(system="", user=evaluation.brief_of_document(doc))
    rest = evaluation.rest_of_document(doc)
    assert rest == " ".join(doc.text.split()).split(". ", 1)[1]  # after the brief's sentence
    expected_ppl = backend.score_text(
        prompt=prompt, text=rest, max_tokens=evaluation.REFERENCE_TOKENS
    ).perplexity
    assert plain["perplexity"] == pytest.approx(expected_ppl, rel=1e-3)
    summary = evaluation.summary(run)
    labels = [s["variant"] for s in summary]
    assert labels == ["tiny-gpt2, no grounding", "tiny-gpt2, grounded (2)"]
    # The summary pools the documents: total log-likelihood over total tokens, each once.
    import math

    for item in summary:
        docs = {
            r["document_id"]: (r["perplexity"], r["reference_tokens"])
            for r in run.rows
            if r["variant"] == item["variant"]
        }
        tokens = sum(n for _, n in docs.values())
        pooled = math.exp(sum(math.log(p) * n for p, n in docs.values()) / tokens)
        assert item["reference_tokens"] == tokens
        assert item["perplexity"] == pytest.approx(pooled, rel=1e-3)
        assert (
            min(p for p, _ in docs.values())
            <= item["perplexity"]
            <= max(p for p, _ in docs.values())
        )
    assert run.estimate["measured_tokens_per_second"] > 0
    # no candidate of this model had run: the worker timed a short generation first
    assert run.estimate["source"].startswith("a short timing on the worker")
    # and a scoring step, since no evaluation had measured the model's scoring speed: the
    # estimate is generation plus the perplexity scoring (2 documents x 2 variants).
    est, pk = run.estimate, str(language_model.pk)
    assert est["scoring_source"].startswith("a scoring step timed on the worker")
    assert est["scored_tokens"] == {pk: 2 * 2 * evaluation.REFERENCE_TOKENS}
    rate = est["scoring_tokens_per_second"][pk]
    assert rate > 0
    assert est["generation_seconds"] == pytest.approx(est["tokens"] / est["tokens_per_second"])
    assert est["scoring_seconds"] == pytest.approx(2 * 2 * evaluation.REFERENCE_TOKENS / rate)
    assert est["seconds"] == pytest.approx(est["generation_seconds"] + est["scoring_seconds"])
    # The run timed its own scoring steps: what the next estimate uses.
    assert est["measured_scoring"][pk] > 0
    again = _create(
        cast,
        _variants(language_model),
        n_documents=2,
        k=2,
        max_new_tokens=8,
    )
    assert again.estimate["scoring_tokens_per_second"] == {pk: est["measured_scoring"][pk]}
    # No fine-tuned model of the project: no house-model fluency, and the run says so.
    assert all(r["house_fluency"] is None for r in run.rows)
    assert run.estimate["house_model"] == {"note": "the project has no fine-tuned model of its own"}


def test_candidates_are_scored_under_the_projects_house_model_when_it_has_one(
    cast: dict, archive: list[int], language_model: LanguageModel
) -> None:
    from django.conf import settings as django_settings

    from generation.backends import get_backend
    from generation.model_runtime import backend_config

    house = make_house_model(cast, language_model, max_new_tokens=8)
    # Another project's tuned model, newer, is never this project's house model.
    other = make_house_model(
        cast, language_model, name="tiny-other-house", project="other", by="eve"
    )
    assert evaluation.house_model(cast["newsroom"].pk) == house
    assert evaluation.house_model(cast["other"].pk) == other
    run = _create(
        cast,
        [{"model_id": language_model.pk, "grounding": 0}],
        n_documents=2,
        k=2,
        max_new_tokens=8,
    )
    # Every candidate is scored under the house model too: that scoring counts in the estimate.
    assert run.estimate["scored_tokens"] == {
        str(language_model.pk): 2 * evaluation.REFERENCE_TOKENS,
        str(house.pk): 2 * 2 * 8,
    }
    run = evaluation.evaluation_execute(run_id=run.pk)
    assert run.status == "succeeded", run.error
    assert run.estimate["house_model"] == {"id": house.pk, "name": "tiny-house"}
    assert run.estimate["scoring_tokens_per_second"][str(house.pk)] > 0
    assert run.estimate["measured_scoring"][str(house.pk)] > 0
    backend = get_backend(backend_config(house), cache_root=django_settings.MODEL_CACHE_DIR)
    for row in run.rows:
        doc = ArchiveDocument.objects.get(pk=row["document_id"])
        prompt = backend.render_prompt(system="", user=evaluation.brief_of_document(doc))
        expected = backend.score_text(prompt=prompt, text=row["text"]).mean_logprob
        assert row["house_fluency"] < 0
        assert row["house_fluency"] == pytest.approx(expected, abs=1e-3)
    [item] = evaluation.summary(run)
    mean = sum(r["house_fluency"] for r in run.rows) / len(run.rows)
    assert item["house_fluency"] == pytest.approx(mean, abs=1e-3)
    house.enabled = False
    house.save(update_fields=["enabled"])
    assert evaluation.house_model(cast["newsroom"].pk) is None


def test_the_brief_is_the_title_and_first_sentence(cast: dict, archive: list[int]) -> None:
    doc = ArchiveDocument.objects.get(pk=archive[2])
    assert evaluation.brief_of_document(doc) == (
        "Library budget approved\nThe city approved a new budget of $4 million for libraries."
    )


def test_documents_a_tuned_model_trained_on_are_refused_and_never_drawn(
    cast: dict, archive: list[int], language_model: LanguageModel
) -> None:
    run, tuned = _tuned_run(cast, language_model)
    trained = evaluation.training_documents(tuned)[run.pk]
    assert trained and set(trained) <= set(archive)
    held_out = [pk for pk in archive if pk not in trained]
    with pytest.raises(ValidationError) as exc:
        _create(
            cast,
            [{"model_id": tuned.pk, "grounding": 0}],
            document_ids=[held_out[0], trained[0]],
        )
    message = exc.value.message_dict["document_ids"][0]
    assert str(trained[0]) in message and f"[{run.pk}]" in message
    assert not EvaluationRun.objects.exists()
    # Drawn automatically: only documents outside the training set, and the split is recorded.
    ev = _create(
        cast,
        [{"model_id": tuned.pk, "grounding": 0}],
        n_documents=10,
    )
    assert sorted(ev.document_ids) == sorted(held_out)
    assert ev.training_ids == sorted(trained)
    # The base model trained on nothing here: any document may be used with it.
    ok = _create(
        cast,
        [{"model_id": language_model.pk, "grounding": 0}],
        document_ids=[trained[0]],
    )
    assert ok.document_ids == [trained[0]]


def test_cancel_stops_a_running_evaluation_and_ends_a_queued_one(
    cast: dict, archive: list[int], language_model: LanguageModel
) -> None:
    def make() -> EvaluationRun:
        return _create(
            cast,
            _variants(language_model),
            n_documents=3,
            k=1,
            max_new_tokens=4,
        )

    queued = evaluation.evaluation_cancel(run=make())
    assert queued.status == "cancelled"
    assert evaluation.evaluation_execute(run_id=queued.pk).done == 0  # never starts
    running = make()
    done = evaluation.evaluation_execute(
        run_id=running.pk, on_item=lambda r: evaluation.evaluation_cancel(run=r)
    )
    assert done.status == "cancelled"
    assert done.done == 1 and len(done.rows) == 1  # what was scored before the cancel is kept


def test_bad_input_names_the_field(cast: dict, language_model: LanguageModel) -> None:
    for kwargs, field in [
        ({"variants": []}, "variants"),
        ({"variants": [{"model_id": 999999}]}, "variants"),
        ({"k": 0}, "k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"document_ids": [999999]}, "document_ids"),
        ({"n_documents": 1}, "n_documents"),  # the archive is empty
    ]:
        args = {"variants": [{"model_id": language_model.pk}], **kwargs}
        with pytest.raises(ValidationError) as exc:
            evaluation.evaluation_create(
                project=cast["newsroom"], user=cast["alice"], enqueue=False, **args
            )
        assert field in exc.value.message_dict, (kwargs, exc.value.message_dict)


def test_the_command_runs_with_a_progress_bar_and_names_bad_fields(
    cast: dict, archive: list[int], language_model: LanguageModel, tmp_path: Any
) -> None:
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "eval.json"
    call_command(
        "evaluate_generation",
        "--project=newsroom",
        "--model=tiny-gpt2",
        "--grounding=both",
        "--passages=1",
        "-n=2",
        "-k=1",
        "--max-new-tokens=6",
        f"--output={target}",
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    assert "Status: succeeded" in text and "tiny-gpt2, grounded (1): rouge_l" in text
    assert text.count("perplexity of the real text") == 2 and "perplexity not" not in text
    assert "Estimate:" in text and "2/2" not in text and "4/4" in err.getvalue()
    assert len(json.loads(target.read_text())["rows"]) == 4
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="k: "):
        call_command("evaluate_generation", "--project=newsroom", "--model=tiny-gpt2", "-k=99")


def test_the_pages_run_on_the_worker_show_progress_results_and_export(
    worker: None, cast: dict, language_model: LanguageModel, client: Any
) -> None:
    from tests.conftest import wait_for

    make_archive(cast["newsroom"], DOCS)
    client.force_login(cast["alice"])
    url = reverse("finetune_evaluations", args=["newsroom"])
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "model": [language_model.pk],
            "without_grounding": "1",
            "with_grounding": "1",
            "grounding_passages": "2",
            "n_documents": "2",
            "k": "2",
            "max_new_tokens": "6",
            "temperature": "0.8",
            "seed": "3",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    run = EvaluationRun.objects.get()
    status_url = reverse("finetune_evaluation_status", args=["newsroom", run.pk])
    state = wait_for(lambda: (s := client.get(status_url).json())["final"] and s, timeout=180)
    assert state["status"] == "succeeded" and state["done"] == state["total"] == 4
    page = client.get(response["Location"]).content.decode()
    assert 'id="evaluation-summary"' in page and 'id="evaluation-chart"' in page
    assert "tiny-gpt2, grounded (2)" in page and "Perplexity of the real text" in page
    for item in evaluation.summary(EvaluationRun.objects.get()):
        assert item["perplexity"] is not None and f"{item['perplexity']:.2f}" in page
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    reverse("finetune_evaluation_export", args=["newsroom", run.pk, "csv"])
                ).content.decode()
            )
        )
    )
    assert len(rows) == 8 and set(evaluation.ROW_FIELDS) == set(rows[0])
    assert all(float(r["perplexity"]) > 1.0 and int(r["reference_tokens"]) > 0 for r in rows)
    exported = client.get(reverse("finetune_evaluation_export", args=["newsroom", run.pk, "json"]))
    body = exported.json()
    assert body["document_ids"] == EvaluationRun.objects.get().document_ids
    assert [s["variant"] for s in body["summary"]] == [
        "tiny-gpt2, no grounding",
        "tiny-gpt2, grounded (2)",
    ]
    assert all(s["perplexity"] > 1.0 for s in body["summary"])
    # bad input names the field, nothing is started
    bad = client.post(url, {"model": [language_model.pk], "without_grounding": "1", "k": "0"})
    assert bad.status_code == 400 and b"Candidates per document" in bad.content
    assert EvaluationRun.objects.count() == 1


def test_only_project_admins_see_start_cancel_or_export(
    cast: dict, language_model: LanguageModel, client: Any
) -> None:
    run = EvaluationRun.objects.create(
        project=cast["newsroom"], variants=[], document_ids=[1], total=1
    )
    urls = [
        reverse("finetune_evaluations", args=["newsroom"]),
        reverse("finetune_evaluation", args=["newsroom", run.pk]),
        reverse("finetune_evaluation_status", args=["newsroom", run.pk]),
        reverse("finetune_evaluation_export", args=["newsroom", run.pk, "csv"]),
    ]
    cancel = reverse("finetune_evaluation_cancel", args=["newsroom", run.pk])
    for user, code in [("bob", 403), ("dave", 403), ("eve", 404)]:
        client.force_login(cast[user])
        for url in urls:
            assert client.get(url).status_code == code, (user, url)
        assert client.post(cancel).status_code == code
    run.refresh_from_db()
    assert run.status == "queued"
    # another project's admin cannot reach it through their own project either
    other = reverse("finetune_evaluation", args=["other", run.pk])
    assert client.get(other).status_code == 404
    client.force_login(cast["alice"])
    assert client.post(cancel).status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_the_estimate_uses_the_models_measured_speed_when_there_is_one(
    cast: dict, archive: list[int], language_model: LanguageModel
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from generation.models import Candidate
    from tests.factories import make_job

    job = make_job(cast["newsroom"], cast["alice"])
    job.model = language_model
    job.save(update_fields=["model"])
    now = timezone.now()
    # 41 tokens over 4 s after the first: 10 tokens/s
    Candidate.objects.create(
        job=job,
        index=0,
        seed=1,
        completion_tokens=41,
        first_token_at=now - timedelta(seconds=4),
        finished_at=now,
    )
    run = _create(
        cast,
        _variants(language_model),
        n_documents=3,
        k=2,
        max_new_tokens=50,
    )
    assert run.estimate["tokens"] == 3 * 2 * 2 * 50
    assert run.estimate["tokens_per_second"] == pytest.approx(10.0)
    assert run.estimate["generation_seconds"] == pytest.approx(60.0)
    assert run.estimate["source"] == "median of the last 1 candidates"
    # The perplexity scoring is work too: the real documents' openings under the model, per
    # variant. No evaluation has measured its speed yet: no total before the worker times it.
    pk = str(language_model.pk)
    assert run.estimate["scored_tokens"] == {pk: 3 * 2 * evaluation.REFERENCE_TOKENS}
    assert run.estimate["scoring_seconds"] is None and run.estimate["seconds"] is None
    # A finished evaluation measured it (tokens scored per second): the next estimate counts it.
    EvaluationRun.objects.create(
        project=cast["newsroom"],
        status="succeeded",
        finished_at=now,
        estimate={"measured_scoring": {pk: 128.0}},
    )
    run = _create(
        cast,
        _variants(language_model),
        n_documents=3,
        k=2,
        max_new_tokens=50,
    )
    scoring = 3 * 2 * evaluation.REFERENCE_TOKENS / 128.0
    assert run.estimate["scoring_seconds"] == pytest.approx(scoring)
    assert run.estimate["seconds"] == pytest.approx(60.0 + scoring)


def test_the_sweep_fails_an_evaluation_whose_worker_stopped_beating(
    cast: dict, language_model: LanguageModel, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from finetune import tasks

    now = timezone.now()
    stale = settings.GENERATION_STALE_AFTER + 5
    dead = EvaluationRun.objects.create(
        project=cast["newsroom"], status="running", heartbeat_at=now - timedelta(seconds=stale)
    )
    alive = EvaluationRun.objects.create(
        project=cast["newsroom"], status="running", heartbeat_at=now
    )
    assert tasks.runs_sweep()["evaluations_failed"] == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == "failed" and "stopped responding" in dead.error
    assert alive.status == "running"


def test_the_csv_export_quotes_text_a_spreadsheet_would_run(cast: dict, client: Any) -> None:
    row = dict.fromkeys(evaluation.ROW_FIELDS, 0)
    row.update(text='=HYPERLINK("http://x")', title="@SUM(A1)", background_ids=[], variant="v")
    run = EvaluationRun.objects.create(project=cast["newsroom"], rows=[row], status="succeeded")
    client.force_login(cast["alice"])
    body = client.get(reverse("finetune_evaluation_export", args=["newsroom", run.pk, "csv"]))
    exported = next(csv.DictReader(io.StringIO(body.content.decode())))
    assert exported["text"] == '\'=HYPERLINK("http://x")' and exported["title"] == "'@SUM(A1)"


def test_a_backend_without_log_probabilities_leaves_perplexity_empty_and_says_why() -> None:
    from generation.backends.openai_compat import OpenAIBackend
    from generation.backends.types import BackendConfig

    server = OpenAIBackend(
        BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", remote_model="m")
    )
    ppl, tokens, why = evaluation.reference_perplexity(server, prompt="Brief", text="Real text.")
    assert ppl is None and tokens == 0
    assert why == "not measured: the openai backend returns no log-probabilities"
    assert evaluation.pooled_perplexity(
        [{"document_id": 1, "perplexity": None, "reference_tokens": 0}]
    ) == (None, 0)
