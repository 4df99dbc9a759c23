"""The editors' workflow in a real headless Chromium against the real ASGI server and worker:
the queue driven by the keyboard, the draft page with highlights, the side-by-side match, the
editor and its diff, an approval; and two editors whose queues update live."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from generation.models import Draft
from review import lifecycle, services
from review.lifecycle import DraftStatus
from review.models import Policy
from tests.conftest import wait_for
from tests.factories import ARCHIVE, FLOOD, HARBOUR, UNRELATED, make_archive, make_draft
from tests.test_browser import (  # noqa: F401 - fixtures, and Chromium's flags
    CHROMIUM_ARGS,
    _orm_beside_playwright,
    browser,
)

S = DraftStatus
# The first two sentences of the harbour story, copied word for word.
COPIED = ". ".join(ARCHIVE[HARBOUR]["text"].split(". ")[:2]) + "."
LIBRARY_NEWS = (
    "The council opened a new cycle path along the canal on Friday. Families rode the route "
    "in the sunshine and stopped at the lock keeper's cottage for lunch."
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_indexes")]


def login(browser: Any, base: str, username: str) -> Any:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"{username}-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/projects/")
    return page


def checked_draft(cast: dict, text: str, *, minutes_ago: int, title: str) -> Draft:
    """A draft whose checks ran here, in the test thread (deterministic, no waiting)."""
    draft = make_draft(cast["newsroom"], cast["bob"], text, status=S.CHECKING, title=title)
    Draft.objects.filter(pk=draft.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    services.draft_checks_run(draft_id=draft.pk, version=draft.version)
    draft.refresh_from_db()
    return draft


def focused_id(page: Any) -> int:
    return int(page.get_attribute("#queue-rows tr.focused", "data-draft"))


def test_an_editor_works_through_the_queue_by_keyboard_edits_a_copied_draft_and_approves_it(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    newsroom = cast["newsroom"]
    make_archive(newsroom, [ARCHIVE[HARBOUR], ARCHIVE[FLOOD]])
    # The copy is highlighted and matched side by side, but this policy lets it through to the
    # queue (a third of the story, two of five sentences), so it can be approved after the edit.
    services.policy_get(project=newsroom)
    Policy.objects.filter(project=newsroom).update(
        lexical_threshold=90.0, lexical_draft_share=0.9, semantic_share=0.9
    )
    first = checked_draft(cast, UNRELATED, minutes_ago=30, title="Chess club centenary")
    copied = checked_draft(cast, f"{COPIED} {UNRELATED}", minutes_ago=20, title="Bridge and chess")
    last = checked_draft(cast, LIBRARY_NEWS, minutes_ago=10, title="Canal cycle path")
    assert [first.status, copied.status, last.status] == [S.AWAITING_REVIEW] * 3

    page = login(browser, asgi_server, "bob")
    page.goto(f"{asgi_server}/queue/")
    page.wait_for_selector("#queue-rows tr.focused")
    assert focused_id(page) == first.pk
    page.keyboard.press("j")
    assert focused_id(page) == copied.pk
    page.keyboard.press("j")
    assert focused_id(page) == last.pk
    page.keyboard.press("j")
    assert focused_id(page) == last.pk, "j stops at the last row"
    page.keyboard.press("k")
    assert focused_id(page) == copied.pk
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")
    # Enter on a focused button is the button's, not "open the focused draft".
    page.focus("button[data-help-open]")
    page.keyboard.press("Enter")
    assert page.is_visible("#help") and page.url.endswith("/queue/")
    page.keyboard.press("Escape")
    page.focus(f'#queue-rows tr[data-draft="{copied.pk}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/p/newsroom/drafts/{copied.pk}/**")

    # The copied sentences are highlighted and shown beside their source.
    marks = page.locator("#draft-text mark.hl-plagiarism")
    assert marks.count() >= 1
    assert "harbour bridge" in " ".join(marks.all_inner_texts()).lower()
    match = page.locator(".match").first
    assert "Harbour bridge to close for two years" in match.inner_text()
    assert match.locator(".side-by-side mark.hl-plagiarism").count() >= 2
    assert page.locator("#draft-status").inner_text() == "Awaiting review"
    assert page.locator("a[rel=next]").count() == 1 and page.locator("a[rel=prev]").count() == 1

    # e opens the editor; letters typed there are text, not shortcuts.
    page.keyboard.press("e")
    page.wait_for_selector("#editor-section:not([hidden])")
    page.keyboard.press("Control+End")
    page.keyboard.type(" Bob added a quote from the mayor.")
    assert page.is_visible("#editor-section"), "typing 'e' or 'a' did not trigger shortcuts"
    # (The URL before and after saving is the same: wait for the navigation itself.)
    with page.expect_navigation():
        page.click("#edit-save")
    assert "Saved as a new revision" in page.locator(".messages").inner_text()
    inserted = " ".join(page.locator("#model-diff ins").all_inner_texts())
    assert "Bob added a quote from the mayor." in inserted
    assert page.locator("#model-diff del").count() == 0

    # The worker re-checks the edited text; the page follows it live, then a approves.
    page.wait_for_function(
        "() => document.querySelector('#draft-status').dataset.status === 'awaiting_review'",
        timeout=90_000,
    )
    page.wait_for_selector("#action-approve")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.locator("#draft-status").inner_text() == "Approved"
    page.keyboard.press("e")
    assert page.is_hidden("#editor-section"), "an approved draft offers no editor"
    page.keyboard.press("c")
    assert page.evaluate("document.activeElement.id") == "comment-body"
    page.keyboard.type("Approved after the edit.")
    with page.expect_navigation():
        page.click("#comment-form button[type=submit]")
    page.wait_for_selector("article.comment")
    assert "Approved after the edit." in page.locator("article.comment").inner_text()
    copied.refresh_from_db()
    assert copied.status == S.APPROVED
    assert "Bob added a quote from the mayor." in copied.body
    assert list(copied.events.values_list("action", flat=True)) == [
        "pass",
        "edit",
        "check",
        "pass",
        "approve",
        "comment",
    ]
    page.context.close()


def test_an_edit_typed_while_the_checks_ran_again_is_saved(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    """Bob opens the editor and types; meanwhile alice asks for the checks again and the worker
    runs them (the draft moves to checking and back: its version moves on twice, its text does
    not). Bob's save goes through instead of being refused as stale."""
    draft = make_draft(cast["newsroom"], cast["bob"], LIBRARY_NEWS, status=S.AWAITING_REVIEW)
    page = login(browser, asgi_server, "bob")
    try:
        page.goto(f"{asgi_server}/p/newsroom/drafts/{draft.pk}/")
        page.wait_for_selector("#edit-open")
        page.keyboard.press("e")
        page.wait_for_selector("#editor-section:not([hidden])")
        page.keyboard.press("Control+End")
        page.keyboard.type(" Bob typed this while the checks ran.")
        assert page.input_value("#edit-version") == "1"

        services.draft_checks_rerun(draft=Draft.objects.get(pk=draft.pk), user=cast["alice"])
        page.wait_for_function(
            "() => { const s = document.querySelector('#draft-status');"
            " return s.dataset.status === 'awaiting_review' && s.dataset.version === '3'; }",
            timeout=90_000,
        )
        assert page.is_visible("#editor-section"), "the open editor stays open"
        with page.expect_navigation():
            page.click("#edit-save")
        assert page.locator("#conflict").count() == 0, page.locator("#conflict").inner_text()
        assert "Saved as a new revision" in page.locator(".messages").inner_text()
        saved = Draft.objects.get(pk=draft.pk)
        assert "Bob typed this while the checks ran." in saved.body
        edit = saved.events.get(action="edit")
        assert edit.actor == cast["bob"] and edit.data["opened_at_version"] == 1
        # The save sent it through the checks again: let them finish.
        wait_for(lambda: Draft.objects.get(pk=draft.pk).status != S.CHECKING, timeout=90)
    finally:
        Draft.objects.filter(status=S.CHECKING).update(status=S.AWAITING_REVIEW)
        page.context.close()


def test_two_editors_see_each_others_queue_change_without_reloading(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    waiting = checked_draft(cast, UNRELATED, minutes_ago=30, title="Chess club centenary")
    bob = login(browser, asgi_server, "bob")
    alice = login(browser, asgi_server, "alice")
    for page in (bob, alice):
        page.goto(f"{asgi_server}/queue/")
        page.wait_for_function(
            "() => document.querySelector('#live-status').textContent === 'Live.'"
        )
        page.evaluate("window.__notReloaded = true")
        assert page.locator("#queue-rows tr.queue-row").count() == 1

    # A new draft finishes its checks: it appears in both queues.
    arrived = checked_draft(cast, LIBRARY_NEWS, minutes_ago=10, title="Canal cycle path")
    assert arrived.status == S.AWAITING_REVIEW
    for page in (bob, alice):
        page.wait_for_selector(f'#queue-rows tr[data-draft="{arrived.pk}"]', timeout=20_000)
        assert "Canal cycle path" in page.locator(f'tr[data-draft="{arrived.pk}"]').inner_text()
        page.wait_for_function(
            "() => document.querySelector('#queue-count').textContent === '2 drafts'"
        )

    # Bob approves it from his queue by keyboard: it leaves alice's queue.
    bob.keyboard.press("j")
    assert focused_id(bob) == arrived.pk
    bob.keyboard.press("a")
    alice.wait_for_selector(
        f'#queue-rows tr[data-draft="{arrived.pk}"]', state="detached", timeout=20_000
    )
    bob.wait_for_selector(
        f'#queue-rows tr[data-draft="{arrived.pk}"]', state="detached", timeout=20_000
    )
    bob.wait_for_function(
        "() => document.querySelector('#live-status').textContent === 'Draft approved.'"
    )
    assert alice.locator(f'#queue-rows tr[data-draft="{waiting.pk}"]').count() == 1
    alice.wait_for_function(
        "() => document.querySelector('#queue-count').textContent === '1 draft'"
    )

    # Alice rejects the other one with r, giving a reason when asked: it leaves bob's queue.
    alice.once("dialog", lambda dialog: dialog.accept("Off topic for us"))
    assert focused_id(alice) == waiting.pk
    alice.keyboard.press("r")
    bob.wait_for_selector(
        f'#queue-rows tr[data-draft="{waiting.pk}"]', state="detached", timeout=20_000
    )
    bob.wait_for_function("() => document.querySelector('#queue-count').textContent === '0 drafts'")
    waiting.refresh_from_db()
    assert waiting.status == S.REJECTED
    assert waiting.events.get(action="reject").reason == "Off topic for us"
    for page in (bob, alice):
        assert page.evaluate("window.__notReloaded") is True
    arrived.refresh_from_db()
    assert arrived.status == S.APPROVED
    bob.context.close()
    alice.context.close()


def test_pages_catch_up_with_changes_made_before_their_socket_connected(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    """A draft that moves between the page's render and its websocket subscription (the checks
    of a just-saved edit often finish that fast) must still show up: each page refreshes when
    its socket opens. The socket is held back here until the change is made."""
    page = login(browser, asgi_server, "bob")

    def pass_then_connect(draft: Draft) -> Any:
        def handler(ws: Any) -> None:
            lifecycle.draft_transition(
                draft=Draft.objects.get(pk=draft.pk), action="pass", user=None
            )
            ws.connect_to_server()

        return handler

    on_page = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.CHECKING)
    try:
        page.route_web_socket(re.compile(r".*/ws/projects/.*"), pass_then_connect(on_page))
        page.goto(f"{asgi_server}/p/newsroom/drafts/{on_page.pk}/")
        page.wait_for_function(
            "() => document.querySelector('#draft-status').dataset.status === 'awaiting_review'",
            timeout=10_000,
        )
        assert page.is_visible("#action-approve")

        for_queue = make_draft(cast["newsroom"], cast["bob"], LIBRARY_NEWS, status=S.CHECKING)
        page.route_web_socket(re.compile(r".*/ws/queue/.*"), pass_then_connect(for_queue))
        page.goto(f"{asgi_server}/queue/")
        page.wait_for_selector(f'#queue-rows tr[data-draft="{for_queue.pk}"]', timeout=10_000)
    finally:
        # Nothing left "checking" for the worker fixture to wait on when this fails.
        Draft.objects.filter(status=S.CHECKING).update(status=S.AWAITING_REVIEW)
        page.context.close()


def test_a_draft_checked_against_a_partly_indexed_archive_says_so_then_shows_the_rerun(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    from review.services import embedding

    # given: an archive not yet indexed for paraphrase search, and a draft checked against it
    newsroom = cast["newsroom"]
    make_archive(newsroom, [ARCHIVE[HARBOUR], ARCHIVE[FLOOD]], embed=False)
    draft = checked_draft(cast, UNRELATED, minutes_ago=5, title="Chess club centenary")
    assert draft.status == S.AWAITING_REVIEW  # checked against what is indexed, not held
    page = login(browser, asgi_server, "bob")
    try:
        # when: the editor opens it
        page.goto(f"{asgi_server}/p/newsroom/drafts/{draft.pk}/")
        # then: the semantic check says how much of the archive it was checked against
        partial = page.locator('[data-testid="semantic-partial"]')
        assert "Checked against 0% of the archive: import running" in partial.inner_text()
        progress = page.locator('#draft-panel [data-testid="indexing-progress"]')
        assert "0%" in progress.inner_text()
        assert page.locator(".hold-reasons").count() == 0
        # when: indexing finishes (the embedding chain, as the worker runs it)
        while embedding.embed_chain_step(project_id=newsroom.pk).again:
            pass
        # then: the checks run again by themselves and the page shows the new result live
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"semantic-partial\"]')"
            " && document.querySelector('#draft-status').dataset.status === 'awaiting_review'",
            timeout=30_000,
        )
        assert page.locator(".check-semantic .badge").first.inner_text() == "ran"
    finally:
        Draft.objects.filter(status=S.CHECKING).update(status=S.AWAITING_REVIEW)
        page.context.close()
