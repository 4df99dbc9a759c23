"""Quality signals stored on drafts: written by the runner, shown in the API, the draft page
and the queue, and the project's quality hold (off by default)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from generation import runner, services
from generation.models import Draft, GenerationJob
from generation.quality import TOPUP_STEER_BIAS
from generation.services.quality import job_quality
from review import services as review_services
from review.lifecycle import DraftStatus
from review.models import DraftEvent
from tests.factories import checked, make_archive, make_draft, make_house_model

BRIEF = {
    "headline": "Council approves library budget",
    "lede": "The city council approved a $4.2 million budget for public libraries on Tuesday.",
}
GOOD = (
    "The city council on Tuesday approved a $4.2 million budget for public libraries. "
    "The library budget pays for longer opening hours."
)
INVENTED = (
    "The city council approved a $13.5 million budget for public libraries on Tuesday. "
    '"This is a great day for readers," said Mayor Michael Martinez.'
)
OFF = "As I was finishing my dinner in a small cafe, I could not help but glance outside."


pytestmark = pytest.mark.usefixtures("fresh_indexes")


def job_with_drafts(
    cast: dict, texts: list[str], status: str = DraftStatus.GENERATED
) -> tuple[GenerationJob, list[Draft]]:
    """A finished job of ``texts`` as candidates, with the signals the runner computes."""
    first = make_draft(cast["newsroom"], cast["bob"], texts[0], status=status)
    job = first.job
    GenerationJob.objects.filter(pk=job.pk).update(variables=BRIEF, seed_text="")
    job.refresh_from_db()
    drafts = [first] + [
        make_draft(cast["newsroom"], cast["bob"], t, job=job, status=status) for t in texts[1:]
    ]
    signals = job_quality(
        job=job,
        texts=texts,
        finish_reasons=["eos"] * len(texts),
        mean_logprobs=[-2.0] * len(texts),
        tokens=[40] * len(texts),
    )
    for draft, quality in zip(drafts, signals, strict=True):
        Draft.objects.filter(pk=draft.pk).update(quality=quality)
        draft.quality = quality
    return job, drafts


def _brief_job_run(cast: dict, news_template: Any, **extra: Any) -> Any:
    """A two-candidate job of BRIEF (``extra``: more job options, e.g. ``topup``), run by the
    real runner, read back."""
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables=BRIEF,
        n_candidates=2,
        base_seed=7,
        settings={"max_new_tokens": 10},
        **extra,
    )
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    job.refresh_from_db()
    return job


def test_the_runner_stores_signals_on_every_draft_with_the_models_fluency(
    transactional_db: None, cast: dict, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    job = _brief_job_run(cast, news_template)
    drafts = list(Draft.objects.filter(job=job).order_by("candidate__index"))
    assert len(drafts) == 2
    for draft in drafts:
        q = draft.quality
        assert 0.0 <= q["score"] <= 1.0 and q["reasons"]
        assert q["fluency"]["available"] and q["fluency"]["mean_logprob"] < 0
        assert q["fluency"]["tokens"] == draft.completion_tokens
        assert "$4.2 million" in q["brief_terms"] and "Council" in q["brief_terms"]
        assert q["completeness"]["finish_reason"] == draft.finish_reason
        assert q["relevance"]["available"] is False  # added by the checks
        assert "house_fluency" not in q  # the project has no fine-tuned model of its own
    # the job API lists them with the best-first order
    api = APIClient()
    api.force_authenticate(cast["bob"])
    body = api.get(reverse("api_job", args=[job.pk])).json()
    quality = {c["index"]: c["quality"] for c in body["candidates"]}
    assert body["best_first"] == sorted(
        quality, key=lambda i: (quality[i]["off_brief"], -quality[i]["score"], i)
    )
    assert [quality[i]["rank"] for i in body["best_first"]] == [0, 1]
    assert sum(c["quality"]["best"] for c in body["candidates"]) == 1


def test_with_a_house_model_each_draft_stores_its_fluency_under_it_and_shows_it(
    transactional_db: None,
    cast: dict,
    language_model: Any,
    news_template: Any,
    hold_queue: list,
    client: Any,
) -> None:
    from django.conf import settings as django_settings

    from generation.backends import get_backend
    from generation.model_runtime import backend_config
    from generation.quality import signals

    # The project's house model: a fine-tune run's result (the tiny model's weights, loaded as
    # a model of its own, with the transformers backend the studio uses for tuned models).
    house = make_house_model(cast, language_model)
    job = _brief_job_run(cast, news_template)
    drafts = list(Draft.objects.filter(job=job).order_by("candidate__index"))
    assert len(drafts) == 2
    backend = get_backend(backend_config(house), cache_root=django_settings.MODEL_CACHE_DIR)
    for draft in drafts:
        q = draft.quality
        hf = q["house_fluency"]
        # teacher-forced under the house model after the job's own prompt (same chat template)
        expected = backend.score_text(prompt=draft.prompt, text=draft.model_output)
        assert hf["available"] and hf["model"] == "tiny-house"
        assert hf["mean_logprob"] == pytest.approx(expected.mean_logprob, abs=1e-3)
        assert hf["tokens"] == expected.tokens > 0
        line = f"House-model fluency {hf['mean_logprob']:.2f} nats/token (tiny-house)"
        assert line in q["reasons"]
        # shown beside the score, not part of it
        assert "house_fluency" not in q["components"]
        assert q["score"] == signals.quality_score(q)[0]
    client.force_login(cast["bob"])
    page = client.get(reverse("draft_detail", args=["newsroom", drafts[0].pk])).content.decode()
    assert "House-model fluency" in page
    api = APIClient()
    api.force_authenticate(cast["bob"])
    body = api.get(reverse("api_draft", args=[drafts[0].pk])).json()
    assert body["quality"]["house_fluency"] == drafts[0].quality["house_fluency"]


def test_the_draft_api_exposes_the_signals_and_the_specifics_to_verify(cast: dict) -> None:
    _, (good, invented) = job_with_drafts(cast, [GOOD, INVENTED])
    api = APIClient()
    api.force_authenticate(cast["charlie"])
    body = api.get(reverse("api_draft", args=[invented.pk])).json()
    assert body["quality"]["score"] == invented.quality["score"]
    assert [(s["text"], s["status"]) for s in body["specifics"]] == [
        ("$13.5 million", "contradiction"),
        ('"This is a great day for readers,"', "verify"),
        ("Mayor Michael Martinez", "verify"),
    ]
    assert body["text"][body["specifics"][0]["start"] : body["specifics"][0]["end"]] == (
        "$13.5 million"
    )
    listed = {d["id"]: d for d in api.get(reverse("api_drafts")).json()["results"]}
    assert listed[good.pk]["quality_score"] > listed[invented.pk]["quality_score"]
    assert listed[good.pk]["off_brief"] is False
    # another project's member sees nothing of it
    outsider = APIClient()
    outsider.force_authenticate(cast["eve"])
    assert outsider.get(reverse("api_draft", args=[invented.pk])).status_code == 404


def test_the_draft_page_marks_invented_specifics_to_verify_and_the_contradiction(
    client: Any, cast: dict
) -> None:
    _, (_, invented) = job_with_drafts(cast, [GOOD, INVENTED])
    client.force_login(cast["bob"])
    html = client.get(reverse("draft_detail", args=["newsroom", invented.pk])).content.decode()
    assert '<mark class="hl hl-contradiction"' in html
    assert 'title="Contradiction: The brief says $4.2 million."' in html
    assert '<mark class="hl hl-verify" title="Verify: This name is not in the brief' in html
    assert "Facts to verify" in html and 'data-testid="quality-score"' in html


def test_the_queue_marks_the_best_candidate_of_a_job(client: Any, cast: dict) -> None:
    _, drafts = job_with_drafts(cast, [OFF, GOOD, INVENTED])
    Draft.objects.filter(pk__in=[d.pk for d in drafts]).update(status=DraftStatus.AWAITING_REVIEW)
    client.force_login(cast["bob"])
    html = client.get(reverse("queue")).content.decode()
    rows = html.split('<tr class="queue-row"')[1:]
    marked = [r for r in rows if 'data-testid="best-of-job"' in r]
    assert len(marked) == 1 and f'data-draft="{drafts[1].pk}"' in marked[0]


# A fluent, complete off-brief draft (3 of the brief's 8 terms) that outscores a rough on-brief
# one (4 of 8, cut off, three specifics of its own).
FLUENT_OFF = (
    "The city council met again this week. Members of the council talked about the "
    "library and the parks, and they agreed to meet again soon to talk about them more."
)
ROUGH_ON = (
    "The council set a budget of $4.2 million on Tuesday, and Mayor "
    "Ann Ortiz said 300 new jobs and 12 new branches would follow in"
)


def test_every_view_of_a_job_ranks_an_on_brief_draft_above_a_higher_scoring_off_brief_one(
    client: Any, cast: dict
) -> None:
    # given a job whose off-brief candidate (index 0) has the higher score
    job, (off, on) = job_with_drafts(
        cast, [FLUENT_OFF, ROUGH_ON], status=DraftStatus.AWAITING_REVIEW
    )
    assert off.quality["off_brief"] and not on.quality["off_brief"]
    assert off.quality["score"] > on.quality["score"]
    # the job API: best first, the best mark and the ranks
    api = APIClient()
    api.force_authenticate(cast["bob"])
    body = api.get(reverse("api_job", args=[job.pk])).json()
    assert body["best_first"] == [1, 0]
    marks = {c["index"]: (c["quality"]["best"], c["quality"]["rank"]) for c in body["candidates"]}
    assert marks == {0: (False, 1), 1: (True, 0)}
    assert body["candidates"][0]["quality"]["reasons"][0] == (
        "Off brief: ranked after on-brief candidates"
    )
    # the job page renders the same order
    client.force_login(cast["bob"])
    html = client.get(reverse("job_detail", args=["newsroom", job.pk])).content.decode()
    assert html.index('data-index="1"') < html.index('data-index="0"')
    # the queue marks the on-brief one as the best of the job
    rows = client.get(reverse("queue")).content.decode().split('<tr class="queue-row"')[1:]
    marked = [r for r in rows if 'data-testid="best-of-job"' in r]
    assert len(marked) == 1 and f'data-draft="{on.pk}"' in marked[0]


def set_quality_policy(cast: dict, *, hold: bool, floor: float = 0.45) -> None:
    policy = review_services.policy_get(project=cast["newsroom"])
    review_services.policy_update(
        project=cast["newsroom"],
        user=cast["alice"],
        toxicity_thresholds=policy.toxicity_thresholds,
        lexical_threshold=policy.lexical_threshold,
        semantic_threshold=policy.semantic_threshold,
        semantic_share=policy.semantic_share,
        blocking_rule_kinds=policy.blocking_rule_kinds,
        rules=policy.rules,
        quality_hold=hold,
        quality_floor=floor,
    )


def test_an_off_brief_draft_passes_by_default_and_is_held_when_the_policy_asks(
    cast: dict, hold_queue: list
) -> None:
    make_archive(cast["newsroom"])
    _, (off, good) = job_with_drafts(cast, [OFF, GOOD])
    # by default the quality hold is off: the off-brief draft goes to the queue
    assert review_services.policy_get(project=cast["newsroom"]).quality_hold is False
    assert checked(off, hold_queue).status == DraftStatus.AWAITING_REVIEW
    # relevance was measured with the sentence model the checks loaded
    off.refresh_from_db()
    assert off.quality["relevance"]["available"] is True
    # when the project turns it on
    set_quality_policy(cast, hold=True)
    off = checked(off, hold_queue)
    assert off.status == DraftStatus.HELD
    reasons = DraftEvent.objects.filter(draft=off, action="hold").latest("pk").data["reasons"]
    assert any(r.startswith("Off brief: covers 0 of") for r in reasons)
    [floor] = [r for r in reasons if r.startswith("Quality: score")]
    assert "< floor 0.45 (Covers 0 of" in floor  # the score's reasons, not the order's
    # the on-brief draft passes under the same policy
    assert checked(good, hold_queue).status == DraftStatus.AWAITING_REVIEW


def test_a_bad_quality_floor_is_refused_naming_the_field(cast: dict) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        set_quality_policy(cast, hold=True, floor=1.5)
    assert "quality_floor" in caught.value.message_dict
    assert review_services.policy_get(project=cast["newsroom"]).quality_hold is False


def test_an_admin_turns_the_quality_hold_on_from_the_policy_page_and_it_is_audited(
    client: Any, cast: dict
) -> None:
    from review import holds
    from review.models import PolicyEvent

    form = {f"tox_{c}": str(v) for c, v in holds.DEFAULT_TOXICITY_THRESHOLDS.items()} | {
        "lexical_threshold": "50",
        "semantic_threshold": "0.7",
        "semantic_share": "0.3",
        "blocking_rule_kinds": list(holds.DEFAULT_BLOCKING_RULE_KINDS),
        "quality_hold": "on",
        "quality_floor": "0.6",
    }
    client.force_login(cast["bob"])  # an editor may not
    assert client.post("/p/newsroom/policy/", form).status_code in (403, 404)
    client.force_login(cast["alice"])
    page = client.get("/p/newsroom/policy/").content.decode()
    assert 'name="quality_hold"' in page and 'id="id_quality_floor"' in page
    response = client.post("/p/newsroom/policy/", form)
    assert response.status_code == 302
    policy = review_services.policy_get(project=cast["newsroom"])
    assert (policy.quality_hold, policy.quality_floor) == (True, 0.6)
    changes = PolicyEvent.objects.filter(policy=policy).latest("pk").changes
    assert changes["quality_hold"] == {"from": False, "to": True}
    assert changes["quality_floor"] == {"from": 0.45, "to": 0.6}
    bad = client.post("/p/newsroom/policy/", form | {"quality_floor": "2"})
    assert bad.status_code == 400 and "quality_floor" in bad.content.decode()


def test_a_job_none_of_whose_candidates_covers_the_brief_draws_its_top_up(
    transactional_db: None, cast: dict, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    # the tiny model's ten tokens cannot cover half of the brief's key terms
    job = _brief_job_run(cast, news_template, topup=2)
    assert job.status == "succeeded"
    drafts = list(Draft.objects.filter(job=job).order_by("candidate__index"))
    assert [d.candidate.index for d in drafts] == [0, 1, 2, 3]
    assert [d.seed for d in drafts] == [7, 8, 9, 10]
    assert all(d.quality["off_brief"] for d in drafts[:2])
    assert all(d.quality["score"] is not None for d in drafts)
    record = job.topup_record
    covered = sum(not d.quality["off_brief"] for d in drafts[2:])
    assert (record["drawn"], record["first"], record["covered"]) == (2, 2, covered)
    assert record["note"].startswith("Drew 2 more: none of the first 2 covered the brief;")
    # the top-up was written from the brief with its key terms spelled out; the others not
    assert "$4.2 million" in record["terms"]
    line = "Mention each of these words from the brief: "
    assert all(line not in d.prompt for d in drafts[:2])
    assert all(line in d.prompt and "$4.2 million" in d.prompt for d in drafts[2:])
    # and its sampler was steered towards them, as each extra candidate's settings say
    assert all("steer_terms" not in d.candidate.settings for d in drafts[:2])
    for d in drafts[2:]:
        assert d.candidate.settings["steer_terms"] == record["terms"]
        assert d.candidate.settings["steer_bias"] == record["steer_bias"] == TOPUP_STEER_BIAS
    api = APIClient()
    api.force_authenticate(cast["bob"])
    body = api.get(reverse("api_job", args=[job.pk])).json()
    assert (body["topup"], body["topup_record"]["drawn"]) == (2, 2)
    assert sorted(body["best_first"]) == [0, 1, 2, 3]


def test_without_a_top_up_the_job_keeps_its_own_candidates(
    transactional_db: None, cast: dict, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    job = _brief_job_run(cast, news_template)
    assert job.topup == news_template.topup == 0
    assert Draft.objects.filter(job=job).count() == 2 and job.topup_record == {}


def test_a_top_up_out_of_bounds_is_refused_and_a_templates_top_up_is_the_jobs_default(
    cast: dict, language_model: Any, news_template: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        services.job_create(
            project=cast["newsroom"],
            user=cast["bob"],
            template_version=news_template,
            variables=BRIEF,
            topup=5,
        )
    assert "topup" in caught.value.message_dict
    version = services.template_update(
        template=news_template.template,
        user=cast["alice"],
        body=news_template.body,
        variables=news_template.variables,
        topup=3,
    )
    job = services.job_create(
        project=cast["newsroom"], user=cast["bob"], template_version=version, variables=BRIEF
    )
    assert job.topup == 3


def test_a_top_up_that_fails_keeps_the_jobs_own_drafts_and_says_why(
    transactional_db: None,
    cast: dict,
    language_model: Any,
    news_template: Any,
    hold_queue: list,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from generation.backends import get_backend as real_get_backend

    def get_backend(*args: Any, **kwargs: Any) -> Any:
        backend = real_get_backend(*args, **kwargs)
        real_generate = backend.generate
        calls = []

        def generate(**kw: Any) -> Any:
            calls.append(kw["n"])
            if len(calls) > 1:  # the top-up: the model server went away
                raise RuntimeError("out of memory")
            return real_generate(**kw)

        monkeypatch.setattr(backend, "generate", generate)
        return backend

    monkeypatch.setattr(runner, "get_backend", get_backend)
    job = _brief_job_run(cast, news_template, topup=2)
    assert job.status == "succeeded"
    assert [d.candidate.index for d in Draft.objects.filter(job=job)] in ([0, 1], [1, 0])
    assert job.candidates.count() == 2
    assert job.topup_record["drawn"] == 0
    assert job.topup_record["note"] == "Drawing more candidates failed: out of memory"
