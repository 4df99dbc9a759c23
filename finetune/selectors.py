"""Reads of the fine-tuning app, every one scoped to what the user may see."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from statistics import mean, median
from typing import Any, TypedDict

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import membership_role
from finetune.models import EditPair, FineTuneRun, MissedPair
from generation.models import Draft, LanguageModel
from generation.selectors import models_listed
from review.models import DraftEvent


def run_get(*, run_id: int) -> FineTuneRun:
    return FineTuneRun.objects.select_related("project", "base_model", "result_model").get(
        pk=run_id
    )


def run_for_admin(*, user: AbstractBaseUser | AnonymousUser, run_id: int) -> FineTuneRun | None:
    """The run if ``user`` is an admin of its project; None otherwise (never tell which)."""
    run = FineTuneRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None:
        return None
    if not role_at_least(membership_role(user=user, project=run.project), Role.ADMIN):
        return None
    return run


def project_runs(*, project: Project) -> QuerySet[FineTuneRun]:
    return FineTuneRun.objects.filter(project=project).select_related(
        "base_model", "result_model", "created_by"
    )


def base_model_choices(*, project: Project) -> QuerySet[LanguageModel]:
    """Models a run may start from: shared ones and this project's tuned ones (tuning again)."""
    return models_listed(projects=[project], enabled_only=True)


def tuned_models(*, project: Project) -> QuerySet[LanguageModel]:
    return LanguageModel.objects.filter(project=project, finetune_origin__isnull=False).order_by(
        "-pk"
    )


def project_pairs(*, project: Project) -> QuerySet[EditPair]:
    return EditPair.objects.filter(project=project).order_by("pk")


class MissedPairs(TypedDict):
    count: int  # approvals of this project whose pair could not be kept
    last_reason: str
    last_failed_at: datetime


def missed_pairs(*, project: Project) -> MissedPairs | None:
    """How many approvals could not be kept as training pairs, and the last reason; None when
    every approval was kept."""
    missed = MissedPair.objects.filter(project=project)
    last = missed.order_by("-failed_at", "-pk").first()
    if last is None:
        return None
    return MissedPairs(count=missed.count(), last_reason=last.reason, last_failed_at=last.failed_at)


class AcceptanceRow(TypedDict):
    model_id: int
    model: str
    template: str
    drafts: int
    checked: int
    held: int
    approved: int
    rejected: int
    approval_rate: float | None  # approved / (approved + rejected)
    held_rate: float | None  # held / checked
    edit_ratio: float | None  # mean word edit distance / words, over approved pairs
    edit_distance: float | None  # mean word edit distance
    median_seconds_to_approval: float | None


def acceptance(*, project: Project) -> list[AcceptanceRow]:
    """Acceptance metrics per model version and template, from the drafts, their audit trail
    (review's DraftEvent) and the edit pairs."""
    drafts = list(
        Draft.objects.filter(project=project).values_list(
            "pk", "model_id", "model_name", "template_version__template__name"
        )
    )
    key_of: dict[int, tuple[int, str, str]] = {
        pk: (model_id, model_name, template or "(free prompt)")
        for pk, model_id, model_name, template in drafts
    }
    # Each draft's final word of the checks (hold or pass) and of the editors (approve, reject,
    # or none after a reopen or an undone approval), in the order they happened: a draft held
    # while the archive was still indexing and passed by the re-run is not a hold, and an
    # approval taken back is not an approval.
    routed: dict[int, str] = {}
    decided: dict[int, str] = {}
    events = DraftEvent.objects.filter(
        draft__project=project,
        action__in=["approve", "reject", "hold", "pass", "reopen", "undo_approve"],
    ).order_by("created_at", "pk")
    for draft_id, action in events.values_list("draft_id", "action"):
        if action in ("hold", "pass"):
            routed[draft_id] = action
        else:
            decided[draft_id] = action
    pairs: dict[tuple[int, str, str], list[tuple[int, float, float]]] = defaultdict(list)
    for draft_id, distance, ratio, seconds in EditPair.objects.filter(project=project).values_list(
        "draft_id", "edit_distance", "edit_ratio", "seconds_to_approval"
    ):
        if draft_id in key_of:
            pairs[key_of[draft_id]].append((distance, ratio, seconds))
    groups: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    for pk, key in key_of.items():
        groups[key].append(pk)
    rows: list[AcceptanceRow] = []
    for key in sorted(groups, key=lambda k: (k[1], k[2])):
        model_id, model_name, template = key
        members = groups[key]
        approved = sum(1 for pk in members if decided.get(pk) == "approve")
        rejected = sum(1 for pk in members if decided.get(pk) == "reject")
        held = sum(1 for pk in members if routed.get(pk) == "hold")
        checked = sum(1 for pk in members if pk in routed)
        kept = pairs.get(key, [])
        rows.append(
            AcceptanceRow(
                model_id=model_id,
                model=model_name,
                template=template,
                drafts=len(members),
                checked=checked,
                held=held,
                approved=approved,
                rejected=rejected,
                approval_rate=(
                    round(approved / (approved + rejected), 4) if approved + rejected else None
                ),
                held_rate=round(held / checked, 4) if checked else None,
                edit_ratio=round(mean(r for _, r, _ in kept), 4) if kept else None,
                edit_distance=round(mean(d for d, _, _ in kept), 2) if kept else None,
                median_seconds_to_approval=(
                    round(median(s for _, _, s in kept), 1) if kept else None
                ),
            )
        )
    return rows


def run_rows(*, project: Project) -> list[dict[str, Any]]:
    return [
        {
            "run": run,
            "ratio": run.ppl_ratio,
        }
        for run in project_runs(project=project)[:50]
    ]


def registration_note(run: FineTuneRun) -> str:
    """Why a run that trained registered no model, with the numbers ("" when it did or has not
    ended)."""
    if not run.not_registered:
        return ""
    tuned = [p for p in run.history or [] if p.get("step", 0) > 0 and "val_ppl" in p]
    base = f"validation perplexity {run.base_val_ppl:.3f} for the base"
    if not tuned:
        return f"Not registered: no checkpoint was evaluated before the run stopped ({base})."
    best = min(tuned, key=lambda p: p["val_ppl"])
    return (
        f"Not registered: no checkpoint beat the base on the validation texts ({base}; the "
        f"best tuned checkpoint {best['val_ppl']:.3f} at step {best['step']})."
    )


def run_state(run: FineTuneRun, *, history: bool = False) -> dict[str, Any]:
    """The run as pages and the websocket show it (``history`` adds the whole curve)."""
    state: dict[str, Any] = {
        "id": run.pk,
        "status": run.status,
        "status_label": run.status_text,
        "registration_note": registration_note(run),
        "phase": run.phase,
        "step": run.step,
        "total_steps": run.total_steps,
        "epoch": run.epoch,
        "seconds_left": run.seconds_left,
        "tokens_per_second": run.tokens_per_second,
        "steady_tokens_per_second": run.steady_tokens_per_second,
        "base_test_ppl": run.base_test_ppl,
        "base_val_ppl": run.base_val_ppl,
        "test_ppl": run.test_ppl,
        "best_val_ppl": run.best_val_ppl,
        "best_step": run.best_step,
        "stopped_early": run.stopped_early,
        "cancel_requested": run.cancel_requested_at is not None,
        "error": run.error,
        "error_field": run.error_field,
        "result_model": (
            {"id": run.result_model_id, "name": run.result_model.name}
            if run.result_model_id and run.result_model
            else None
        ),
        "counts": run.counts,
        "estimate": run.estimate,
    }
    if history:
        state["history"] = run.history
    return state


def run_provenance(run: FineTuneRun) -> dict[str, Any]:
    """What a tuned model is: its base, the data it saw and the settings it was trained with."""
    return {
        "run": run.pk,
        "project": run.project.slug,
        "base_model": {
            "id": run.base_model_id,
            "name": run.base_model.name,
            "source_kind": run.base_model.source_kind,
            "source": run.base_model.source,
            "revision": run.base_model.revision,
        },
        "data": run.data,
        "counts": run.counts,
        "settings": run.settings,
        "test_perplexity": {"base": run.base_test_ppl, "tuned": run.test_ppl},
        "best_step": run.best_step,
    }
