"""Pages of the generation app: start a job, watch it stream, read a draft, edit templates."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from contentstudio.errors import DomainError
from contentstudio.field_labels import labelled_errors
from contentstudio.models import Role, role_at_least
from contentstudio.selectors import project_get
from generation import selectors, services
from generation.diversity import candidate_diversity
from generation.forms import (
    generation_context,
    generation_labels,
    generation_language_warning,
    parse_generation_post,
)
from generation.models import PromptTemplate

# The template form's labels (a variable's error is "Variables, item 2").
TEMPLATE_LABELS = {
    "name": "Name",
    "content_type": "Content type",
    "system_prompt": "System prompt",
    "body": "Prompt",
    "variables": "Variables",
    "note": "What changed",
    "background": "Archive background",
    "topup": "Top-up",
}


@login_required
def generate(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.EDITOR)
    errors: dict[str, list[str]] = {}
    language_warning = None
    if request.method == "POST":
        kwargs, errors = parse_generation_post(project=project, data=request.POST)
        language_warning = None if errors else generation_language_warning(kwargs)
        # A model that does not write the template's or brief's language is a warning, not an
        # error: the form comes back once with it, and "Generate anyway" (which posts the
        # warning's confirmation) goes on (docs/generation.md).
        confirmed = language_warning is None or (
            request.POST.get("language_confirmed") == language_warning["confirm"]
        )
        if not errors and confirmed:
            try:
                job = services.job_create(project=project, user=request.user, **kwargs)
            except ValidationError as exc:
                errors = exc.message_dict
            else:
                return redirect("job_detail", slug=project.slug, job_id=job.pk)
    context = {
        "project": project,
        "role": role,
        "errors": errors,
        "error_list": labelled_errors(
            errors, generation_labels(project=project, data=request.POST)
        ),
        "posted": request.method == "POST",
        "language_warning": language_warning if request.method == "POST" else None,
        # Given back to the page's script (json_script) to refill the fields after an error.
        "posted_values": {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"},
        **generation_context(project=project),
    }
    # ?model=<id> preselects a model this project may use (the fine-tuning page links here).
    wanted = request.GET.get("model", "")
    if wanted.isdigit():
        chosen = context["models"].filter(pk=int(wanted)).first()
        if chosen is not None:
            context["default_model"] = chosen
    return render(request, "generation/generate.html", context, status=400 if errors else 200)


@login_required
def job_detail(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    job = selectors.job_for_user(user=request.user, job_id=job_id)
    if job is None or job.project_id != project.pk:
        raise Http404("No such job.")
    snapshot = selectors.job_snapshot(job_id=job.pk)
    # Best first once the drafts are scored; the page script keeps this order.
    ordered = selectors.best_first(snapshot["candidates"])
    return render(
        request,
        "generation/job_detail.html",
        {
            "project": project,
            "role": role,
            "job": job,
            "snapshot": snapshot,
            "ordered": ordered,
            "diversity": candidate_diversity(
                [(c["index"], c["text"]) for c in snapshot["candidates"]]
            ),
            "can_cancel": role_at_least(role, Role.EDITOR),
        },
    )


@login_required
@require_POST
def job_cancel(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = project_get(user=request.user, slug=slug)
    job = selectors.job_for_user(user=request.user, job_id=job_id)
    if job is None or job.project_id != project.pk:
        raise Http404("No such job.")
    try:
        services.job_cancel(job=job, user=request.user)
        messages.info(request, "Cancel requested; finished candidates are kept.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("job_detail", slug=project.slug, job_id=job.pk)


@login_required
def template_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    templates = PromptTemplate.objects.filter(project=project).prefetch_related("versions")
    return render(
        request,
        "generation/template_list.html",
        {
            "project": project,
            "role": role,
            "templates": templates,
            "is_admin": role_at_least(role, Role.ADMIN),
        },
    )


def _variables_from_post(raw: str) -> list:
    """Variables as typed in the form: one per line, "name: Label" with an optional "*"
    (optional) or "+" (multi-line) suffix on the name."""
    variables = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        name, _, label = line.partition(":")
        name = name.strip()
        required, multiline = True, False
        while name and name[-1] in "*+":
            required = required and name[-1] != "*"
            multiline = multiline or name[-1] == "+"
            name = name[:-1]
        variables.append(
            {
                "name": name,
                "label": label.strip() or None,
                "required": required,
                "multiline": multiline,
            }
        )
    return variables


def _variables_to_text(variables: list) -> str:
    lines = []
    for v in variables:
        suffix = ("" if v.get("required", True) else "*") + ("+" if v.get("multiline") else "")
        lines.append(f"{v['name']}{suffix}: {v.get('label') or ''}".rstrip(": "))
    return "\n".join(lines)


@login_required
def template_edit(request: HttpRequest, slug: str, template_id: int | None = None) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
    template = (
        get_object_or_404(PromptTemplate, pk=template_id, project=project) if template_id else None
    )
    version = template.current_version if template else None
    errors: dict[str, list[str]] = {}
    values = {
        "name": template.name if template else "",
        "content_type": template.content_type if template else project.content_type,
        "system_prompt": version.system_prompt if version else "",
        "body": version.body if version else "",
        "variables": _variables_to_text(version.variables) if version else "",
        "background": str(version.background) if version else "0",
        "topup": str(version.topup) if version else "0",
        "note": "",
    }
    if request.method == "POST":
        values.update({k: request.POST.get(k, "") for k in values})
        variables = _variables_from_post(values["variables"])
        raw = values["background"].strip() or "0"
        background: Any = int(raw) if raw.isdigit() else raw
        raw_topup = values["topup"].strip() or "0"
        topup: Any = int(raw_topup) if raw_topup.isdigit() else raw_topup
        try:
            if template is None:
                template = services.template_create(
                    project=project,
                    user=request.user,
                    name=values["name"],
                    content_type=values["content_type"] or None,
                    system_prompt=values["system_prompt"],
                    body=values["body"],
                    variables=variables,
                    background=background,
                    topup=topup,
                )
                messages.success(request, f"Template {template.name} created.")
            else:
                new = services.template_update(
                    template=template,
                    user=request.user,
                    system_prompt=values["system_prompt"],
                    body=values["body"],
                    variables=variables,
                    note=values["note"],
                    background=background,
                    topup=topup,
                )
                messages.success(request, f"Saved as version {new.number}.")
            return redirect("template_list", slug=project.slug)
        except ValidationError as exc:
            errors = exc.message_dict
    return render(
        request,
        "generation/template_edit.html",
        {
            "project": project,
            "role": role,
            "template": template,
            "version": version,
            "values": values,
            "errors": errors,
            "error_list": labelled_errors(errors, TEMPLATE_LABELS),
        },
        status=400 if errors else 200,
    )
