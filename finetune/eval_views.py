"""The Evaluation pages (project admins): start a held-out evaluation with its estimate, watch
its progress live, read the results per variant (table and chart), cancel, export CSV / JSON.
Non-members get 404, lower roles 403 (via project_get)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from contentstudio.durations import duration_text
from contentstudio.field_labels import labelled_errors
from contentstudio.models import Project, Role
from contentstudio.selectors import project_get
from finetune import evaluation, selectors
from finetune.models import EvaluationRun

CHART_METRICS = [
    ("rouge_l", "ROUGE-L"),
    ("embedding_similarity", "Embedding similarity"),
    ("brief_coverage", "Brief coverage"),
]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return -1


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return -1.0


def _form(data: Any) -> dict[str, Any]:
    """The page's fields as ``evaluation_create`` arguments: every chosen model, each without
    and/or with grounding."""
    grounding = _int(data.get("grounding_passages"), 3)
    modes = [0] if data.get("without_grounding") else []
    if data.get("with_grounding"):
        modes.append(grounding if grounding > 0 else -1)
    variants = [
        {"model_id": _int(m, -1), "grounding": g} for m in data.getlist("model") if m for g in modes
    ]
    ids_text = (data.get("document_ids") or "").replace(",", " ").split()
    return {
        "variants": variants,
        "n_documents": _int(data.get("n_documents"), 5),
        "k": _int(data.get("k"), 2),
        "seed": max(0, _int(data.get("seed"), 0)),
        "max_new_tokens": _int(data.get("max_new_tokens"), 64),
        "temperature": _float(data.get("temperature"), 0.8),
        "document_ids": [_int(i, -1) for i in ids_text],
    }


def evaluations(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            run = evaluation.evaluation_create(
                project=project, user=request.user, **_form(request.POST)
            )
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            return redirect("finetune_evaluation", slug=project.slug, run_id=run.pk)
    context = {
        "project": project,
        "role": role,
        "runs": EvaluationRun.objects.filter(project=project)[:50],
        "models": selectors.base_model_choices(project=project),
        "archive_count": project.archive.count(),
        "posted": request.POST if request.method == "POST" else None,
        "errors": errors,
        "error_list": labelled_errors(errors),
    }
    return render(request, "finetune/evaluations.html", context, status=400 if errors else 200)


evaluations = login_required(evaluations)


def _run(request: HttpRequest, slug: str, run_id: int) -> tuple[Project, str, EvaluationRun]:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    run = EvaluationRun.objects.filter(pk=run_id, project=project).first()
    if run is None:
        raise Http404("No such evaluation.")
    return project, role, run


def _chart(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for an inline SVG: one group per metric, one bar per variant (0..1 scale)."""
    bar, gap, group_gap, height = 22, 4, 30, 160
    groups, x = [], 40
    for key, label in CHART_METRICS:
        bars = []
        for number, item in enumerate(summary):
            value = item.get(key)
            h = 0 if value is None else max(0.0, min(1.0, value)) * height
            bars.append(
                {
                    "x": x,
                    "y": 10 + height - h,
                    "h": h,
                    "value": "not measured" if value is None else f"{value:.3f}",
                    "variant": item["variant"],
                    "colour": number % 6,
                }
            )
            x += bar + gap
        groups.append({"label": label, "bars": bars, "mid": x - (bar + gap) * len(bars) / 2})
        x += group_gap
    return {
        "groups": groups,
        "width": x + 10,
        "height": height + 40,
        "bar": bar,
        "base": height + 10,
    }


def _state(run: EvaluationRun) -> dict[str, Any]:
    left = run.estimate.get("left") if run.status == "running" else None
    return {
        "status": run.status,
        "done": run.done,
        "total": run.total,
        "final": run.is_final,
        "left": duration_text(left) if left is not None else "",
        "estimate": _estimate_text(run),
    }


def _estimate_text(run: EvaluationRun) -> str:
    est = run.estimate
    scored = sum((est.get("scored_tokens") or {}).values())
    if est.get("seconds") is None:
        return (
            f"{est.get('tokens')} tokens generated and {scored} scored at most; speed "
            f"{est.get('source')}, scoring {est.get('scoring_source', 'not measured yet')}: the "
            "worker times what is missing before the first document"
        )
    if "scoring_seconds" not in est:  # a run estimated before scoring was counted
        return (
            f"{duration_text(est['seconds'])} ({est['tokens']} tokens at most, "
            f"{est['tokens_per_second']:.1f} tokens/s: {est['source']})"
        )
    return (
        f"{duration_text(est['seconds'])}: generation {duration_text(est['generation_seconds'])}"
        f" ({est['tokens']} tokens at most, {est['tokens_per_second']:.1f} tokens/s: "
        f"{est['source']}), scoring {duration_text(est['scoring_seconds'])} ({scored} tokens "
        f"at most: {est.get('scoring_source')})"
    )


@login_required
def evaluation_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, role, run = _run(request, slug, run_id)
    summary = evaluation.summary(run)
    return render(
        request,
        "finetune/evaluation_detail.html",
        {
            "project": project,
            "role": role,
            "run": run,
            "state": _state(run),
            "summary": summary,
            "chart": _chart(summary),
            "reference_tokens": evaluation.REFERENCE_TOKENS,
            "perplexity_notes": run.estimate.get("perplexity") or {},
        },
    )


@login_required
def evaluation_status(request: HttpRequest, slug: str, run_id: int) -> JsonResponse:
    _, _, run = _run(request, slug, run_id)
    return JsonResponse(_state(run))


@login_required
@require_POST
def evaluation_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, _, run = _run(request, slug, run_id)
    evaluation.evaluation_cancel(run=run)
    return redirect("finetune_evaluation", slug=project.slug, run_id=run.pk)


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would read as a formula is quoted (generated text is untrusted)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@login_required
def evaluation_export(request: HttpRequest, slug: str, run_id: int, fmt: str) -> HttpResponse:
    _, _, run = _run(request, slug, run_id)
    name = f"evaluation-{run.pk}.{fmt}"
    if fmt == "json":
        body = {
            "id": run.pk,
            "status": run.status,
            "variants": run.variants,
            "settings": run.settings,
            "k": run.k,
            "seed": run.seed,
            "document_ids": run.document_ids,
            "training_ids": run.training_ids,
            "summary": evaluation.summary(run),
            "rows": run.rows,
        }
        response = HttpResponse(json.dumps(body, indent=1), content_type="application/json")
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=evaluation.ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in run.rows:
            cells = {k: _cell(v) for k, v in row.items()}
            writer.writerow({**cells, "background_ids": " ".join(map(str, row["background_ids"]))})
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
