"""The checks pipeline: start a draft's checks, run every check, store results, route it.

A new or edited draft moves to ``checking`` and a task on queue ``review`` runs every check
(toxicity, ethics rules, lexical and semantic plagiarism), stores one CheckResult per check,
tells watchers after each, then routes the draft with the project's policy: ``awaiting_review``,
or ``held`` with the reasons. A check that cannot run is stored as ``not_run`` with the reason
and holds the draft: nothing passes unchecked.
"""

from __future__ import annotations

import logging
import time

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from contentstudio import realtime
from contentstudio.errors import Conflict, InvalidTransition
from contentstudio.html import html_to_text
from contentstudio.models import Role
from contentstudio.selectors import require_role
from generation.models import Draft
from review import lifecycle, policy
from review.lifecycle import DraftStatus
from review.models import (
    CheckKind,
    CheckResult,
    CheckStatus,
    CheckSummary,
    ImportRun,
    ImportStatus,
)
from review.services import adapters, embedding
from review.services.policies import policy_get, policy_view

logger = logging.getLogger(__name__)


def draft_checks_start(*, draft: Draft, user: AbstractBaseUser | None = None) -> Draft:
    """Move the draft to ``checking`` and enqueue its checks on commit.

    ``user`` is the person whose edit or request triggers a re-check (recorded in the audit
    trail); the move itself is the pipeline's.
    """
    from review import tasks

    with transaction.atomic():
        moved = lifecycle.draft_transition(
            draft=draft,
            action="check",
            user=None,
            data={"requested_by": user.get_username() if user else None},
        )
        tasks.draft_check.delay_on_commit(moved.pk, moved.version)
    return moved


def draft_checks_rerun(*, draft: Draft, user: AbstractBaseUser) -> Draft:
    """A person asks for the checks again (after changing the policy or the archive)."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    if draft.status not in lifecycle.ACTIONS["check"].moves:
        raise InvalidTransition(
            f"A draft that is {lifecycle.status_label(draft.status).lower()} is not checked again."
        )
    return draft_checks_start(draft=draft, user=user)


CHECKS = [
    (CheckKind.TOXICITY, adapters.run_toxicity),
    (CheckKind.ETHICS, adapters.run_ethics),
    (CheckKind.LEXICAL, adapters.run_lexical),
    (CheckKind.SEMANTIC, adapters.run_semantic),
]


def draft_checks_run(*, draft_id: int, version: int) -> Draft | None:
    """Run every check on the draft as it was at ``version``, then route it.

    Idempotent and safe against races: a draft that moved on (edited again, routed by an
    earlier delivery) is left alone; results are stored per (draft, version, kind).
    """
    draft = (
        Draft.objects.select_related("project")
        .filter(pk=draft_id, status=DraftStatus.CHECKING, version=version)
        .first()
    )
    if draft is None:
        return None
    text = html_to_text(draft.body)
    rules = policy_get(project=draft.project)
    outcomes: list[policy.CheckOutcome] = []
    for kind, run in CHECKS:
        started = time.perf_counter()
        try:
            outcome = run(draft, text, rules)
        except Exception as exc:
            logger.exception("%s check failed on draft %s", kind, draft_id)
            outcome = {
                "status": CheckStatus.NOT_RUN,
                "reason": f"{type(exc).__name__}: {exc}",
                "engine": kind,
            }
        outcome.setdefault("timings", {})
        outcome["timings"].setdefault("total_ms", round((time.perf_counter() - started) * 1000, 1))
        CheckResult.objects.update_or_create(
            draft=draft,
            draft_version=version,
            kind=kind,
            defaults={
                "status": outcome["status"],
                "reason": outcome.get("reason", ""),
                "engine": outcome.get("engine", kind),
                "engine_version": outcome.get("engine_version", ""),
                "scores": outcome.get("scores", {}),
                "spans": outcome.get("spans", []),
                "details": outcome.get("details", {}),
                "timings": outcome["timings"],
            },
        )
        outcomes.append({"kind": kind, **outcome})
        realtime.publish_project_event(
            draft.project_id,
            {
                "kind": "check",
                "draft": draft.pk,
                "check": kind,
                "status": outcome["status"],
                "scores": outcome.get("scores", {}),
            },
        )
    _summarise(draft, version, outcomes)
    reasons = policy.route(outcomes, policy_view(rules))
    try:
        return lifecycle.draft_transition(
            draft=draft,
            action="hold" if reasons else "pass",
            user=None,
            reason="; ".join(reasons),
            expected_version=version,
            data={"reasons": reasons},
        )
    except (Conflict, InvalidTransition):
        # Edited or re-checked meanwhile: the newer check run routes it.
        return None


def _summarise(draft: Draft, version: int, outcomes: list[policy.CheckOutcome]) -> None:
    by_kind = {o["kind"]: o for o in outcomes if o["status"] == CheckStatus.OK}
    tox = (by_kind.get(CheckKind.TOXICITY) or {}).get("scores") or {}
    worst = max(tox.items(), key=lambda item: item[1], default=(None, None))
    ethics_counts = (by_kind.get(CheckKind.ETHICS) or {}).get("scores") or {}
    lexical = (by_kind.get(CheckKind.LEXICAL) or {}).get("scores") or {}
    sem = (by_kind.get(CheckKind.SEMANTIC) or {}).get("scores") or {}
    CheckSummary.objects.update_or_create(
        draft=draft,
        defaults={
            "draft_version": version,
            "toxicity_max": worst[1],
            "toxicity_category": worst[0] or "",
            "ethics_hits": sum(
                int(v) for v in ethics_counts.values() if isinstance(v, int | float)
            ),
            "lexical_max": lexical.get("max_similarity") if lexical else None,
            "semantic_share": sem.get("paraphrased_share") if sem else None,
            "not_run": sum(1 for o in outcomes if o["status"] != CheckStatus.OK),
        },
    )


def resume_pending() -> None:
    """Re-enqueue checks, imports and embeddings that the database says are unfinished."""
    from review import tasks

    for draft_id, version in Draft.objects.filter(status=DraftStatus.CHECKING).values_list(
        "pk", "version"
    ):
        tasks.draft_check.delay(draft_id, version)
    for run_id in ImportRun.objects.filter(status=ImportStatus.QUEUED).values_list("pk", flat=True):
        tasks.archive_import.delay(run_id)
    embedding.embed_resume_all()
