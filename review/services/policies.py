"""A project's check policy: read it (created with defaults on first use) and change it."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from review import policy
from review.checks import ethics
from review.models import (
    Policy,
)

logger = logging.getLogger(__name__)


def policy_get(*, project: Project) -> Policy:
    found = Policy.objects.filter(project=project).first()
    if found is not None:
        return found
    Policy.objects.get_or_create(project=project, defaults=policy.default_policy())
    return Policy.objects.get(project=project)


def policy_update(
    *,
    project: Project,
    user: AbstractBaseUser,
    toxicity_thresholds: dict[str, Any],
    lexical_threshold: Any,
    semantic_threshold: Any,
    semantic_share: Any,
    blocking_rule_kinds: list[str],
    rules: dict[str, Any],
    lexical_draft_share: Any = None,
    semantic_source_share: Any = None,
) -> Policy:
    """Validate and save; errors name the field. Only project admins."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    errors: dict[str, list[str]] = {}

    def number(field: str, value: Any, low: float, high: float) -> float:
        try:
            result = float(value)
        except (TypeError, ValueError):
            errors.setdefault(field, []).append(f"{value!r} is not a number.")
            return low
        if not low <= result <= high:
            errors.setdefault(field, []).append(f"Must be between {low:g} and {high:g}.")
        return result

    thresholds = {
        category: number(f"toxicity_thresholds.{category}", value, 0.0, 1.0)
        for category, value in (toxicity_thresholds or {}).items()
    }
    unknown = sorted(set(thresholds) - set(policy.DEFAULT_TOXICITY_THRESHOLDS))
    for category in unknown:
        errors.setdefault(f"toxicity_thresholds.{category}", []).append("Unknown category.")
    lexical = number("lexical_threshold", lexical_threshold, 1.0, 100.0)
    sem = number("semantic_threshold", semantic_threshold, 0.5, 1.0)
    share = number("semantic_share", semantic_share, 0.0, 1.0)
    draft_share = (
        None
        if lexical_draft_share is None
        else number("lexical_draft_share", lexical_draft_share, 0.01, 1.0)
    )
    source_share = (
        None
        if semantic_source_share is None
        else number("semantic_source_share", semantic_source_share, 0.0, 1.0)
    )
    bad_kinds = sorted(set(blocking_rule_kinds) - set(ethics.RULE_KINDS))
    if bad_kinds:
        errors.setdefault("blocking_rule_kinds", []).append(
            f"Unknown rule kinds: {', '.join(bad_kinds)}."
        )
    for message in ethics.validate_rules(rules):
        errors.setdefault("rules", []).append(message)
    if errors:
        raise ValidationError(errors)
    current = policy_get(project=project)
    Policy.objects.filter(pk=current.pk).update(
        toxicity_thresholds=thresholds,
        lexical_threshold=lexical,
        semantic_threshold=sem,
        semantic_share=share,
        **({} if draft_share is None else {"lexical_draft_share": draft_share}),
        **({} if source_share is None else {"semantic_source_share": source_share}),
        blocking_rule_kinds=list(blocking_rule_kinds),
        rules=rules,
        updated_by=user,
        updated_at=timezone.now(),
    )
    current.refresh_from_db()
    return current


def policy_view(p: Policy) -> policy.PolicyView:
    return {
        "toxicity_thresholds": p.toxicity_thresholds,
        "lexical_threshold": p.lexical_threshold,
        "lexical_draft_share": p.lexical_draft_share,
        "semantic_threshold": p.semantic_threshold,
        "semantic_share": p.semantic_share,
        "semantic_source_share": p.semantic_source_share,
        "blocking_rule_kinds": p.blocking_rule_kinds,
    }
