"""Pages of the fine-tuning app: runs (start, estimate, watch live, cancel), base against tuned
side by side, the acceptance dashboard, and the edit pairs as JSON Lines.

Runs, the dashboard and the export are for project admins; the side-by-side page for editors
(it starts generation jobs). Non-members get 404, lower roles 403 (via project_get).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from contentstudio.errors import DomainError
from contentstudio.field_labels import labelled_errors
from contentstudio.models import Project, Role
from contentstudio.selectors import project_get
from finetune import data as data_mod
from finetune import rules, selectors, services
from finetune.models import FineTuneRun
from finetune.training.config import DEMO_SETTINGS
from finetune.training.loop import SPEED_SKIP_STEPS
from generation import services as gen_services
from generation.models import Device, GenerationJob, LanguageModel

SETTING_HELP = {
    "learning_rate": "AdamW step size; 5e-5 for full tuning, about 1e-3 with LoRA.",
    "weight_decay": "Decoupled AdamW decay on weight matrices (not biases or norms).",
    "grad_accumulation": "Micro-batches per optimiser step (effective batch = batch x this).",
    "eval_every": "Validation loss and perplexity every N optimiser steps (0 = every epoch).",
    "patience": "Stop after this many evaluations without a better validation loss.",
}


def _form_settings(data: QueryDict) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name, rule in rules.SETTING_RULES.items():
        if rule.kind is bool:
            settings[name] = data.get(name) in {"on", "1", "true"}
        elif data.get(name, "").strip() != "":
            settings[name] = data.get(name).strip()
    return settings


def _form_request(project: Project, data: QueryDict) -> dict[str, Any]:
    """The POSTed run form as run_create arguments (the service validates every field)."""
    model_id = data.get("base_model", "")
    base_model = (
        selectors.base_model_choices(project=project)
        .filter(pk=int(model_id) if model_id.isdigit() else -1)
        .first()
    )
    return {
        "base_model": base_model,
        "device": data.get("device", Device.AUTO),
        "data": {
            "archive": data.get("data_archive") == "on",
            "drafts": data.get("data_drafts") == "on",
            "pairs": data.get("data_pairs") == "on",
            "template_id": data.get("template_id") or None,
            "date_from": data.get("date_from", ""),
            "date_to": data.get("date_to", ""),
        },
        "settings": _form_settings(data),
    }


def _setting_fields(values: dict[str, Any], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    fields = []
    for name, rule in rules.SETTING_RULES.items():
        fields.append(
            {
                "name": name,
                "label": rule.label,
                "value": values.get(name),
                "is_bool": rule.kind is bool,
                "step": "1" if rule.kind is int else "any",
                "help": SETTING_HELP.get(name, ""),
                "errors": errors.get(f"settings.{name}", []),
            }
        )
    return fields


@login_required
def runs(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = DEMO_SETTINGS.as_dict()
    posted: dict[str, Any] = {"data_archive": True, "base_model": None, "device": Device.AUTO}
    if request.method == "POST":
        kwargs = _form_request(project, request.POST)
        values.update(kwargs["settings"])
        posted = {
            "data_archive": kwargs["data"]["archive"],
            "data_drafts": kwargs["data"]["drafts"],
            "data_pairs": kwargs["data"]["pairs"],
            "template_id": request.POST.get("template_id", ""),
            "date_from": kwargs["data"]["date_from"],
            "date_to": kwargs["data"]["date_to"],
            "base_model": kwargs["base_model"].pk if kwargs["base_model"] else None,
            "device": kwargs["device"],
        }
        try:
            run = services.run_create(project=project, user=request.user, **kwargs)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            return redirect("finetune_run", slug=project.slug, run_id=run.pk)
    context = {
        "project": project,
        "role": role,
        "runs": selectors.run_rows(project=project),
        "models": selectors.base_model_choices(project=project),
        "default_model": gen_services.default_model(),
        "templates": project.templates.filter(archived=False),
        "devices": Device.choices,
        "fields": _setting_fields(values, errors),
        "posted": posted,
        "errors": errors,
        "error_list": labelled_errors(errors),
        "pairs_count": selectors.project_pairs(project=project).count(),
        "missed_pairs": selectors.missed_pairs(project=project),
    }
    return render(request, "finetune/runs.html", context, status=400 if errors else 200)


@login_required
@require_POST
def estimate(request: HttpRequest, slug: str) -> JsonResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    try:
        result = services.run_estimate(
            project=project, user=request.user, **_form_request(project, request.POST)
        )
    except ValidationError as exc:
        return JsonResponse({"errors": exc.message_dict}, status=400)
    return JsonResponse({"estimate": result})


def _run_for_page(request: HttpRequest, slug: str, run_id: int) -> tuple[Project, str, FineTuneRun]:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    run = FineTuneRun.objects.filter(pk=run_id, project=project).first()
    if run is None:
        raise Http404("No such run.")
    return project, role, run


@login_required
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    # Only reads: a dead worker's run is failed by the periodic sweep, never by a page view.
    project, role, run = _run_for_page(request, slug, run_id)
    run = selectors.run_get(run_id=run.pk)
    return render(
        request,
        "finetune/run_detail.html",
        {
            "project": project,
            "role": role,
            "run": run,
            "state": selectors.run_state(run, history=True),
            "settings_rows": [
                (rules.SETTING_RULES[k].label, v)
                for k, v in run.settings.items()
                if k in rules.SETTING_RULES
            ],
            "provenance": selectors.run_provenance(run) if run.result_model_id else None,
            "speed_skip_steps": SPEED_SKIP_STEPS,
        },
    )


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, _, run = _run_for_page(request, slug, run_id)
    try:
        services.run_cancel(run=run, user=request.user)
    except DomainError as exc:
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"error": exc.message}, status=exc.status_code)
        raise
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"ok": True})
    return redirect("finetune_run", slug=project.slug, run_id=run.pk)


@login_required
def compare(request: HttpRequest, slug: str) -> HttpResponse:
    """The same prompt, the same seed, base and tuned model, side by side (two real jobs)."""
    project, role = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    tuned = list(selectors.tuned_models(project=project).select_related("finetune_origin"))
    errors: dict[str, list[str]] = {}
    jobs: list[GenerationJob] = []
    chosen: LanguageModel | None = None
    prompt = ""
    if request.method == "POST":
        prompt = request.POST.get("prompt", "")
        model_id = request.POST.get("model", "")
        chosen = next((m for m in tuned if str(m.pk) == model_id), None)
        if chosen is None:
            errors["model"] = ["Choose a tuned model of this project."]
        else:
            base = chosen.finetune_origin.base_model
            seed = secrets.randbelow(2**31)
            try:
                jobs = [
                    gen_services.job_create(
                        project=project,
                        user=request.user,
                        model=model,
                        seed_text=prompt,
                        n_candidates=1,
                        base_seed=seed,
                    )
                    for model in (base, chosen)
                ]
            except ValidationError as exc:
                errors = exc.message_dict
            else:
                return redirect(f"{request.path}?base={jobs[0].pk}&tuned={jobs[1].pk}")
    else:
        ids = [request.GET.get("base", ""), request.GET.get("tuned", "")]
        if all(i.isdigit() for i in ids):
            found = {j.pk: j for j in GenerationJob.objects.filter(project=project, pk__in=ids)}
            jobs = [found[int(i)] for i in ids if int(i) in found]
            if len(jobs) != 2:
                raise Http404("No such jobs.")
            prompt = jobs[0].seed_text
            chosen = jobs[1].model
        elif request.GET.get("model", "").isdigit():
            chosen = next((m for m in tuned if m.pk == int(request.GET["model"])), None)
    return render(
        request,
        "finetune/compare.html",
        {
            "project": project,
            "role": role,
            "tuned": tuned,
            "chosen": chosen,
            "prompt": prompt,
            "jobs": jobs,
            "errors": errors,
            "error_list": labelled_errors(errors),
        },
        status=400 if errors else 200,
    )


@login_required
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    rows = selectors.acceptance(project=project)
    return render(
        request,
        "finetune/dashboard.html",
        {
            "project": project,
            "role": role,
            "rows": rows,
            "runs": selectors.run_rows(project=project),
            "pairs_count": selectors.project_pairs(project=project).count(),
            "missed_pairs": selectors.missed_pairs(project=project),
        },
    )


@login_required
def pairs_export(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    # Built whole (not streamed): a sync iterator doing ORM reads would be consumed in the
    # ASGI event loop; a project's pairs are megabytes at most.
    body = "".join(
        json.dumps(record, ensure_ascii=False) + "\n"
        for record in data_mod.pair_records(selectors.project_pairs(project=project))
    )
    response = HttpResponse(body, content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-edit-pairs.jsonl"'
    # Approvals whose pair is missing from this file (the pages say why).
    missed = selectors.missed_pairs(project=project)
    response["X-Missed-Pairs"] = str(missed["count"] if missed else 0)
    return response
