"""A candidate that stopped at its token limit says so: the backends report why a candidate
ended ("length" against "eos"), the job and draft keep it, and the job page, the draft page, the
queue and the API show "cut off at the token limit" (never for a text the model ended)."""

from __future__ import annotations

import html
import re
from typing import Any

from generation import runner, services
from generation.models import Candidate, Draft, GenerationJob, LanguageModel
from generation.selectors import candidate_states, job_snapshot
from review.lifecycle import DraftStatus
from tests.factories import logged_in, make_draft

CUT_OFF = "cut off at the token limit"


def cutoff_badges(page: str) -> list[bool]:
    """For each candidate of a job page: is its cut-off badge shown (not hidden)?"""
    return [
        "hidden" not in tag
        for tag in re.findall(r'<span class="badge cutoff" data-role="cutoff"[^>]*>', page)
    ]


def test_a_candidate_stopped_by_max_new_tokens_is_shown_cut_off_everywhere(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    # given a real generation whose candidates must write exactly 5 tokens (no end before)
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables={"headline": "Storm hits the coast", "lede": "A storm hit the coast."},
        settings={"max_new_tokens": 5, "min_new_tokens": 5},
        n_candidates=1,
        base_seed=7,
    )
    # when the model runs
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    # then the backend's reason is kept on the candidate and the draft
    candidate = Candidate.objects.get(job=job)
    draft = Draft.objects.get(job=job)
    assert GenerationJob.objects.get(pk=job.pk).status == "succeeded"
    assert candidate.status == "finished" and candidate.finish_reason == "length"
    assert draft.finish_reason == "length" and draft.cut_off and draft.completion_tokens == 5
    # and the live frames carry it (the job page's script shows the badge from them)
    assert candidate_states(job_id=job.pk)[0]["finish_reason"] == "length"
    assert job_snapshot(job_id=job.pk)["candidates"][0]["finish_reason"] == "length"

    bob = logged_in(cast["bob"])
    job_page = bob.get(f"/p/newsroom/jobs/{job.pk}/").content.decode()
    assert cutoff_badges(job_page) == [True]
    draft_page = html.unescape(bob.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode())
    assert 'id="cutoff-note"' in draft_page
    assert "The model stopped after 5 tokens" in draft_page
    Draft.objects.filter(pk=draft.pk).update(status=DraftStatus.AWAITING_REVIEW)
    row = re.search(
        rf'<tr class="queue-row"[^>]*data-draft="{draft.pk}".*?</tr>',
        bob.get("/queue/rows/").content.decode(),
        re.S,
    )
    assert row and CUT_OFF in row.group(0)
    api = bob.get(f"/api/v1/drafts/{draft.pk}/").json()
    assert api["finish_reason"] == "length"


def test_a_text_the_model_ended_is_not_called_cut_off(cast: dict) -> None:
    # given a draft whose model ended the text itself ("eos")
    ended = make_draft(
        cast["newsroom"], cast["bob"], "A short, whole story.", status=DraftStatus.AWAITING_REVIEW
    )
    Draft.objects.filter(pk=ended.pk).update(finish_reason="eos")
    ended.refresh_from_db()
    assert not ended.cut_off
    bob = logged_in(cast["bob"])
    # then no page calls it cut off
    job_page = bob.get(f"/p/newsroom/jobs/{ended.job_id}/").content.decode()
    assert cutoff_badges(job_page) == [False]
    draft_page = html.unescape(bob.get(f"/p/newsroom/drafts/{ended.pk}/").content.decode())
    assert 'id="cutoff-note"' not in draft_page
    assert "ended by the model" in draft_page
    assert CUT_OFF not in bob.get("/queue/rows/").content.decode()
