"""Writes of the editorial workflow: what people do to drafts besides moving them (edits,
comments, assignments, soft edit locks, regeneration) and bulk actions over many drafts.

State moves go through ``review.lifecycle.draft_transition``; everything here writes an audit
event in the same transaction and tells watchers on commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import Conflict, DomainError, InvalidTransition
from contentstudio.html import html_to_text, sanitize
from contentstudio.models import Membership, Role, role_at_least
from contentstudio.selectors import membership_role, require_role
from generation import services as generation
from generation.models import Draft, GenerationJob
from review import diff, lifecycle, services
from review.models import Assignment, Comment, CommentKind, DraftRevision, EditLock

MAX_COMMENT = 5000
MAX_BODY = 200_000


def _announce(draft: Draft, what: str, **extra: Any) -> None:
    project_id, draft_id = draft.project_id, draft.pk
    transaction.on_commit(
        lambda: realtime.publish_project_event(
            project_id, {"kind": "draft", "id": draft_id, "action": what, **extra}
        )
    )


# --- Revisions and edits ------------------------------------------------------------------------


def _ensure_first_revision(draft: Draft) -> None:
    """Revision 1 is always the model's output, so any revision can be compared with it."""
    if not DraftRevision.objects.filter(draft=draft).exists():
        DraftRevision.objects.create(
            draft=draft, number=1, title=draft.title, body=draft.body, note="Model output"
        )


def text_revision(draft: Draft) -> int:
    """The number of the draft's current text (1: the model's output, untouched). Unlike the
    row's ``version``, which every move of the lifecycle bumps (the checks starting and
    finishing included), it changes only when someone saves a text."""
    return DraftRevision.objects.filter(draft=draft).count() or 1


def draft_edit(
    *,
    draft: Draft,
    user: AbstractBaseUser,
    body: str,
    title: str | None = None,
    expected_version: int,
    note: str = "",
    base_revision: int | None = None,
) -> Draft:
    """Save an editor's text as a new revision and check it again.

    The body is sanitised (a small safe subset of HTML). Refused with Conflict when the draft
    changed since ``expected_version`` (the caller shows what changed), with InvalidTransition
    when the draft is not in an editable state. Side effects: the draft row, a revision, an
    audit event, then the checks start again (the draft moves to ``checking``).

    ``base_revision``: the :func:`text_revision` the editor started from. When the version moved
    on but the text did not (the checks ran, or the draft was held or passed, while the editor
    was typing), nothing of anyone's would be overwritten: the edit is saved over the current
    version instead of being refused, and the audit event says which version it was opened at.
    """
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    clean = sanitize(body)
    if len(clean) > MAX_BODY:
        raise ValidationError({"body": f"At most {MAX_BODY} characters."})
    if not html_to_text(clean).strip():
        raise ValidationError({"body": "The text cannot be empty."})
    new_title = (title if title is not None else draft.title).strip()[:300]
    with transaction.atomic():
        current = Draft.objects.select_for_update().get(pk=draft.pk)
        opened_at_version = None
        if (
            current.version != expected_version
            and base_revision is not None
            and base_revision == text_revision(current)
        ):
            # Only the lifecycle moved (checks, a hold): the text is the one the editor edited.
            opened_at_version, expected_version = expected_version, current.version
        if current.version != expected_version:
            raise Conflict(
                f"{_changed_by(current)} changed this draft after you opened it "
                f"(version {expected_version} → {current.version}). Your text was not saved; "
                "compare it with the current one below and apply your changes again.",
                current=draft_snapshot(current, theirs=clean),
            )
        if current.status not in lifecycle.EDITABLE:
            raise InvalidTransition(
                f"A draft that is {lifecycle.status_label(current.status).lower()} "
                "cannot be edited."
            )
        if clean == current.body and new_title == current.title:
            return current
        _ensure_first_revision(current)
        updated = Draft.objects.filter(pk=current.pk, version=expected_version).update(
            body=clean, title=new_title, version=F("version") + 1, updated_at=timezone.now()
        )
        if updated != 1:
            # Describe the draft as the winner left it (not the row read above), with the
            # difference from the text that was refused.
            latest = Draft.objects.get(pk=current.pk)
            raise Conflict(
                "Someone else saved at the same moment.",
                current=draft_snapshot(latest, theirs=clean),
            )
        number = (
            DraftRevision.objects.filter(draft=current).aggregate(n=Max("number"))["n"] or 0
        ) + 1
        DraftRevision.objects.create(
            draft=current, number=number, title=new_title, body=clean, author=user, note=note[:300]
        )
        current.refresh_from_db()
        stats = diff.change_stats(
            html_to_text(DraftRevision.objects.get(draft=current, number=number - 1).body),
            html_to_text(clean),
        )
        data: dict[str, Any] = {"revision": number, **stats}
        if opened_at_version is not None:
            data["opened_at_version"] = opened_at_version
        lifecycle.draft_log(draft=current, user=user, action="edit", data=data)
        EditLock.objects.filter(draft=current, user=user).delete()
        _announce(current, "edit")
        moved = services.draft_checks_start(draft=current, user=user)
    return moved


def _changed_by(draft: Draft) -> str:
    from review.models import DraftEvent

    last = (
        DraftEvent.objects.filter(draft=draft, actor__isnull=False)
        .select_related("actor")
        .order_by("-created_at", "-pk")
        .first()
    )
    return last.actor.get_username() if last and last.actor else "Someone"


def draft_snapshot(draft: Draft, *, theirs: str | None = None) -> dict[str, Any]:
    """What a person whose save was refused needs: the draft now, and how it differs."""
    snapshot: dict[str, Any] = {
        "status": draft.status,
        "version": draft.version,
        "title": draft.title,
        "body": draft.body,
        "changed_by": _changed_by(draft),
    }
    if theirs is not None:
        snapshot["diff"] = [
            {"op": op, "text": text}
            for op, text in diff.word_diff(html_to_text(theirs), html_to_text(draft.body))
        ]
    return snapshot


# --- Comments -----------------------------------------------------------------------------------


def comment_add(
    *,
    draft: Draft,
    user: AbstractBaseUser,
    body: str,
    kind: str = CommentKind.COMMENT,
    parent: Comment | None = None,
) -> Comment:
    """Reviewers, editors and admins comment and recommend; viewers read."""
    require_role(user=user, project=draft.project, minimum=Role.REVIEWER)
    body = (body or "").strip()
    if not body:
        raise ValidationError({"body": "Write a comment."})
    if len(body) > MAX_COMMENT:
        raise ValidationError({"body": f"At most {MAX_COMMENT} characters."})
    if kind not in CommentKind.values:
        raise ValidationError({"kind": f"Unknown kind {kind!r}."})
    if parent is not None and parent.draft_id != draft.pk:
        raise ValidationError({"parent": "That comment belongs to another draft."})
    with transaction.atomic():
        comment = Comment.objects.create(
            draft=draft, author=user, body=body, kind=kind, parent=parent
        )
        lifecycle.draft_log(
            draft=draft,
            user=user,
            action="recommend" if kind != CommentKind.COMMENT else "comment",
            data={"comment": comment.pk, "kind": kind},
        )
        _announce(draft, "comment")
    return comment


# --- Assignment -----------------------------------------------------------------------------------


def draft_assign(
    *,
    draft: Draft,
    user: AbstractBaseUser,
    assignee: AbstractBaseUser | None,
    due_at: datetime | None = None,
) -> Assignment | None:
    """Give the draft to a member (reviewer or above) with an optional due date; None unassigns."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    with transaction.atomic():
        if assignee is None:
            Assignment.objects.filter(draft=draft).delete()
            lifecycle.draft_log(draft=draft, user=user, action="unassign")
            _announce(draft, "assign")
            return None
        role = membership_role(user=assignee, project=draft.project)
        if not role_at_least(role, Role.REVIEWER):
            raise ValidationError(
                {
                    "assignee": f"{assignee.get_username()} is not a reviewer, editor or admin of "
                    "this project."
                }
            )
        assignment, _ = Assignment.objects.update_or_create(
            draft=draft, defaults={"assignee": assignee, "due_at": due_at, "assigned_by": user}
        )
        lifecycle.draft_log(
            draft=draft,
            user=user,
            action="assign",
            data={
                "assignee": assignee.get_username(),
                "due_at": due_at.isoformat() if due_at else None,
            },
        )
        _announce(draft, "assign")
    return assignment


def assignable_members(*, draft: Draft) -> list[AbstractBaseUser]:
    User = get_user_model()
    ids = Membership.objects.filter(
        project_id=draft.project_id, role__in=[Role.ADMIN, Role.EDITOR, Role.REVIEWER]
    ).values_list("user_id", flat=True)
    return list(User.objects.filter(pk__in=ids).order_by("username"))


# --- Soft edit locks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LockState:
    holder: str | None
    expires_at: datetime | None
    mine: bool

    @property
    def held_by_other(self) -> bool:
        return self.holder is not None and not self.mine


def _lock_ttl() -> timedelta:
    return timedelta(seconds=settings.EDIT_LOCK_SECONDS)


def lock_state(*, draft: Draft, user: AbstractBaseUser) -> LockState:
    lock = (
        EditLock.objects.filter(draft=draft, expires_at__gt=timezone.now())
        .select_related("user")
        .first()
    )
    if lock is None:
        return LockState(None, None, False)
    return LockState(lock.user.get_username(), lock.expires_at, lock.user_id == user.pk)


def lock_acquire(*, draft: Draft, user: AbstractBaseUser) -> LockState:
    """Take (or renew) the soft lock for editing. If someone else holds a live lock the caller
    gets it back unchanged: the lock is advisory (optimistic versions guard the data), so the
    page warns "being edited by ..." instead of refusing."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    now = timezone.now()
    with transaction.atomic():
        lock = EditLock.objects.select_for_update().filter(draft=draft).first()
        if lock is None:
            # No row to lock yet: two editors can both get here. The unique draft column
            # decides; the loser must not overwrite the winner's lock (update_or_create would),
            # it sees the winner as the holder.
            try:
                with transaction.atomic():
                    EditLock.objects.create(
                        draft=draft, user=user, acquired_at=now, expires_at=now + _lock_ttl()
                    )
            except IntegrityError:
                return lock_state(draft=draft, user=user)
            newly = True
        elif lock.user_id != user.pk and lock.expires_at > now:
            return lock_state(draft=draft, user=user)
        else:
            newly = lock.user_id != user.pk or lock.expires_at <= now
            EditLock.objects.filter(pk=lock.pk).update(
                user=user, acquired_at=now, expires_at=now + _lock_ttl()
            )
        if newly:
            _announce(draft, "lock", holder=user.get_username())
    return lock_state(draft=draft, user=user)


def lock_release(*, draft: Draft, user: AbstractBaseUser) -> None:
    if EditLock.objects.filter(draft=draft, user=user).delete()[0]:
        _announce(draft, "unlock")


# --- Regeneration -------------------------------------------------------------------------------


def draft_regenerate(*, draft: Draft, user: AbstractBaseUser) -> GenerationJob:
    """A new job from the same template version, variables and settings, linked to the draft."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    job = draft.job
    settings_ = dict(job.settings)
    with transaction.atomic():
        new_job = generation.job_create(
            project=draft.project,
            user=user,
            model=job.model if job.model.enabled else None,
            template_version=draft.template_version,
            variables=draft.variables,
            seed_text=job.seed_text,
            settings=settings_,
            n_candidates=job.n_candidates,
            parent_draft=draft,
        )
        lifecycle.draft_log(draft=draft, user=user, action="regenerate", data={"job": new_job.pk})
    return new_job


# --- Bulk actions -------------------------------------------------------------------------------


@dataclass
class BulkOutcome:
    draft_id: int
    ok: bool
    message: str


def bulk_act(
    *,
    user: AbstractBaseUser,
    draft_ids: list[int],
    action: str,
    reason: str = "",
    assignee: AbstractBaseUser | None = None,
    due_at: datetime | None = None,
) -> list[BulkOutcome]:
    """Apply one action to many drafts; each row goes through the same service and checks as a
    single action, and one refused row does not stop the others."""
    drafts = {d.pk: d for d in Draft.objects.filter(pk__in=draft_ids).select_related("project")}
    outcomes: list[BulkOutcome] = []
    for draft_id in draft_ids:
        draft = drafts.get(draft_id)
        if draft is None or membership_role(user=user, project=draft.project) is None:
            outcomes.append(BulkOutcome(draft_id, False, "No such draft."))
            continue
        try:
            if action == "assign":
                if assignee is None:
                    # The bulk form's empty choice means "nobody chosen", not "unassign all".
                    raise ValidationError({"assignee": "Choose who to assign the draft to."})
                draft_assign(draft=draft, user=user, assignee=assignee, due_at=due_at)
            elif action in lifecycle.ACTIONS and lifecycle.ACTIONS[action].role is not None:
                lifecycle.draft_transition(draft=draft, action=action, user=user, reason=reason)
            else:
                raise InvalidTransition(f"{action!r} cannot be applied in bulk.")
        except DomainError as exc:
            outcomes.append(BulkOutcome(draft_id, False, exc.message))
        except ValidationError as exc:
            outcomes.append(BulkOutcome(draft_id, False, " ".join(exc.messages)))
        else:
            outcomes.append(BulkOutcome(draft_id, True, "Done."))
    return outcomes
