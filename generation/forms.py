"""The generation request form: parsed by hand because its variable fields depend on the
chosen template; every error comes back keyed like the API's ("settings.temperature",
"variables.headline") and is shown next to its field."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.http import QueryDict

from contentstudio.models import Project
from generation import languages, selectors
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


FORM_LABELS = {
    "template": "Template",
    "seed_text": "Prompt",
    "model": "Model",
    "n_candidates": "Candidates",
    "seed": "Seed",
    "base_seed": "Seed",
    "variables": "Template fields",
    "settings": "Settings",
    **{f"settings.{name}": label for name, label in SETTING_LABELS.items()},
}


def generation_labels(*, project: Project, data: QueryDict) -> dict[str, str]:
    """The labels of the generation form's fields, with the chosen template's variables."""
    labels = dict(FORM_LABELS)
    template_id = data.get("template", "")
    version = (
        PromptTemplateVersion.objects.filter(
            template_id=int(template_id), template__project=project
        )
        .order_by("-number")
        .first()
        if template_id.isdigit()
        else None
    )
    for variable in version.variables if version else []:
        name = variable.get("name", "")
        labels[f"variables.{name}"] = variable.get("label") or name
    return labels


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
        "max_candidates": django_settings.GENERATION_MAX_CANDIDATES,
        "templates": templates,
        "models": selectors.models_listed(projects=[project], enabled_only=True),
        "default_model": model,
        "setting_fields": [
            {
                "name": name,
                "label": SETTING_LABELS[name],
                "default": defaults.get(name, ""),
                # "any": the service takes any number in range; a coarser step would make
                # the browser refuse a model's own default (0.725) without a word.
                "step": "1" if rule.kind is int else "any",
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
    raw_background = data.get("background", "").strip()
    if raw_background:
        kwargs["background"] = int(raw_background) if raw_background.isdigit() else raw_background
    raw_topup = data.get("topup", "").strip()
    if raw_topup:
        kwargs["topup"] = int(raw_topup) if raw_topup.isdigit() else raw_topup
    kwargs["settings"] = {
        name: data[name].strip() for name in SETTING_RULES if data.get(name, "").strip() != ""
    }
    return kwargs, errors


def generation_language_warning(kwargs: dict[str, Any]) -> dict[str, str] | None:
    """The warning for a job whose template or brief is in a language its model does not
    declare (``generation.languages``), with ``confirm``: the value "Generate anyway" posts
    back as ``language_confirmed`` (another model or language asks again)."""
    model = kwargs.get("model") or default_model()
    if model is None:
        return None
    warning = languages.language_warning(
        model=model,
        template_version=kwargs.get("template_version"),
        variables=kwargs.get("variables"),
        seed_text=kwargs.get("seed_text", ""),
    )
    if warning is None:
        return None
    return {**warning, "confirm": f"{model.pk}:{warning['language']}"}
