"""The rules of generation settings: what each may be, and a job's per-candidate settings.

Pure functions over a model's defaults and a request's overrides; errors name each field
(``settings.<name>``) so forms and the API can show them where they belong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from generation.models import LanguageModel


@dataclass(frozen=True)
class SettingRule:
    kind: type  # int, float or bool
    minimum: float
    maximum: float | None
    min_exclusive: bool = False
    label: str = ""  # for forms that list the settings (the fine-tuning page)


# The one place that says what a generation setting may be. max_new_tokens is also capped by
# the model's own limit; min_new_tokens by max_new_tokens.
SETTING_RULES: dict[str, SettingRule] = {
    "max_new_tokens": SettingRule(int, 1, None),
    "min_new_tokens": SettingRule(int, 0, None),
    "temperature": SettingRule(float, 0.0, 5.0),
    "top_p": SettingRule(float, 0.0, 1.0, min_exclusive=True),
    "top_k": SettingRule(int, 0, 1000),
    "repetition_penalty": SettingRule(float, 0.0, 10.0, min_exclusive=True),
    "no_repeat_ngram_size": SettingRule(int, 0, 20),
    # Spread candidates' temperatures around ``temperature`` (0 = same settings, seeds differ).
    "temperature_spread": SettingRule(float, 0.0, 1.0),
}


def _coerce(name: str, value: Any, rule: SettingRule) -> int | float | bool:
    if rule.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "on", "yes"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "off", "no", ""}:
            return False
        if value in (0, 1):
            return bool(value)
        raise ValidationError({f"settings.{name}": f"{value!r} is not true or false."})
    if isinstance(value, bool) or value is None or value == "":
        raise ValidationError({f"settings.{name}": "A number is required."})
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError({f"settings.{name}": f"{value!r} is not a number."}) from None
    # "NaN" and "Infinity" parse as floats; int() of them raises, so refuse them first.
    if not math.isfinite(number):
        raise ValidationError({f"settings.{name}": "Must be a finite number."})
    if rule.kind is int:
        if number != int(number):
            raise ValidationError({f"settings.{name}": "Must be a whole number."})
        return int(number)
    return number


def check_settings(
    values: dict[str, Any],
    overrides: Mapping[str, Any] | None,
    rules: Mapping[str, SettingRule],
    *,
    unknown: str,
) -> dict[str, list[str]]:
    """Put ``overrides`` into ``values`` (in place) and check the type and range of every value
    ``rules`` names; returns the errors keyed "settings.<name>" (``unknown`` for a name with no
    rule). Generation's settings and fine-tuning's share this one validator."""
    errors: dict[str, list[str]] = {}
    for name, value in (overrides or {}).items():
        rule = rules.get(name)
        if rule is None:
            errors.setdefault(f"settings.{name}", []).append(unknown)
            continue
        try:
            values[name] = _coerce(name, value, rule)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
    for name, rule in rules.items():
        key = f"settings.{name}"
        if key in errors or rule.kind is bool:
            continue
        value = values[name]
        too_low = value <= rule.minimum if rule.min_exclusive else value < rule.minimum
        if too_low:
            relation = "greater than" if rule.min_exclusive else "at least"
            errors.setdefault(key, []).append(f"Must be {relation} {rule.minimum:g}.")
        elif rule.maximum is not None and value > rule.maximum:
            errors.setdefault(key, []).append(f"Must be at most {rule.maximum:g}.")
    return errors


def resolve_settings(
    *, model: LanguageModel, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The model's defaults overridden by ``overrides``, validated; errors name each field."""
    resolved: dict[str, Any] = {**model.default_settings(), "temperature_spread": 0.0}
    errors = check_settings(
        resolved, overrides, SETTING_RULES, unknown="Unknown generation setting."
    )
    if "settings.max_new_tokens" not in errors and (
        resolved["max_new_tokens"] > model.max_new_tokens_limit
    ):
        errors.setdefault("settings.max_new_tokens", []).append(
            f"Must be at most {model.max_new_tokens_limit}, the limit of model {model.name}."
        )
    if (
        "settings.min_new_tokens" not in errors
        and "settings.max_new_tokens" not in errors
        and resolved["min_new_tokens"] > resolved["max_new_tokens"]
    ):
        errors.setdefault("settings.min_new_tokens", []).append("Must not exceed max_new_tokens.")
    if errors:
        raise ValidationError(errors)
    return resolved


def candidate_settings(resolved: Mapping[str, Any], *, index: int, count: int) -> dict[str, Any]:
    """Settings of candidate ``index``: the same as the job's, with its temperature spread."""
    own = {k: v for k, v in resolved.items() if k != "temperature_spread"}
    spread = float(resolved.get("temperature_spread") or 0.0)
    if spread and count > 1 and own["temperature"] > 0:
        position = index / (count - 1) - 0.5  # -0.5 .. 0.5
        own["temperature"] = round(max(0.05, own["temperature"] + 2 * spread * position), 4)
    return own
