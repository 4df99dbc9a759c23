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
class _Rule:
    kind: type
    minimum: float
    maximum: float | None
    min_exclusive: bool = False


# The one place that says what a generation setting may be. max_new_tokens is also capped by
# the model's own limit; min_new_tokens by max_new_tokens.
SETTING_RULES: dict[str, _Rule] = {
    "max_new_tokens": _Rule(int, 1, None),
    "min_new_tokens": _Rule(int, 0, None),
    "temperature": _Rule(float, 0.0, 5.0),
    "top_p": _Rule(float, 0.0, 1.0, min_exclusive=True),
    "top_k": _Rule(int, 0, 1000),
    "repetition_penalty": _Rule(float, 0.0, 10.0, min_exclusive=True),
    "no_repeat_ngram_size": _Rule(int, 0, 20),
    # Spread candidates' temperatures around ``temperature`` (0 = same settings, seeds differ).
    "temperature_spread": _Rule(float, 0.0, 1.0),
}


def _coerce(name: str, value: Any, rule: _Rule) -> int | float:
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


def resolve_settings(
    *, model: LanguageModel, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The model's defaults overridden by ``overrides``, validated; errors name each field."""
    resolved: dict[str, Any] = {**model.default_settings(), "temperature_spread": 0.0}
    errors: dict[str, list[str]] = {}
    for name, value in (overrides or {}).items():
        rule = SETTING_RULES.get(name)
        if rule is None:
            errors.setdefault(f"settings.{name}", []).append("Unknown generation setting.")
            continue
        try:
            resolved[name] = _coerce(name, value, rule)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
    for name, rule in SETTING_RULES.items():
        key = f"settings.{name}"
        if key in errors:
            continue
        value = resolved[name]
        too_low = value <= rule.minimum if rule.min_exclusive else value < rule.minimum
        if too_low:
            relation = "greater than" if rule.min_exclusive else "at least"
            errors.setdefault(key, []).append(f"Must be {relation} {rule.minimum:g}.")
        elif rule.maximum is not None and value > rule.maximum:
            errors.setdefault(key, []).append(f"Must be at most {rule.maximum:g}.")
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
