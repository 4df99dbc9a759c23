"""The draft state machine: one table of actions, one service that moves a draft.

Every move checks the actor's role and the table, changes the row with a conditional UPDATE on
(status, version), and writes an audit event in the same transaction; watchers hear about it on
commit. An impossible move raises InvalidTransition (HTTP 409), a stale version Conflict (409),
a role that is too low PermissionDenied (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import Conflict, InvalidTransition, PermissionDenied
from contentstudio.models import Role, role_at_least
from contentstudio.selectors import require_role
from contentstudio.transitions import Lifecycle
from generation.models import Draft
from review import archive, signals
from review.models import DraftEvent


class DraftStatus(models.TextChoices):
    """The life of a draft; ``ACTIONS`` below is the one table of allowed moves."""

    # Written by the model; the checks have not started.
    GENERATED = "generated", "Generated"
    # Automated checks (toxicity, ethics, plagiarism) are running.
    CHECKING = "checking", "Checking"
    # Checks passed the project's policy; waiting for an editor.
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    # A check crossed a threshold or could not run; an editor must release or reject it.
    HELD = "held", "Held"
    # An editor asked for changes; back to the writer (a person or a regeneration).
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    # Approved by an editor; may be published.
    APPROVED = "approved", "Approved"
    # Rejected by an editor; kept for the record.
    REJECTED = "rejected", "Rejected"
    # Out in the publishing systems.
    PUBLISHED = "published", "Published"
    # Withdrawn after publication.
    UNPUBLISHED = "unpublished", "Unpublished"


S = DraftStatus


def status_label(status: str) -> str:
    """The human name of a stored status ("awaiting_review" -> "Awaiting review")."""
    try:
        return DraftStatus(status).label
    except ValueError:
        return status


SYSTEM = None  # actions only the checks pipeline performs


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    # The lowest role that may take it; SYSTEM for the pipeline's own moves.
    role: str | None
    moves: dict[str, str]
    needs_reason: bool = False
    # False: never a button; taken only by its own control (the queue's Undo after ``a``).
    offered: bool = True


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        # The pipeline: checks start when a draft is written or edited, then the policy routes it.
        Action(
            "check",
            "Run checks",
            SYSTEM,
            {
                S.GENERATED: S.CHECKING,
                S.AWAITING_REVIEW: S.CHECKING,
                S.HELD: S.CHECKING,
                S.CHANGES_REQUESTED: S.CHECKING,
            },
        ),
        Action("pass", "Checks passed", SYSTEM, {S.CHECKING: S.AWAITING_REVIEW}),
        Action("hold", "Held by checks", SYSTEM, {S.CHECKING: S.HELD}),
        # People.
        Action("approve", "Approve", Role.EDITOR, {S.AWAITING_REVIEW: S.APPROVED}),
        Action(
            "reject",
            "Reject",
            Role.EDITOR,
            {S.AWAITING_REVIEW: S.REJECTED, S.HELD: S.REJECTED, S.CHANGES_REQUESTED: S.REJECTED},
        ),
        Action(
            "request_changes",
            "Request changes",
            Role.EDITOR,
            {S.AWAITING_REVIEW: S.CHANGES_REQUESTED, S.HELD: S.CHANGES_REQUESTED},
        ),
        # A held draft goes to the queue only with a stated reason (it is in the audit trail).
        Action("release", "Release", Role.EDITOR, {S.HELD: S.AWAITING_REVIEW}, needs_reason=True),
        Action(
            "reopen",
            "Reopen",
            Role.EDITOR,
            {S.APPROVED: S.AWAITING_REVIEW, S.REJECTED: S.AWAITING_REVIEW},
        ),
        # Takes back one's own approval moments after it, while nothing else has happened to
        # the draft (the queue's toast after ``a``); later, "Reopen" is the way back.
        Action(
            "undo_approve",
            "Undo approval",
            Role.EDITOR,
            {S.APPROVED: S.AWAITING_REVIEW},
            offered=False,
        ),
        Action("publish", "Publish", Role.EDITOR, {S.APPROVED: S.PUBLISHED}),
        Action("unpublish", "Unpublish", Role.EDITOR, {S.PUBLISHED: S.UNPUBLISHED}),
    ]
}


def _state_moves() -> dict[str, frozenset[str]]:
    moves: dict[str, set[str]] = {state: set() for state in DraftStatus.values}
    for action in ACTIONS.values():
        for source, target in action.moves.items():
            moves[source].add(target)
    return {state: frozenset(targets) for state, targets in moves.items()}


# Every action's moves together: the table the transition helper checks.
DRAFT_LIFECYCLE = Lifecycle(
    name="draft",
    model=Draft,
    moves=_state_moves(),
    event_model=DraftEvent,
    event_fk="draft",
)

# States in which the text may be edited (an edit re-runs the checks).
EDITABLE = frozenset({S.AWAITING_REVIEW, S.HELD, S.CHANGES_REQUESTED})
# States that need a person to act.
NEEDS_ACTION = frozenset({S.AWAITING_REVIEW, S.HELD, S.CHANGES_REQUESTED})


def allowed_actions(*, draft: Draft, role: str | None) -> list[Action]:
    """What this role may do to the draft now (for buttons and keyboard shortcuts)."""
    return [
        action
        for action in ACTIONS.values()
        if action.role is not None
        and action.offered
        and role_at_least(role, action.role)
        and draft.status in action.moves
    ]


# How long after an approval its approver may still undo it. The queue offers Undo for 8 s;
# the server allows more, so a click at the last moment over a slow network still counts.
UNDO_APPROVAL_SECONDS = 60


def _approval_to_undo(draft: Draft, user: AbstractBaseUser | None) -> DraftEvent:
    """The approval an undo takes back: the draft's last event, by this user, moments ago.
    Call with the draft's row locked."""
    last = DraftEvent.objects.filter(draft=draft).order_by("-created_at", "-pk").first()
    if last is None or last.action != "approve":
        raise InvalidTransition("Nothing to undo: the draft changed since it was approved.")
    if user is None or last.actor_id != user.pk:
        raise InvalidTransition("Only the editor who approved the draft can undo the approval.")
    if (timezone.now() - last.created_at).total_seconds() > UNDO_APPROVAL_SECONDS:
        raise InvalidTransition("Too late to undo the approval: reopen the draft instead.")
    return last


def _describe(draft: Draft) -> dict[str, Any]:
    return {"status": draft.status, "version": draft.version, "title": draft.title}


def draft_transition(
    *,
    draft: Draft,
    action: str,
    user: AbstractBaseUser | None,
    reason: str = "",
    expected_version: int | None = None,
    data: dict[str, Any] | None = None,
) -> Draft:
    """Move ``draft`` by ``action``; returns the refreshed draft.

    ``user`` None means the checks pipeline. ``expected_version`` (the version the person saw)
    makes a stale click fail with Conflict instead of acting on a draft that changed meanwhile.
    Side effects: the row, an audit DraftEvent, and a project event on commit; approve, publish
    and unpublish are also announced on commit (``review.signals``) for the apps above review.
    """
    spec = ACTIONS.get(action)
    if spec is None:
        raise InvalidTransition(f"Unknown action {action!r}.")
    if spec.role is None:
        if user is not None:
            raise PermissionDenied(f"{spec.label} is done by the checks, not by people.")
    else:
        if user is None:
            raise PermissionDenied(f"{spec.label} needs a person.")
        require_role(user=user, project=draft.project, minimum=spec.role)
    reason = (reason or "").strip()
    if spec.needs_reason and not reason:
        raise InvalidTransition(f"{spec.label} needs a reason.")

    with transaction.atomic():
        current = Draft.objects.select_for_update().get(pk=draft.pk)
        if expected_version is not None and current.version != expected_version:
            raise Conflict(
                f"The draft changed since you opened it (version {expected_version} -> "
                f"{current.version}, now {status_label(current.status).lower()}).",
                current=_describe(current),
            )
        target = spec.moves.get(current.status)
        if target is None:
            raise InvalidTransition(
                f"Cannot {spec.label.lower()} a draft that is "
                f"{status_label(current.status).lower()}."
            )
        approved_version = current.version
        if action == "undo_approve":
            data = {**(data or {}), "undoes": _approval_to_undo(current, user).pk}
        # Conditional on (status, version): exactly one concurrent mover wins.
        moved = DRAFT_LIFECYCLE.move(
            current.pk,
            to=target,
            expected=current.status,
            where={"version": current.version},
            fields={"version": F("version") + 1, "updated_at": timezone.now()},
            event={"actor": user, "action": action, "reason": reason, "data": data or {}},
        )
        if moved is None:
            latest = Draft.objects.get(pk=draft.pk)
            raise Conflict(
                "Someone else changed the draft at the same moment.", current=_describe(latest)
            )
        # A published draft is a plagiarism source for later drafts (review's own bookkeeping).
        # Whoever publishes it writes what goes out with it in the transaction around this one
        # (publishing's services); review only announces the move, on commit.
        if action == "publish":
            archive.publication_add(current)
        elif action == "unpublish":
            archive.publication_remove(current)
        project_id, draft_id = current.project_id, current.pk
        if action == "approve":
            approved_at = timezone.now()
            transaction.on_commit(
                lambda: signals.draft_approved.send(
                    sender=Draft, draft_id=draft_id, actor=user, approved_at=approved_at
                )
            )
        elif action == "undo_approve":
            transaction.on_commit(
                lambda: signals.draft_approval_undone.send(
                    sender=Draft, draft_id=draft_id, actor=user, approved_version=approved_version
                )
            )
        elif action == "publish":
            transaction.on_commit(
                lambda: signals.draft_published.send(sender=Draft, draft_id=draft_id, actor=user)
            )
        elif action == "unpublish":
            transaction.on_commit(
                lambda: signals.draft_unpublished.send(
                    sender=Draft, draft_id=draft_id, actor=user, reason=reason
                )
            )
        transaction.on_commit(
            lambda: realtime.publish_project_event(
                project_id,
                {"kind": "draft", "id": draft_id, "status": target, "action": action},
            )
        )
    draft.refresh_from_db()
    return draft


def draft_log(
    *,
    draft: Draft,
    user: AbstractBaseUser | None,
    action: str,
    data: dict | None = None,
    reason: str = "",
) -> DraftEvent:
    """An audit row for an action that is not a state change (edit, comment, assign...)."""
    return DraftEvent.objects.create(
        draft=draft,
        actor=user,
        action=action,
        from_status=draft.status,
        to_status=draft.status,
        reason=reason,
        data=data or {},
    )
