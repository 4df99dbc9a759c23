"""The generation request form: parsed by hand because its variable fields depend on the
chosen template; every error comes back keyed like the API's ("settings.temperature",
"variables.headline") and is shown next to its field."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import QueryDict

from contentstudio.models import Project
from generation import selectors
from generation.models import LanguageModel, PromptTemplateVersion
from generation.rules import SETTING_RULES
from generation.services import default_model

SETTING_LABELS = {
    "max_new_tokens": "Max new tokens",
    "min_new_tokens": "Min new tokens",
    "temperature": "Temperature",
    "top_p": "Top p",
    "top_k": "Top k",
    "repetition_penalty": "Repetition penalty",
    "no_repeat_ngram_size": "No-repeat n-gram size",
    "temperature_spread": "Temperature spread across candidates",
}


def generation_context(*, project: Project) -> dict[str, Any]:
    templates = []
    for template in selectors.project_templates(project_id=project.pk):
        version = template.current_version
        if version is not None:
            templates.append({"template": template, "version": version})
    # The form opens on the template made for this project's kind of content (a news desk on
    # "News report"), not on whichever sorts first.
    templates.sort(key=lambda t: t["template"].content_type != project.content_type)
    model = default_model()
    defaults = {**(model.default_settings() if model else {}), "temperature_spread": 0.0}
    return {
        "templates": templates,
        "models": LanguageModel.objects.filter(enabled=True).filter(
            Q(project__isnull=True) | Q(project=project)
        ),
        "default_model": model,
        "setting_fields": [
            {
                "name": name,
                "label": SETTING_LABELS[name],
                "default": defaults.get(name, ""),
                "step": "1" if rule.kind is int else "0.01",
            }
            for name, rule in SETTING_RULES.items()
        ],
    }


def parse_generation_post(*, project: Project, data: QueryDict) -> tuple[dict[str, Any], dict]:
    """Turn the form's POST into job_create arguments; also return field errors found here."""
    errors: dict[str, list[str]] = {}
    kwargs: dict[str, Any] = {"seed_text": data.get("seed_text", "")}
    template_id = data.get("template", "")
    if template_id:
        version = (
            PromptTemplateVersion.objects.filter(
                template_id=template_id if template_id.isdigit() else -1,
                template__project=project,
            )
            .order_by("-number")
            .first()
        )
        if version is None:
            errors["template"] = ["No such template in this project."]
        else:
            kwargs["template_version"] = version
            prefix = f"var.{version.template_id}."
            kwargs["variables"] = {
                key[len(prefix) :]: value for key, value in data.items() if key.startswith(prefix)
            }
            kwargs["seed_text"] = ""
    model_id = data.get("model", "")
    if model_id:
        model = LanguageModel.objects.filter(pk=model_id if model_id.isdigit() else -1).first()
        if model is None:
            errors["model"] = ["No such model."]
        kwargs["model"] = model
    raw_n = data.get("n_candidates", "1").strip()
    kwargs["n_candidates"] = int(raw_n) if raw_n.isdigit() else raw_n
    raw_seed = data.get("seed", "").strip()
    if raw_seed:
        kwargs["base_seed"] = int(raw_seed) if raw_seed.isdigit() else raw_seed
    kwargs["settings"] = {
        name: data[name].strip() for name in SETTING_RULES if data.get(name, "").strip() != ""
    }
    return kwargs, errors
