"""The Policy page: every member reads the project's thresholds and rules; admins change them."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from contentstudio.field_labels import labelled_errors
from contentstudio.models import Role, role_at_least
from contentstudio.selectors import project_get
from review import holds, selectors, services
from review.checks import ethics
from review.checks.language import describe_languages
from review.models import CheckKind, UnreadableLanguage
from review.services import adapters
from review.services.languages import check_languages

# The error summary names each field as the page shows it (short forms of the labels).
POLICY_LABELS = {
    "toxicity_thresholds": "Toxicity",
    "lexical_threshold": "Share of a source passage in the draft (%)",
    "lexical_draft_share": "Share of the draft from one source",
    "semantic_threshold": "Cosine at which a sentence restates a source",
    "semantic_share": "Share of the draft's sentences restating one source",
    "semantic_source_share": "Share of that source's sentences restated",
    "blocking_rule_kinds": "Hold a draft on hits of",
    "rules": "Ethics rules",
}


def _policy_labels(errors: dict[str, list[str]]) -> dict[str, str]:
    labels = dict(POLICY_LABELS)
    for field in errors:
        if field.startswith("toxicity_thresholds."):
            labels[field] = f"Toxicity: {field.partition('.')[2].replace('_', ' ')}"
    return labels


def _rules_from_post(data: Any) -> dict[str, Any]:
    def lines(name: str) -> list[str]:
        return [line.strip() for line in data.get(name, "").splitlines() if line.strip()]

    regexes = []
    for line in lines("regexes"):
        name, sep, pattern = line.partition(":")
        regexes.append(
            {"name": name.strip(), "pattern": pattern.strip()}
            if sep
            else {"name": line[:40], "pattern": line}
        )
    return {
        "blocked_terms": lines("blocked_terms"),
        "regexes": regexes,
        "pii": {k: data.get(f"pii_{k}") == "on" for k in ethics.PII_DETECTORS},
        "required_disclosures": lines("required_disclosures"),
        "claims": {k: data.get(f"claims_{k}") == "on" for k in ethics.CLAIM_DETECTORS},
    }


def _shown(value: Any) -> str:
    """A changed value as text for the history (the template escapes it)."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _history(policy: Any) -> list[dict[str, Any]]:
    """The policy's newest changes: when, who, and each field from what to what."""
    return [
        {
            "at": event.created_at,
            "actor": event.actor_username or "(deleted user)",
            "changes": [
                (field, _shown(change.get("from")), _shown(change.get("to")))
                for field, change in sorted(event.changes.items())
            ],
        }
        for event in selectors.policy_history(policy=policy)
    ]


@login_required
def policy_edit(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get(user=request.user, slug=slug)
    current = services.policy_get(project=project)
    errors: dict[str, list[str]] = {}
    is_admin = role_at_least(role, Role.ADMIN)
    shown: dict[str, Any] = {
        "toxicity_thresholds": current.toxicity_thresholds,
        "lexical_threshold": current.lexical_threshold,
        "lexical_draft_share": current.lexical_draft_share,
        "semantic_threshold": current.semantic_threshold,
        "semantic_share": current.semantic_share,
        "semantic_source_share": current.semantic_source_share,
        "blocking_rule_kinds": current.blocking_rule_kinds,
        "rules": current.rules or {},
        "unreadable_language": current.unreadable_language,
        "quality_hold": current.quality_hold,
        "quality_floor": current.quality_floor,
    }
    if request.method == "POST":
        project, role = project_get(user=request.user, slug=slug, minimum=Role.ADMIN)
        posted: dict[str, Any] = {
            "toxicity_thresholds": {
                c: request.POST.get(f"tox_{c}", "") for c in holds.DEFAULT_TOXICITY_THRESHOLDS
            },
            "lexical_threshold": request.POST.get("lexical_threshold"),
            "lexical_draft_share": request.POST.get("lexical_draft_share"),
            "semantic_threshold": request.POST.get("semantic_threshold"),
            "semantic_share": request.POST.get("semantic_share"),
            "semantic_source_share": request.POST.get("semantic_source_share"),
            "blocking_rule_kinds": request.POST.getlist("blocking_rule_kinds"),
            "rules": _rules_from_post(request.POST),
            "unreadable_language": request.POST.get(
                "unreadable_language", current.unreadable_language
            ),
            "quality_hold": request.POST.get("quality_hold") == "on",
            "quality_floor": request.POST.get("quality_floor"),
        }
        try:
            services.policy_update(project=project, user=request.user, **posted)
        except ValidationError as exc:
            errors = exc.message_dict
            shown = posted  # show what was typed, with the errors, not the stored policy
        else:
            messages.success(request, "Policy saved; it applies to drafts checked from now on.")
            return redirect("policy_edit", slug=project.slug)
    rules = shown["rules"]
    return render(
        request,
        "review/policy.html",
        {
            "project": project,
            "role": role,
            "is_admin": is_admin,
            "toxicity_model": adapters.toxicity_model_info(),
            "check_languages": [
                (CheckKind(kind).label, describe_languages(languages))
                for kind, languages in check_languages().items()
            ],
            "unreadable_choices": UnreadableLanguage.choices,
            "policy": shown,
            "errors": errors,
            "error_list": labelled_errors(errors, _policy_labels(errors)),
            "toxicity": [
                (c, shown["toxicity_thresholds"].get(c, d))
                for c, d in holds.DEFAULT_TOXICITY_THRESHOLDS.items()
            ],
            "rule_kinds": ethics.RULE_KINDS,
            "rules": rules,
            "regex_text": "\n".join(
                f"{r['name']}: {r['pattern']}" for r in rules.get("regexes", [])
            ),
            "blocked_text": "\n".join(rules.get("blocked_terms", [])),
            "disclosure_text": "\n".join(rules.get("required_disclosures", [])),
            "history": _history(current),
        },
        status=400 if errors else 200,
    )
