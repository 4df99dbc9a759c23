"""The draft state machine, exhaustively: every state x every action x every kind of actor
(admin, editor, reviewer, viewer, a user of another project, and the checks pipeline), then the
races: stale versions, a row changed between the locked read and the write, and two people
deciding on the same draft at the same moment in two threads.

Expected outcomes are derived here from the rules the issue states (not read back from the
ACTIONS table): the pipeline's moves belong to the pipeline; people need their role; a move that
does not start from the draft's state is refused with InvalidTransition, never anything else.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.models import F
from django.http import Http404

from contentstudio.errors import Conflict, DomainError, InvalidTransition, PermissionDenied
from contentstudio.models import Role
from generation.models import Draft
from review import lifecycle
from review.lifecycle import DraftStatus
from review.models import DraftEvent
from tests.factories import UNRELATED, make_draft

S = DraftStatus

# The moves the issue asks for, written out independently of review/lifecycle.py.
EXPECTED_MOVES: dict[str, dict[str, str]] = {
    "check": {
        S.GENERATED: S.CHECKING,
        S.AWAITING_REVIEW: S.CHECKING,
        S.HELD: S.CHECKING,
        S.CHANGES_REQUESTED: S.CHECKING,
    },
    "pass": {S.CHECKING: S.AWAITING_REVIEW},
    "hold": {S.CHECKING: S.HELD},
    "approve": {S.AWAITING_REVIEW: S.APPROVED},
    "reject": {S.AWAITING_REVIEW: S.REJECTED, S.HELD: S.REJECTED, S.CHANGES_REQUESTED: S.REJECTED},
    "request_changes": {S.AWAITING_REVIEW: S.CHANGES_REQUESTED, S.HELD: S.CHANGES_REQUESTED},
    "release": {S.HELD: S.AWAITING_REVIEW},
    "reopen": {S.APPROVED: S.AWAITING_REVIEW, S.REJECTED: S.AWAITING_REVIEW},
    "publish": {S.APPROVED: S.PUBLISHED},
    "unpublish": {S.PUBLISHED: S.UNPUBLISHED},
}
# Taken only by its own control (the queue's Undo moments after an approval), never offered as a
# button; its rules (approver only, nothing since, within the window) are in
# tests/test_queue_search_undo.py.
UNOFFERED_MOVES: dict[str, dict[str, str]] = {"undo_approve": {S.APPROVED: S.AWAITING_REVIEW}}
SYSTEM_ACTIONS = {"check", "pass", "hold"}
# Editors decide; admins can do everything editors can; reviewers and viewers never move a draft.
PEOPLE = {"alice": Role.ADMIN, "bob": Role.EDITOR, "charlie": Role.REVIEWER, "dave": Role.VIEWER}
ACTORS = ["alice", "bob", "charlie", "dave", "eve", "system"]


def actor_of(cast: dict, name: str) -> Any:
    return None if name == "system" else cast[name]


def expected_outcome(status: str, action: str, actor: str) -> str:
    """One of: moved, permission (403), not_found (404: a non-member), invalid (409)."""
    if action in SYSTEM_ACTIONS:
        if actor != "system":
            return "permission"
    else:
        if actor == "system":
            return "permission"
        if actor == "eve":
            return "not_found"
        if PEOPLE[actor] not in (Role.ADMIN, Role.EDITOR):
            return "permission"
    return "moved" if status in EXPECTED_MOVES[action] else "invalid"


def test_the_table_has_exactly_the_actions_and_moves_the_workflow_needs() -> None:
    assert {name: dict(a.moves) for name, a in lifecycle.ACTIONS.items()} == {
        **EXPECTED_MOVES,
        **UNOFFERED_MOVES,
    }
    assert {name for name, a in lifecycle.ACTIONS.items() if not a.offered} == set(UNOFFERED_MOVES)
    assert {name for name, a in lifecycle.ACTIONS.items() if a.role is None} == SYSTEM_ACTIONS
    assert [name for name, a in lifecycle.ACTIONS.items() if a.needs_reason] == ["release"]


@pytest.mark.parametrize("action", sorted(EXPECTED_MOVES))
@pytest.mark.parametrize("status", S.values)
def test_every_state_action_and_actor_moves_or_is_refused_cleanly(
    cast: dict, status: str, action: str
) -> None:
    # One test per (state, action); each actor tries it on a fresh draft inside a savepoint
    # that is rolled back, which keeps the 540 cases to seconds on PostgreSQL too.
    failures = []
    for actor in ACTORS:
        with transaction.atomic():
            failure = _try_move(cast, status, action, actor)
            transaction.set_rollback(True)
        if failure:
            failures.append(f"{actor}: {failure}")
    assert failures == []


def _try_move(cast: dict, status: str, action: str, actor: str) -> str | None:
    """None when the outcome is the expected one, otherwise what went wrong."""
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=status)
    version = draft.version
    user = actor_of(cast, actor)
    expected = expected_outcome(status, action, actor)
    raised: Exception | None = None
    try:
        lifecycle.draft_transition(
            draft=draft, action=action, user=user, reason="Checked by hand", expected_version=None
        )
    except Exception as exc:  # the kind of exception is what is under test
        raised = exc

    row = Draft.objects.get(pk=draft.pk)
    events = list(DraftEvent.objects.filter(draft=draft))
    if expected == "moved":
        if raised is not None:
            return f"expected a move, got {raised!r}"
        if row.status != EXPECTED_MOVES[action][status] or row.version != version + 1:
            return f"row is {row.status} v{row.version}"
        if draft.status != row.status:
            return "the caller's object was not refreshed"
        if [(e.action, e.from_status, e.to_status, e.actor_id, e.reason) for e in events] != [
            (action, status, row.status, user.pk if user else None, "Checked by hand")
        ]:
            return f"audit rows {[(e.action, e.from_status, e.to_status) for e in events]}"
    else:
        kind = {
            "permission": PermissionDenied,
            "not_found": Http404,
            "invalid": InvalidTransition,
        }[expected]
        if type(raised) is not kind:
            return f"expected {kind.__name__}, got {raised!r}"
        if isinstance(raised, DomainError) and not raised.message:
            return "no message for the person"
        if expected == "invalid" and not (
            lifecycle.ACTIONS[action].label.lower() in raised.message.lower()
            and lifecycle.status_label(row.status).lower() in raised.message
        ):
            return f"the message does not name the move and the state: {raised.message!r}"
        if (row.status, row.version) != (status, version):
            return f"a refused move changed the row to {row.status} v{row.version}"
        if events:
            return "a refused move left an audit row"

    # The buttons and shortcuts offered are exactly the moves that would succeed.
    if actor in PEOPLE:
        offered = {
            a.name
            for a in lifecycle.allowed_actions(draft=Draft(status=status), role=PEOPLE[actor])
        }
        should = {n for n in EXPECTED_MOVES if expected_outcome(status, n, actor) == "moved"}
        if offered != should:
            return f"offered {sorted(offered)}, should be {sorted(should)}"
    return None


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_releasing_a_held_draft_needs_a_stated_reason(cast: dict, reason: str) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.HELD)
    with pytest.raises(InvalidTransition, match="needs a reason"):
        lifecycle.draft_transition(draft=draft, action="release", user=cast["bob"], reason=reason)
    draft.refresh_from_db()
    assert draft.status == S.HELD and draft.version == 1
    assert not DraftEvent.objects.filter(draft=draft).exists()

    lifecycle.draft_transition(
        draft=draft, action="release", user=cast["bob"], reason="  Quote is attributed.  "
    )
    assert draft.status == S.AWAITING_REVIEW
    event = DraftEvent.objects.get(draft=draft)
    assert event.reason == "Quote is attributed.", "the reason is kept (trimmed) in the audit"


def test_an_unknown_action_is_an_invalid_transition(cast: dict) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.AWAITING_REVIEW)
    with pytest.raises(InvalidTransition, match="Unknown action"):
        lifecycle.draft_transition(draft=draft, action="delete", user=cast["alice"])


def test_a_superuser_acts_as_an_admin_in_any_project(cast: dict, make_user: Any) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    draft = make_draft(cast["other"], cast["eve"], UNRELATED, status=S.AWAITING_REVIEW)
    lifecycle.draft_transition(draft=draft, action="approve", user=root)
    assert draft.status == S.APPROVED


# --- Stale versions and races -------------------------------------------------------------------


def test_a_stale_expected_version_is_a_conflict_that_describes_the_draft_now(cast: dict) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.AWAITING_REVIEW)
    seen = draft.version
    lifecycle.draft_transition(
        draft=Draft.objects.get(pk=draft.pk), action="request_changes", user=cast["alice"]
    )
    with pytest.raises(Conflict) as caught:
        lifecycle.draft_transition(
            draft=draft, action="approve", user=cast["bob"], expected_version=seen
        )
    assert caught.value.current == {
        "status": S.CHANGES_REQUESTED,
        "version": seen + 1,
        "title": draft.title,
    }
    assert "changes requested" in caught.value.message
    assert Draft.objects.get(pk=draft.pk).status == S.CHANGES_REQUESTED
    assert list(DraftEvent.objects.filter(draft=draft).values_list("action", flat=True)) == [
        "request_changes"
    ]
    # With the version the person sees now, the same click works.
    lifecycle.draft_transition(
        draft=draft, action="reject", user=cast["bob"], expected_version=seen + 1
    )
    assert Draft.objects.get(pk=draft.pk).status == S.REJECTED


def test_a_row_changed_between_the_read_and_the_write_loses_with_a_conflict(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conditional UPDATE on (status, version) is what decides when the row lock does not
    hold (SQLite ignores SELECT ... FOR UPDATE): simulate another writer landing in between."""
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.AWAITING_REVIEW)
    manager = Draft.objects
    original = manager.select_for_update

    class Sneaky:
        def __init__(self) -> None:
            self.qs = original()

        def get(self, **lookup: Any) -> Draft:
            row = self.qs.get(**lookup)
            manager.filter(pk=row.pk).update(version=F("version") + 1, title="Retitled meanwhile")
            return row

    monkeypatch.setattr(manager, "select_for_update", Sneaky)
    with pytest.raises(Conflict, match="same moment") as caught:
        lifecycle.draft_transition(draft=draft, action="approve", user=cast["bob"])
    monkeypatch.undo()
    assert caught.value.current == {
        "status": S.AWAITING_REVIEW,
        "version": 2,
        "title": "Retitled meanwhile",
    }
    # The simulated writer ran inside the loser's transaction, so it is rolled back with it:
    # what matters is that the loser neither moved the draft nor wrote an audit row.
    assert Draft.objects.get(pk=draft.pk).status == S.AWAITING_REVIEW
    assert not DraftEvent.objects.filter(draft=draft).exists()


def _race(calls: list[Any]) -> list[Any]:
    """Run the calls in threads released together; each returns its result or its exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = calls[index]()
        except Exception as exc:  # reported to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_editors_approving_the_same_draft_at_once_exactly_one_wins(cast: dict) -> None:
    for _ in range(4):
        draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.AWAITING_REVIEW)
        version = draft.version

        def approve(name: str, draft_id: int = draft.pk, version: int = version) -> Draft:
            user = type(cast[name]).objects.get(pk=cast[name].pk)
            return lifecycle.draft_transition(
                draft=Draft.objects.get(pk=draft_id),
                action="approve",
                user=user,
                expected_version=version,
            )

        results = _race([lambda: approve("alice"), lambda: approve("bob")])
        won = [r for r in results if isinstance(r, Draft)]
        lost = [r for r in results if not isinstance(r, Draft)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], Conflict | InvalidTransition), repr(lost[0])
        if isinstance(lost[0], Conflict):
            # The loser learns what the draft is now.
            assert lost[0].current["status"] == S.APPROVED
            assert lost[0].current["version"] == version + 1
        row = Draft.objects.get(pk=draft.pk)
        assert (row.status, row.version) == (S.APPROVED, version + 1)
        assert DraftEvent.objects.filter(draft=draft).count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_approval_and_a_rejection_racing_leave_one_decision_and_one_audit_row(
    cast: dict,
) -> None:
    for _ in range(4):
        draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.AWAITING_REVIEW)

        def act(name: str, action: str, draft_id: int = draft.pk) -> Draft:
            user = type(cast[name]).objects.get(pk=cast[name].pk)
            return lifecycle.draft_transition(
                draft=Draft.objects.get(pk=draft_id), action=action, user=user, reason="race"
            )

        results = _race([lambda: act("alice", "reject"), lambda: act("bob", "approve")])
        won = [r for r in results if isinstance(r, Draft)]
        lost = [r for r in results if not isinstance(r, Draft)]
        assert len(won) == 1 and len(lost) == 1, results
        # Without an expected version the loser finds the draft already decided.
        assert isinstance(lost[0], InvalidTransition | Conflict), repr(lost[0])
        row = Draft.objects.get(pk=draft.pk)
        assert row.status == won[0].status and row.status in {S.APPROVED, S.REJECTED}
        events = list(DraftEvent.objects.filter(draft=draft))
        assert len(events) == 1 and events[0].to_status == row.status


def test_generation_writes_drafts_in_the_first_state_of_the_review_table() -> None:
    # generation only stores the status; review owns the states and the moves
    from generation.models import DRAFT_INITIAL_STATUS

    assert DRAFT_INITIAL_STATUS == DraftStatus.GENERATED
    assert DraftStatus.GENERATED in lifecycle.ACTIONS["check"].moves
