"""Reads of the fine-tuning app, every one scoped to what the user may see."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, median
from typing import Any, TypedDict

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import membership_role
from generation.finetune import data as data_mod
from generation.finetune.models import EditPair, FineTuneRun
from generation.models import Draft, LanguageModel


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
    return LanguageModel.objects.filter(enabled=True).filter(
        Q(project__isnull=True) | Q(project=project)
    )


def tuned_models(*, project: Project) -> QuerySet[LanguageModel]:
    return LanguageModel.objects.filter(project=project, finetune_origin__isnull=False).order_by(
        "-pk"
    )


def project_pairs(*, project: Project) -> QuerySet[EditPair]:
    return EditPair.objects.filter(project=project).order_by("pk")


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
    (review's DraftEvent, read through the app registry) and the edit pairs."""
    drafts = list(
        Draft.objects.filter(project=project).values_list(
            "pk", "model_id", "model_name", "template_version__template__name"
        )
    )
    key_of: dict[int, tuple[int, str, str]] = {
        pk: (model_id, model_name, template or "(free prompt)")
        for pk, model_id, model_name, template in drafts
    }
    actions: dict[int, set[str]] = defaultdict(set)
    events = data_mod.draft_event_model().objects.filter(
        draft__project=project, action__in=["approve", "reject", "hold", "pass"]
    )
    for draft_id, action in events.values_list("draft_id", "action"):
        actions[draft_id].add(action)
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
        approved = sum(1 for pk in members if "approve" in actions[pk])
        rejected = sum(1 for pk in members if "reject" in actions[pk])
        held = sum(1 for pk in members if "hold" in actions[pk])
        checked = sum(1 for pk in members if actions[pk] & {"hold", "pass"})
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
