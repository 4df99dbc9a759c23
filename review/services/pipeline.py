"""The checks pipeline: start a draft's checks, run every check, store results, route it.

A new or edited draft moves to ``checking`` and a task on queue ``review`` runs every check
(toxicity, ethics rules, lexical and semantic plagiarism), stores one CheckResult per check,
tells watchers after each, then routes the draft with the project's policy: ``awaiting_review``,
or ``held`` with the reasons. A check that cannot run is stored as ``not_run`` with the reason
and holds the draft: nothing passes unchecked. The draft's language is detected when it is
written or edited (``draft_checks_start``) and again for the version checked; a check that
cannot read that language is not run and says so (``languages.unreadable_outcome``), and the
project's policy holds the draft for it or, when the project chose so, sends it to the queue
with the reason shown.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from contentstudio import realtime
from contentstudio.errors import Conflict, InvalidTransition
from contentstudio.heartbeat import Heartbeat
from contentstudio.html import html_to_text
from contentstudio.models import Role
from contentstudio.selectors import require_role
from generation.models import Draft
from generation.services.quality import job_brief, quality_with_relevance
from review import holds, lifecycle
from review.checks.language import detect_language
from review.lifecycle import DraftStatus
from review.models import (
    CheckKind,
    CheckResult,
    CheckRun,
    CheckStatus,
    CheckSummary,
    ImportRun,
    ImportStatus,
)
from review.services import adapters, embedding, languages, source_checks
from review.services.policies import policy_get, policy_view

logger = logging.getLogger(__name__)


def draft_checks_start(*, draft: Draft, user: AbstractBaseUser | None = None) -> Draft:
    """Move the draft to ``checking`` and enqueue its checks on commit.

    ``user`` is the person whose edit or request triggers a re-check (recorded in the audit
    trail); the move itself is the pipeline's.
    """
    from review import tasks

    draft_language_detect(draft=draft)
    with transaction.atomic():
        moved = lifecycle.draft_transition(
            draft=draft,
            action="check",
            user=None,
            data={"requested_by": user.get_username() if user else None},
        )
        tasks.draft_check.delay_on_commit(moved.pk, moved.version)
    return moved


def draft_language_detect(*, draft: Draft, text: str | None = None) -> str:
    """Detect and store the language of the draft's current text (``text``: already extracted).
    Side effects: ``Draft.language`` (only that column; the version does not move)."""
    found = detect_language(html_to_text(draft.body) if text is None else text)
    if draft.language != found:
        Draft.objects.filter(pk=draft.pk).update(language=found)
        draft.language = found
    return found


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
    (CheckKind.LEXICAL, source_checks.run_lexical),
    (CheckKind.SEMANTIC, source_checks.run_semantic),
]


def _claim(*, draft_id: int, version: int, worker: str) -> CheckRun | None:
    """Take the claim on this draft version's checks, or None when another worker holds a live
    one (or they are done). A claim whose heartbeat stopped is taken over."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return CheckRun.objects.create(
                draft_id=draft_id,
                draft_version=version,
                worker=worker,
                claimed_at=now,
                heartbeat_at=now,
            )
    except IntegrityError:
        pass  # claimed before: by a live worker, a dead one, or done
    existing = CheckRun.objects.filter(draft_id=draft_id, draft_version=version).first()
    stale_before = now - timezone.timedelta(seconds=settings.CHECKS_STALE_AFTER)
    if existing is None or existing.finished_at or existing.heartbeat_at >= stale_before:
        return None
    # Conditional on the heartbeat we saw: of two workers taking over, one wins.
    taken = CheckRun.objects.filter(
        pk=existing.pk, finished_at__isnull=True, heartbeat_at=existing.heartbeat_at
    ).update(worker=worker, heartbeat_at=now, attempts=F("attempts") + 1)
    if not taken:
        return None
    logger.warning(
        "checks of draft %s v%s taken over from %s (silent since %s)",
        draft_id,
        version,
        existing.worker,
        existing.heartbeat_at,
    )
    return CheckRun.objects.get(pk=existing.pk)


def draft_checks_run(*, draft_id: int, version: int, worker: str = "inline") -> Draft | None:
    """Run every check on the draft as it was at ``version``, then route it.

    Exactly one worker runs a version's checks: it claims them first (``CheckRun``), keeps the
    claim alive from a timer thread, and releases it in the same transaction that routes the
    draft. Idempotent: a draft that moved on (edited again, routed by an earlier delivery) is
    left alone; results are stored per (draft, version, kind).
    """
    draft = (
        Draft.objects.select_related("project")
        .filter(pk=draft_id, status=DraftStatus.CHECKING, version=version)
        .first()
    )
    if draft is None:
        return None
    run = _claim(draft_id=draft_id, version=version, worker=worker)
    if run is None:
        return None

    def beat() -> bool:
        return bool(
            CheckRun.objects.filter(pk=run.pk, worker=worker, finished_at__isnull=True).update(
                heartbeat_at=timezone.now()
            )
        )

    with Heartbeat(beat, interval=settings.CHECKS_STALE_AFTER / 6, name=f"checks-{draft_id}"):
        return _run_checks(draft, version, claim=run)


def _run_one(
    kind: str,
    run: Any,
    draft: Draft,
    text: str,
    rules: Any,
    *,
    language: str,
    readable: dict[str, Any],
) -> dict[str, Any]:
    """One check; a check that cannot read the text's language, or an exception, is a result
    (not run, with the reason), never a pass."""
    started = time.perf_counter()
    try:
        outcome = languages.unreadable_outcome(kind, language, readable[kind]) or run(
            draft, text, rules
        )
    except Exception as exc:
        logger.exception("%s check failed on draft %s", kind, draft.pk)
        outcome = {
            "status": CheckStatus.NOT_RUN,
            "reason": f"{type(exc).__name__}: {exc}",
            "engine": kind,
        }
    outcome.setdefault("timings", {})
    outcome["timings"].setdefault("total_ms", round((time.perf_counter() - started) * 1000, 1))
    return outcome


def text_checks_run(*, draft: Draft, text: str) -> tuple[list[holds.CheckOutcome], list[str]]:
    """Every check, and the project's policy, on a text that is not a draft version of its
    own: a correction of the published ``draft``. Returns the outcomes and the reasons to hold
    it (none: it may go out). Stores nothing (the caller keeps the results with what it
    writes); runs the models, so never inside a transaction. The draft's own published text
    is not a source its correction is compared with (the adapters leave it out)."""
    rules = policy_get(project=draft.project)
    # The correction's own language (the draft keeps the one of its own text); a short one is
    # read with the text it corrects (a sentence alone is too little to tell a language by).
    sample = text if len(text.split()) >= 30 else f"{html_to_text(draft.body)}\n\n{text}"
    language, readable = detect_language(sample), languages.check_languages()
    outcomes: list[holds.CheckOutcome] = [
        {  # type: ignore[typeddict-item]
            "kind": kind,
            **_run_one(kind, run, draft, text, rules, language=language, readable=readable),
        }
        for kind, run in CHECKS
    ]
    return outcomes, holds.route(outcomes, policy_view(rules))


def _run_checks(draft: Draft, version: int, *, claim: CheckRun) -> Draft | None:
    text = html_to_text(draft.body)
    rules = policy_get(project=draft.project)
    language = draft_language_detect(draft=draft, text=text)
    readable = languages.check_languages()
    outcomes: list[holds.CheckOutcome] = []
    for kind, run in CHECKS:
        outcome = _run_one(kind, run, draft, text, rules, language=language, readable=readable)
        _store_result(
            draft=draft,
            version=version,
            kind=kind,
            fields={
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
    view = policy_view(rules)
    quality = _quality_relevance(draft, text)
    reasons = holds.route(outcomes, view) + holds.quality_reasons(quality, view)
    notes = [] if reasons else holds.notes(outcomes, view)
    try:
        with transaction.atomic():
            # Routing and releasing the claim commit together: a crash before this leaves a
            # claim that goes stale and a draft still "checking", which the sweep re-runs.
            moved = lifecycle.draft_transition(
                draft=draft,
                action="hold" if reasons else "pass",
                user=None,
                reason="; ".join(reasons or notes),
                expected_version=version,
                data={"reasons": reasons, **({"notes": notes} if notes else {})},
            )
            CheckRun.objects.filter(pk=claim.pk).update(finished_at=timezone.now())
            return moved
    except (Conflict, InvalidTransition):
        # Edited or re-checked meanwhile: the newer check run routes it.
        CheckRun.objects.filter(pk=claim.pk).update(finished_at=timezone.now())
        return None


def _quality_relevance(draft: Draft, text: str) -> dict[str, Any]:
    """The draft's quality signals with relevance measured by the sentence model (loaded by
    the semantic check), stored on the draft; the score follows. A draft written before the
    signals existed has none ({})."""
    if not draft.quality:
        return {}
    try:
        embedder = embedding.get_embedder()
        embed, reason = embedder.encode, ""
    except Exception as exc:  # no sentence model here: the signal says so, the others stand
        embed, reason = None, f"the sentence model is not available ({exc})"
    try:
        quality = quality_with_relevance(
            draft.quality, text=text, brief=job_brief(draft.job), embed=embed, reason=reason
        )
    except Exception:
        logger.exception("relevance failed on draft %s", draft.pk)
        return dict(draft.quality)
    Draft.objects.filter(pk=draft.pk).update(quality=quality)
    draft.quality = quality
    return quality


def _store_result(*, draft: Draft, version: int, kind: str, fields: dict[str, Any]) -> None:
    """One result per (draft, version, kind): a re-run after a takeover replaces it."""
    updated = CheckResult.objects.filter(draft=draft, draft_version=version, kind=kind).update(
        **fields
    )
    if updated:
        return
    try:
        with transaction.atomic():
            CheckResult.objects.create(draft=draft, draft_version=version, kind=kind, **fields)
    except IntegrityError:
        # Written meanwhile by the run we took over from (it was slow, not dead): ours wins.
        CheckResult.objects.filter(draft=draft, draft_version=version, kind=kind).update(**fields)


def _summarise(draft: Draft, version: int, outcomes: list[holds.CheckOutcome]) -> None:
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
            "semantic_share": (
                sem.get("source_draft_share", sem.get("paraphrased_share")) if sem else None
            ),
            "not_run": sum(1 for o in outcomes if o["status"] != CheckStatus.OK),
        },
    )


def checks_sweep() -> dict[str, int]:
    """The periodic sweep (every ``SWEEP_INTERVAL`` s, whatever worker runs it).

    - A draft still ``generated`` ``CHECKS_START_GRACE`` after it was written lost the
      on-commit start of its checks (its worker died right after the commit): start them. The
      draft row in that state is the durable order to check it.
    - A ``checking`` draft whose checks are not running (no claim long after it moved, or a
      claim whose heartbeat stopped) gets its task again; the claim makes a duplicate harmless
      and a stale claim is taken over.
    """
    from review import tasks

    now = timezone.now()
    started = requeued = 0
    grace = now - timezone.timedelta(seconds=settings.CHECKS_START_GRACE)
    for draft in Draft.objects.filter(status=DraftStatus.GENERATED, created_at__lt=grace):
        try:
            draft_checks_start(draft=draft)
            started += 1
        except (Conflict, InvalidTransition):
            pass  # started meanwhile by the on-commit path
    stale = now - timezone.timedelta(seconds=settings.CHECKS_STALE_AFTER)
    checking = Draft.objects.filter(status=DraftStatus.CHECKING, updated_at__lt=stale)
    for draft_id, version in checking.values_list("pk", "version"):
        run = CheckRun.objects.filter(draft_id=draft_id, draft_version=version).first()
        if run is not None and (run.finished_at or run.heartbeat_at >= stale):
            continue  # done (routing follows) or alive
        # One resend per stale period, not one per sweep, while no worker takes it.
        # (Cache backends count whole seconds; 0 would expire the key at once.)
        period = max(1, math.ceil(settings.CHECKS_STALE_AFTER))
        if cache.add(f"checks-resent:{draft_id}:{version}", 1, timeout=period):
            tasks.draft_check.delay(draft_id, version)
            requeued += 1
    return {"started": started, "requeued": requeued}


def resume_pending() -> None:
    """At worker start: re-enqueue checks, imports and embeddings that the database says are
    unfinished (messages do not outlive the in-memory broker). O(1) messages per draft."""
    from review import tasks

    for draft in Draft.objects.filter(status=DraftStatus.GENERATED):
        with contextlib.suppress(Conflict, InvalidTransition):
            draft_checks_start(draft=draft)
    for draft_id, version in Draft.objects.filter(status=DraftStatus.CHECKING).values_list(
        "pk", "version"
    ):
        tasks.draft_check.delay(draft_id, version)
    for run_id in ImportRun.objects.filter(status=ImportStatus.QUEUED).values_list("pk", flat=True):
        tasks.archive_import.delay(run_id)
    embedding.embed_resume_all()
