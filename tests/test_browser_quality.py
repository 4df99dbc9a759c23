"""The job page in a real headless Chromium: candidates best first (on brief first, then by
quality score), the reasons beside each and on hover, the best one marked; the draft page's
"verify" marks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from generation.models import GenerationJob
from generation.quality import topup_note
from review.lifecycle import DraftStatus
from tests.test_browser_review import _orm_beside_playwright, browser, login  # noqa: F401
from tests.test_quality_drafts import (
    FLUENT_OFF,
    GOOD,
    INVENTED,
    OFF,
    ROUGH_ON,
    job_with_drafts,
)

pytestmark = pytest.mark.browser


@contextmanager
def job_page(chromium: Any, asgi_server: str, job: Any) -> Iterator[tuple[Any, list[str], list]]:
    """The job page as bob sees it once the page script has applied the live snapshot (and
    reordered by it): the page, the script's errors so far, and the candidates' indexes top
    first."""
    page = login(chromium, asgi_server, "bob")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{asgi_server}/p/newsroom/jobs/{job.pk}/")
        page.wait_for_selector(".candidate [data-role=score]:not([hidden])")
        page.wait_for_function("() => document.querySelector('#conn-status').textContent === ''")
        order = page.eval_on_selector_all(
            "#candidates .candidate", "els => els.map(e => Number(e.dataset.index))"
        )
        yield page, errors, order
    finally:
        page.context.close()


def test_the_job_page_orders_candidates_best_first_with_their_reasons(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    # given a finished job whose candidates are, by index: off brief, on brief, invented
    job, drafts = job_with_drafts(cast, [OFF, GOOD, INVENTED], status=DraftStatus.AWAITING_REVIEW)
    quality = {d.candidate.index: d.quality for d in drafts}
    expected = sorted(quality, key=lambda i: (quality[i]["off_brief"], -quality[i]["score"], i))
    assert expected[0] == 1 and expected[-1] == 0  # the on-brief one leads, off brief is last
    with job_page(browser, asgi_server, job) as (page, errors, order):
        assert order == expected
        first = page.locator("#candidates .candidate").first
        assert first.locator("[data-role=best]").is_visible()
        assert page.locator(".candidate [data-role=best]:visible").count() == 1
        invented = page.locator('.candidate[data-index="2"]')
        assert (
            "Contradicts the brief: $13.5 million"
            in invented.locator("[data-role=reasons]").inner_text()
        )
        hover = invented.locator("[data-role=score]").get_attribute("title") or ""
        assert "Mayor Michael Martinez" in hover
        assert page.locator('.candidate[data-index="0"] [data-role=offbrief]').is_visible()
        assert not first.locator("[data-role=offbrief]").is_visible()
        # the draft page marks the contradiction and what to verify
        page.goto(f"{asgi_server}/p/newsroom/drafts/{drafts[2].pk}/")
        mark = page.locator("#draft-text mark.hl-contradiction")
        assert mark.inner_text() == "$13.5 million"
        assert "The brief says $4.2 million" in (mark.get_attribute("title") or "")
        assert page.locator("#draft-text mark.hl-verify").count() == 2
        assert errors == []


def test_the_job_page_says_it_drew_more_candidates_and_shows_them_best_first(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    # given a job of two off-brief candidates that drew one more, which covers the brief
    job, _drafts = job_with_drafts(cast, [OFF, OFF, GOOD], status=DraftStatus.AWAITING_REVIEW)
    note = topup_note(drawn=1, first=2, covered=1)
    GenerationJob.objects.filter(pk=job.pk).update(
        n_candidates=2,
        topup=1,
        topup_record={
            "drawn": 1,
            "first": 2,
            "covered": 1,
            "note": note,
            "terms": ["<b>budget</b>", "libraries"],
            "steer_bias": 3.0,
        },
    )
    with job_page(browser, asgi_server, job) as (page, errors, order):
        shown = page.get_by_test_id("topup-note")
        assert shown.inner_text().startswith(
            "Drew 1 more: none of the first 2 covered the brief; it does."
        )
        # it says the extra candidates were steered towards the terms, escaped
        assert "steered towards the terms <b>budget</b>, libraries" in shown.inner_text()
        assert shown.locator("b").count() == 0
        assert order[0] == 2 and sorted(order) == [0, 1, 2]
        first = page.locator("#candidates .candidate").first
        assert first.locator("[data-role=best]").is_visible()
        assert not first.locator("[data-role=offbrief]").is_visible()
        assert page.locator(".candidate [data-role=offbrief]:visible").count() == 2
        assert errors == []


def test_the_page_script_keeps_an_on_brief_draft_above_a_higher_scoring_off_brief_one(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    # given a job whose off-brief candidate (index 0) outscores the on-brief one (index 1)
    job, (off, on) = job_with_drafts(
        cast, [FLUENT_OFF, ROUGH_ON], status=DraftStatus.AWAITING_REVIEW
    )
    assert off.quality["score"] > on.quality["score"] and off.quality["off_brief"]
    with job_page(browser, asgi_server, job) as (page, errors, order):
        assert order == [1, 0]
        first = page.locator("#candidates .candidate").first
        assert first.locator("[data-role=best]").is_visible()
        last = page.locator('.candidate[data-index="0"]')
        assert last.locator("[data-role=offbrief]").is_visible()
        reasons = last.locator("[data-role=reasons]").inner_text()
        assert reasons.startswith("Off brief: ranked after on-brief candidates")
        assert errors == []
