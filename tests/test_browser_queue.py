"""The queue in a real headless Chromium: `a` approves at once and the toast's Undo (or `u`)
takes it back within seconds, with both moves in the audit trail; the offer then expires; a bulk
approval asks first; the search box finds a draft by a word of its text; candidates of one job
show their number and opening words."""

from __future__ import annotations

from typing import Any

import pytest

from generation.models import Draft
from review.lifecycle import DraftStatus
from review.models import DraftEvent
from tests.conftest import wait_for
from tests.factories import make_draft
from tests.test_browser_review import _orm_beside_playwright, browser, login  # noqa: F401

pytestmark = pytest.mark.browser
S = DraftStatus
HARBOUR = "The harbour bridge reopened on Monday after three weeks of repairs."
MARKET = "Stallholders at the Saturday market voted to keep the covered hall open."


def status_of(draft: Draft) -> str:
    return Draft.objects.get(pk=draft.pk).status


def test_undo_after_a_leaves_the_draft_awaiting_review_with_both_moves_audited(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    first = make_draft(cast["newsroom"], cast["bob"], HARBOUR, status=S.AWAITING_REVIEW)
    second = make_draft(
        cast["newsroom"], cast["bob"], MARKET, job=first.job, status=S.AWAITING_REVIEW
    )
    page = login(browser, asgi_server, "bob")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{asgi_server}/queue/")
        page.wait_for_selector("#queue-rows tr.focused")
        # the two candidates of the job are told apart
        assert "candidate 1 of 2" in page.locator(f'tr[data-draft="{first.pk}"]').inner_text()
        assert "Stallholders" in page.locator(f'tr[data-draft="{second.pk}"] .snippet').inner_text()
        # when bob presses `a` on the first draft
        page.keyboard.press("a")
        page.wait_for_selector("#undo-toast:not([hidden])")
        wait_for(lambda: status_of(first) == S.APPROVED)
        page.wait_for_selector(f'tr[data-draft="{first.pk}"]', state="detached")
        # and then Undo
        page.click("#undo-button")
        # then the draft awaits review again, is back in the queue, and the trail has both
        wait_for(lambda: status_of(first) == S.AWAITING_REVIEW)
        page.wait_for_selector(f'#queue-rows tr[data-draft="{first.pk}"]')
        assert page.locator("#undo-toast").is_hidden()
        assert "Approval undone" in page.locator("#live-status").inner_text()
        actions = list(DraftEvent.objects.filter(draft=first).values_list("action", flat=True))
        assert actions[-2:] == ["approve", "undo_approve"]
        page.goto(f"{asgi_server}/p/newsroom/drafts/{first.pk}/")
        history = page.locator("#draft-activity").inner_text()
        assert "Approve" in history and "Undo approval" in history

        # the offer is short: `a` again, wait past the toast, and `u` does nothing
        page.goto(f"{asgi_server}/queue/")
        page.wait_for_selector(f'#queue-rows tr.focused[data-draft="{first.pk}"]')
        page.keyboard.press("a")
        page.wait_for_selector("#undo-toast:not([hidden])")
        page.wait_for_selector("#undo-toast", state="hidden", timeout=12_000)
        page.keyboard.press("u")
        page.wait_for_timeout(500)
        assert status_of(first) == S.APPROVED
        assert errors == [], errors
    finally:
        page.context.close()


def test_bulk_approve_asks_first(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    drafts = [
        make_draft(cast["newsroom"], cast["bob"], text, status=S.AWAITING_REVIEW)
        for text in (HARBOUR, MARKET)
    ]
    page = login(browser, asgi_server, "bob")
    asked: list[str] = []
    try:
        page.goto(f"{asgi_server}/queue/")
        page.check("#select-all")
        # when bob declines the question, nothing is approved
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.click("button[name=action][value=approve]")
        page.wait_for_timeout(500)
        assert asked and "Approve 2 drafts?" in asked[0]
        assert [status_of(d) for d in drafts] == [S.AWAITING_REVIEW] * 2
        # when he accepts, both are approved
        page.once("dialog", lambda d: d.accept())
        page.click("button[name=action][value=approve]")
        page.wait_for_load_state()
        wait_for(lambda: [status_of(d) for d in drafts] == [S.APPROVED] * 2)
    finally:
        page.context.close()


def test_the_search_box_finds_a_draft_by_a_word_of_its_text(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    harbour = make_draft(
        cast["newsroom"], cast["bob"], HARBOUR, status=S.AWAITING_REVIEW, title="Same title"
    )
    market = make_draft(
        cast["newsroom"], cast["bob"], MARKET, status=S.AWAITING_REVIEW, title="Same title"
    )
    page = login(browser, asgi_server, "bob")
    try:
        page.goto(f"{asgi_server}/queue/")
        page.wait_for_selector(f'tr[data-draft="{harbour.pk}"]')
        # `/` goes to the search box; a word only the market story's text has
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "f-search"
        page.keyboard.type("stallholders")
        page.keyboard.press("Enter")
        page.wait_for_url("**/queue/?*search=stallholders*")
        ids = page.eval_on_selector_all(
            "#queue-rows tr.queue-row", "rows => rows.map(r => Number(r.dataset.draft))"
        )
        assert ids == [market.pk]
        # the live refresh keeps the search
        page.wait_for_function(
            "() => document.getElementById('live-status').textContent === 'Live.'"
        )
        page.wait_for_timeout(600)
        assert page.locator("#queue-rows tr.queue-row").count() == 1
    finally:
        page.context.close()
