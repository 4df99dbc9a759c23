"""Writes of prompt templates: create, add a version, and fill in a version's placeholders.

A template's variables are declared with it and every placeholder must name one; rendering fills
them in one pass (a value holding "{{x}}" is never expanded again). Errors name each field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation.models import PromptTemplate, PromptTemplateVersion

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
MAX_VARIABLE_LENGTH = 20_000


def _clean_variables(variables: Any, body: str, system_prompt: str) -> list[dict[str, Any]]:
    if not isinstance(variables, list):
        raise ValidationError({"variables": "A list of variables is required."})
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, item in enumerate(variables):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValidationError({f"variables.{position}": "Each variable needs a name."})
        name = item["name"].strip()
        if not VARIABLE_NAME_RE.match(name):
            raise ValidationError(
                {f"variables.{position}": f"{name!r} is not a valid name (letters, digits, _)."}
            )
        if name in seen:
            raise ValidationError({f"variables.{position}": f"{name!r} is declared twice."})
        seen.add(name)
        cleaned.append(
            {
                "name": name,
                "label": str(item.get("label") or name.replace("_", " ").capitalize())[:100],
                "required": bool(item.get("required", True)),
                "multiline": bool(item.get("multiline", False)),
            }
        )
    used = set(PLACEHOLDER_RE.findall(body)) | set(PLACEHOLDER_RE.findall(system_prompt))
    undeclared = sorted(used - seen)
    if undeclared:
        raise ValidationError(
            {"body": f"Placeholders without a declared variable: {', '.join(undeclared)}."}
        )
    return cleaned


def _clean_background(background: Any) -> int:
    from generation.services.jobs import MAX_BACKGROUND_PASSAGES

    if (
        isinstance(background, bool)
        or not isinstance(background, int)
        or not 0 <= background <= MAX_BACKGROUND_PASSAGES
    ):
        raise ValidationError(
            {"background": f"A whole number of passages from 0 to {MAX_BACKGROUND_PASSAGES}."}
        )
    return background


TOPUP_MESSAGE = "A whole number of candidates from 0 to {max}."


def clean_topup(topup: Any) -> int:
    """More candidates a job draws when none of its own covers the brief: 0..TOPUP_MAX."""
    from generation.quality import TOPUP_MAX

    if isinstance(topup, bool) or not isinstance(topup, int) or not 0 <= topup <= TOPUP_MAX:
        raise ValidationError({"topup": TOPUP_MESSAGE.format(max=TOPUP_MAX)})
    return topup


def _require_admin(*, user: AbstractBaseUser, project: Project) -> None:
    require_role(user=user, project=project, minimum=Role.ADMIN)


@transaction.atomic
def template_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    body: str,
    variables: list[Any],
    system_prompt: str = "",
    content_type: str | None = None,
    background: int = 0,
    topup: int = 0,
) -> PromptTemplate:
    """``background``: archive passages a job of this template asks for (0: none);
    ``topup``: more candidates a job draws when none of its own covers the brief (0: none)."""
    _require_admin(user=user, project=project)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A name is required."})
    if not body.strip():
        raise ValidationError({"body": "The template text is required."})
    if PromptTemplate.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"This project already has a template named {name!r}."})
    cleaned = _clean_variables(variables, body, system_prompt)
    background = _clean_background(background)
    topup = clean_topup(topup)
    template = PromptTemplate.objects.create(
        project=project, name=name, content_type=content_type or project.content_type
    )
    PromptTemplateVersion.objects.create(
        template=template,
        number=1,
        system_prompt=system_prompt,
        body=body,
        variables=cleaned,
        background=background,
        topup=topup,
        created_by=user,
    )
    return template


@transaction.atomic
def template_update(
    *,
    template: PromptTemplate,
    user: AbstractBaseUser,
    body: str,
    variables: list[Any],
    system_prompt: str = "",
    note: str = "",
    background: int | None = None,
    topup: int | None = None,
) -> PromptTemplateVersion:
    """Add a new version; drafts keep pointing at the version they were written with.
    ``background`` / ``topup`` None keeps the current version's."""
    _require_admin(user=user, project=template.project)
    if not body.strip():
        raise ValidationError({"body": "The template text is required."})
    cleaned = _clean_variables(variables, body, system_prompt)
    if background is None:
        current = template.current_version
        background = current.background if current is not None else 0
    background = _clean_background(background)
    if topup is None:
        current = template.current_version
        topup = current.topup if current is not None else 0
    topup = clean_topup(topup)
    # Lock the template row so two concurrent edits get consecutive numbers.
    PromptTemplate.objects.select_for_update().get(pk=template.pk)
    last = template.versions.order_by("-number").values_list("number", flat=True).first() or 0
    return PromptTemplateVersion.objects.create(
        template=template,
        number=last + 1,
        system_prompt=system_prompt,
        body=body,
        variables=cleaned,
        background=background,
        topup=topup,
        note=note[:300],
        created_by=user,
    )


def template_render(*, version: PromptTemplateVersion, values: Mapping[str, Any]) -> str:
    """The user message with variables filled in; errors name the variable."""
    declared = {v["name"]: v for v in version.variables}
    errors: dict[str, str] = {}
    for name in values:
        if name not in declared:
            errors[f"variables.{name}"] = f"Unknown template variable {name!r}."
    for name, spec in declared.items():
        value = values.get(name)
        if value is not None and not isinstance(value, str | int | float):
            errors[f"variables.{name}"] = "Must be text."
        elif spec["required"] and not str(value or "").strip():
            errors[f"variables.{name}"] = "This variable is required."
        elif value is not None and len(str(value)) > MAX_VARIABLE_LENGTH:
            errors[f"variables.{name}"] = f"At most {MAX_VARIABLE_LENGTH} characters."
    if errors:
        raise ValidationError(errors)
    # One pass, so a value that itself contains "{{x}}" is never expanded again.
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1)) or "").strip(), version.body)


def system_render(*, version: PromptTemplateVersion, values: Mapping[str, Any]) -> str:
    return PLACEHOLDER_RE.sub(
        lambda m: str(values.get(m.group(1)) or "").strip(), version.system_prompt
    )
