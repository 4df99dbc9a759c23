"""The queue tells candidates of one job apart (their number and opening words), finds drafts by
the words of their title or text (page and API), and an approval can be undone by its approver
moments later, with both moves in the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from contentstudio.errors import InvalidTransition
from generation.models import Draft
from review import lifecycle
from review.lifecycle import DraftStatus
from review.models import DraftEvent
from tests.factories import logged_in, make_draft
from tests.test_queue import queue_ids

S = DraftStatus
HARBOUR = "The harbour bridge reopened on Monday after the lock keeper's repairs."
MARKET = "Stallholders at the Saturday market voted to keep the covered hall."
CHINESE = "市议会周一批准了新的自行车道计划，沿运河修建。"


def row_html(content: str, draft: Draft) -> str:
    start = content.index(f'data-draft="{draft.pk}"')
    return content[start : content.index("</tr>", start)]


def test_candidates_of_one_job_show_their_number_and_their_opening_words(cast: dict) -> None:
    # given three candidates of one job: same headline, different texts (one hostile)
    first = make_draft(
        cast["newsroom"], cast["bob"], HARBOUR, status=S.AWAITING_REVIEW, title="Bridge"
    )
    second = make_draft(
        cast["newsroom"],
        cast["bob"],
        'Bridge works <img src=x onerror="alert(1)"> finish early.',
        job=first.job,
        status=S.AWAITING_REVIEW,
        title="Bridge",
    )
    third = make_draft(
        cast["newsroom"],
        cast["bob"],
        MARKET,
        job=first.job,
        status=S.AWAITING_REVIEW,
        title="Bridge",
    )
    single = make_draft(cast["newsroom"], cast["bob"], MARKET, status=S.AWAITING_REVIEW)
    # when bob opens the queue
    rows = logged_in(cast["bob"]).get("/queue/rows/").content.decode()
    # then each row says which candidate it is, and how its text begins (escaped)
    assert "candidate 1 of 3" in row_html(rows, first)
    assert "candidate 2 of 3" in row_html(rows, second)
    assert "candidate 3 of 3" in row_html(rows, third)
    assert "lock keeper&#x27;s repairs" in row_html(rows, first)
    assert "Stallholders at the Saturday market" in row_html(rows, third)
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in row_html(rows, second)
    assert "<img" not in rows
    # a draft that was the only candidate carries no number
    assert "candidate" not in row_html(rows, single).replace('class="candidate-of"', "")


def test_a_long_text_is_cut_to_a_one_line_snippet(cast: dict) -> None:
    long = make_draft(
        cast["newsroom"], cast["bob"], "word " * 200 + "TAILWORD", status=S.AWAITING_REVIEW
    )
    row = row_html(logged_in(cast["bob"]).get("/queue/rows/").content.decode(), long)
    assert "word word" in row and "…" in row and "TAILWORD" not in row


def test_search_finds_drafts_by_the_words_of_their_title_or_text(cast: dict) -> None:
    harbour = make_draft(
        cast["newsroom"], cast["bob"], HARBOUR, status=S.AWAITING_REVIEW, title="Bridge reopens"
    )
    market = make_draft(
        cast["newsroom"], cast["bob"], MARKET, status=S.AWAITING_REVIEW, title="Market hall"
    )
    chinese = make_draft(
        cast["newsroom"], cast["bob"], CHINESE, status=S.AWAITING_REVIEW, title="自行车道"
    )
    theirs = make_draft(cast["other"], cast["eve"], HARBOUR, status=S.AWAITING_REVIEW)
    bob = logged_in(cast["bob"])
    # a word of the body, any case; a word of the title; every word must be there
    assert queue_ids(bob, "search=STALLHOLDERS") == [market.pk]
    assert queue_ids(bob, "search=reopens") == [harbour.pk]
    assert queue_ids(bob, "search=bridge+monday") == [harbour.pk]
    assert queue_ids(bob, "search=bridge+saturday") == []
    # a word with an apostrophe (stored as an HTML entity) and a Chinese word mid-sentence
    assert queue_ids(bob, "search=keeper%27s") == [harbour.pk]
    assert queue_ids(bob, "search=%E8%BF%90%E6%B2%B3") == [chinese.pk]  # 运河
    # never another project's drafts
    assert theirs.pk not in queue_ids(bob, "search=harbour")
    # the page keeps the search in its box and in the draft links
    page = bob.get("/queue/?search=stallholders").content.decode()
    assert 'name="search" type="search" maxlength="200" value="stallholders"' in page
    assert "search%3Dstallholders" in page
    # the API searches the same way
    api = APIClient()
    api.force_authenticate(cast["bob"])
    found = api.get("/api/v1/drafts/", {"search": "stallholders"}).json()
    assert [d["id"] for d in found["results"]] == [market.pk]


def test_undo_of_an_approval_puts_the_draft_back_with_both_moves_audited(cast: dict) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], HARBOUR, status=S.AWAITING_REVIEW)
    bob = logged_in(cast["bob"])
    headers = {"HTTP_ACCEPT": "application/json"}
    url = f"/p/newsroom/drafts/{draft.pk}/action/"
    approved = bob.post(url, {"action": "approve", "version": draft.version}, **headers)
    assert approved.status_code == 200 and approved.json()["status"] == S.APPROVED
    # when bob undoes it from the queue
    undone = bob.post(
        url,
        {"action": "undo_approve", "version": approved.json()["version"], "reason": "Oops"},
        **headers,
    )
    # then the draft awaits review again and the trail shows the approval and its undoing
    assert undone.status_code == 200 and undone.json()["status"] == S.AWAITING_REVIEW
    trail = list(DraftEvent.objects.filter(draft=draft).values_list("action", "to_status"))
    assert trail[-2:] == [("approve", S.APPROVED), ("undo_approve", S.AWAITING_REVIEW)]
    undo_event = DraftEvent.objects.filter(draft=draft).last()
    assert undo_event.data["undoes"] == DraftEvent.objects.get(draft=draft, action="approve").pk
    assert undo_event.actor == cast["bob"] and undo_event.reason == "Oops"
    activity = bob.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert "Undo approval" in activity and "Approve" in activity
    assert draft.pk in queue_ids(bob)


def test_an_approval_is_undone_only_by_its_approver_and_only_moments_after(cast: dict) -> None:
    project, bob, alice = cast["newsroom"], cast["bob"], cast["alice"]
    draft = make_draft(project, bob, HARBOUR, status=S.AWAITING_REVIEW)
    approved = lifecycle.draft_transition(draft=draft, action="approve", user=bob)
    # not by another editor
    with pytest.raises(InvalidTransition, match="Only the editor who approved"):
        lifecycle.draft_transition(draft=approved, action="undo_approve", user=alice)
    # not once the moment has passed
    DraftEvent.objects.filter(draft=draft, action="approve").update(
        created_at=timezone.now() - timedelta(seconds=lifecycle.UNDO_APPROVAL_SECONDS + 1)
    )
    with pytest.raises(InvalidTransition, match="Too late"):
        lifecycle.draft_transition(draft=approved, action="undo_approve", user=bob)
    # not after something else happened to the draft (it was published)
    other = make_draft(project, bob, MARKET, status=S.AWAITING_REVIEW)
    other = lifecycle.draft_transition(draft=other, action="approve", user=bob)
    lifecycle.draft_log(draft=other, user=alice, action="comment")
    with pytest.raises(InvalidTransition, match="Nothing to undo"):
        lifecycle.draft_transition(draft=other, action="undo_approve", user=bob)
    # and a stale version (the draft moved on) is a conflict, never an undo
    third = make_draft(project, bob, MARKET, status=S.AWAITING_REVIEW)
    third = lifecycle.draft_transition(draft=third, action="approve", user=bob)
    published = lifecycle.draft_transition(draft=third, action="publish", user=bob)
    assert published.status == S.PUBLISHED
    response = logged_in(bob).post(
        f"/p/newsroom/drafts/{third.pk}/action/",
        {"action": "undo_approve", "version": third.version - 1},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 409
    # the draft page never offers it as a button (Reopen is the way back later)
    assert "undo_approve" not in [
        a.name for a in lifecycle.allowed_actions(draft=approved, role="admin")
    ]
