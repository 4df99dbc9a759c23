"""A project's check policy: read it (created with defaults on first use) and change it.

Every change is audited: :func:`policy_update` writes a ``PolicyEvent`` naming who changed which
fields from what to what, in the transaction that changes the policy, so the history never
disagrees with the row.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from review import holds
from review.checks import ethics
from review.models import Policy, PolicyEvent, UnreadableLanguage

logger = logging.getLogger(__name__)


def policy_get(*, project: Project) -> Policy:
    found = Policy.objects.filter(project=project).first()
    if found is not None:
        return found
    Policy.objects.get_or_create(project=project, defaults=holds.default_policy())
    return Policy.objects.get(project=project)


# Policy fields whose values are dicts: a change is recorded per key ("rules.blocked_terms").
_PER_KEY = ("toxicity_thresholds", "rules")


def policy_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for every field of ``after`` whose value differs
    from ``before``; the keys of a dict field are compared one by one. Pure function."""
    changes: dict[str, dict[str, Any]] = {}
    for field, new in after.items():
        old = before.get(field)
        if field in _PER_KEY and isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    changes[f"{field}.{key}"] = {"from": old.get(key), "to": new.get(key)}
        elif old != new:
            changes[field] = {"from": old, "to": new}
    return changes


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
    unreadable_language: str | None = None,
    quality_hold: Any = None,
    quality_floor: Any = None,
) -> Policy:
    """Validate and save; errors name the field. Only project admins.

    Side effects: updates the project's Policy row and, when a value changed, writes a
    PolicyEvent with the changes, both in one transaction.
    """
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
    unknown = sorted(set(thresholds) - set(holds.DEFAULT_TOXICITY_THRESHOLDS))
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
    floor = None if quality_floor is None else number("quality_floor", quality_floor, 0.0, 1.0)
    bad_kinds = sorted(set(blocking_rule_kinds) - set(ethics.RULE_KINDS))
    if bad_kinds:
        errors.setdefault("blocking_rule_kinds", []).append(
            f"Unknown rule kinds: {', '.join(bad_kinds)}."
        )
    if unreadable_language is not None and unreadable_language not in UnreadableLanguage.values:
        errors.setdefault("unreadable_language", []).append(
            f"Choose one of: {', '.join(UnreadableLanguage.values)}."
        )
    for message in ethics.validate_rules(rules):
        errors.setdefault("rules", []).append(message)
    if errors:
        raise ValidationError(errors)
    values: dict[str, Any] = {
        "toxicity_thresholds": thresholds,
        "lexical_threshold": lexical,
        "semantic_threshold": sem,
        "semantic_share": share,
        **({} if draft_share is None else {"lexical_draft_share": draft_share}),
        **({} if source_share is None else {"semantic_source_share": source_share}),
        "blocking_rule_kinds": list(blocking_rule_kinds),
        "rules": rules,
        **({} if unreadable_language is None else {"unreadable_language": unreadable_language}),
        **({} if quality_hold is None else {"quality_hold": bool(quality_hold)}),
        **({} if floor is None else {"quality_floor": floor}),
    }
    current = policy_get(project=project)
    with transaction.atomic():
        # Read the values being replaced under the row lock (PostgreSQL; SQLite's writers take
        # turns anyway), so two admins saving at once each record what they really replaced.
        before = Policy.objects.select_for_update().filter(pk=current.pk).values(*values).get()
        Policy.objects.filter(pk=current.pk).update(
            **values, updated_by=user, updated_at=timezone.now()
        )
        changes = policy_changes(before, values)
        if changes:
            PolicyEvent.objects.create(policy_id=current.pk, actor=user, changes=changes)
    current.refresh_from_db()
    return current


def policy_view(p: Policy) -> holds.PolicyView:
    return {
        "toxicity_thresholds": p.toxicity_thresholds,
        "lexical_threshold": p.lexical_threshold,
        "lexical_draft_share": p.lexical_draft_share,
        "semantic_threshold": p.semantic_threshold,
        "semantic_share": p.semantic_share,
        "semantic_source_share": p.semantic_source_share,
        "blocking_rule_kinds": p.blocking_rule_kinds,
        "unreadable_language": p.unreadable_language,
        "quality_hold": p.quality_hold,
        "quality_floor": p.quality_floor,
    }
