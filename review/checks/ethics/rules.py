"""The rule set a project stores: its types, defaults and limits, and its validation.

:func:`validate_rules` reports every problem with the field and item it concerns; the regex
safety test it applies to custom patterns is in :mod:`review.checks.ethics.redos`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from review.checks.ethics.redos import REGEX_FLAGS, flags_value, pattern_problem
from review.checks.text import HAN

ENGINE = "ethics"
ENGINE_VERSION = "2"  # 2: Chinese text (boundaries, mobile and ID numbers, claims)

Severity = Literal["low", "medium", "high"]
RuleKind = Literal["blocked_term", "regex", "pii", "disclosure", "claim"]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high")
RULE_KINDS: tuple[str, ...] = ("blocked_term", "regex", "pii", "disclosure", "claim")
PII_DETECTORS: tuple[str, ...] = ("email", "phone", "card", "id_number")
CLAIM_DETECTORS: tuple[str, ...] = ("percentages", "statistics", "quotations", "research")

DEFAULT_SEVERITY: dict[str, Severity] = {
    "blocked_term": "high",
    "regex": "medium",
    "pii": "high",
    "disclosure": "medium",
    "claim": "low",
}

MAX_TERMS = 2000
MAX_TERM_CHARS = 100
MAX_REGEXES = 200
MAX_PATTERN_CHARS = 500
MAX_DISCLOSURES = 50
MAX_DISCLOSURE_CHARS = 2000
# A rule that fires thousands of times is misconfigured; stop collecting so the stored result
# stays small. ``EthicsResult.truncated`` says when this happened.
MAX_HITS_PER_RULE = 200


# --------------------------------------------------------------------------- config types


class BlockedTermConfig(TypedDict):
    term: str
    variants: NotRequired[list[str]]
    severity: NotRequired[Severity]
    message: NotRequired[str]


class RegexRuleConfig(TypedDict):
    name: str
    pattern: str
    flags: NotRequired[str]  # any of "imsx": IGNORECASE, MULTILINE, DOTALL, VERBOSE
    message: NotRequired[str]
    severity: NotRequired[Severity]


class PiiConfig(TypedDict, total=False):
    email: bool
    phone: bool
    card: bool
    id_number: bool  # Chinese resident identity card numbers (18 characters, checksum)


class ClaimsConfig(TypedDict, total=False):
    percentages: bool
    statistics: bool
    quotations: bool
    research: bool  # "research shows" without naming it (研究表明, 调查显示...)


class RuleSet(TypedDict, total=False):
    """The JSON-able form a project stores. Absent fields mean off/empty."""

    blocked_terms: list[str | BlockedTermConfig]
    regexes: list[RegexRuleConfig]
    pii: PiiConfig
    required_disclosures: list[str]
    claims: bool | ClaimsConfig


# Placeholder profanities, English and Chinese: a project admin replaces or extends them.
DEFAULT_RULES: RuleSet = {
    "blocked_terms": ["fuck", "shit", "bullshit", "asshole", "bastard", "傻逼", "操你妈", "他妈的"],
    "regexes": [],
    "pii": {"email": True, "phone": True, "card": True, "id_number": True},
    "required_disclosures": [],
    "claims": {"percentages": True, "statistics": True, "quotations": True, "research": True},
}


# --------------------------------------------------------------------------- result types


class EthicsHit(TypedDict):
    rule_kind: RuleKind
    rule: str  # the blocked term, the regex name, the PII detector, the disclosure or claim type
    start: int | None  # None only for a missing disclosure
    end: int | None
    text: str
    message: str
    severity: Severity


class EthicsTimings(TypedDict):
    total_ms: float
    blocked_term_ms: float
    regex_ms: float
    pii_ms: float
    disclosure_ms: float
    claim_ms: float


class EthicsResult(TypedDict):
    engine: str
    engine_version: str
    hits: list[EthicsHit]
    counts: dict[str, int]  # every kind in RULE_KINDS, zero included
    truncated: bool  # some rule hit MAX_HITS_PER_RULE and later hits were dropped
    timings: EthicsTimings


class InvalidRules(ValueError):
    """Raised by :func:`compile_rules`; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid ethics rules: " + "; ".join(errors))


# --------------------------------------------------------------------------- validation


def validate_rules(config: Any) -> list[str]:
    """Every problem in ``config``, each naming the field and item (empty when valid)."""
    if not isinstance(config, Mapping):
        return ["rules: must be an object"]
    errors: list[str] = []
    for key in config:
        if key not in RuleSet.__annotations__:
            errors.append(
                f"{key}: unknown field (expected one of {', '.join(RuleSet.__annotations__)})"
            )
    errors += _validate_terms(config.get("blocked_terms", []))
    errors += _validate_regexes(config.get("regexes", []))
    errors += _validate_switches("pii", config.get("pii", {}), PII_DETECTORS, allow_bool=False)
    errors += _validate_disclosures(config.get("required_disclosures", []))
    errors += _validate_switches(
        "claims", config.get("claims", False), CLAIM_DETECTORS, allow_bool=True
    )
    return errors


def _validate_severity(where: str, item: Mapping[str, Any]) -> list[str]:
    if "severity" in item and item["severity"] not in SEVERITIES:
        return [f"{where}: severity must be one of {', '.join(SEVERITIES)}"]
    return []


def _validate_message(where: str, item: Mapping[str, Any]) -> list[str]:
    if "message" in item and not isinstance(item["message"], str):
        return [f"{where}: message must be a string"]
    return []


def _validate_terms(terms: Any) -> list[str]:
    if not isinstance(terms, list):
        return ["blocked_terms: must be a list"]
    if len(terms) > MAX_TERMS:
        return [f"blocked_terms: at most {MAX_TERMS} terms"]
    errors: list[str] = []
    for i, item in enumerate(terms):
        where = f"blocked_terms[{i}]"
        if isinstance(item, str):
            errors += _validate_term_text(where, item)
            continue
        if not isinstance(item, Mapping):
            errors.append(f"{where}: must be a string or an object with 'term'")
            continue
        unknown = set(item) - set(BlockedTermConfig.__annotations__)
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        term = item.get("term")
        if not isinstance(term, str):
            errors.append(f"{where}: 'term' must be a string")
        else:
            errors += _validate_term_text(f"{where} ({term!r})", term)
        variants = item.get("variants", [])
        if not isinstance(variants, list):
            errors.append(f"{where}: variants must be a list of strings")
        else:
            for j, variant in enumerate(variants):
                if not isinstance(variant, str):
                    errors.append(f"{where}.variants[{j}]: must be a string")
                else:
                    errors += _validate_term_text(f"{where}.variants[{j}]", variant)
        errors += _validate_severity(where, item)
        errors += _validate_message(where, item)
    return errors


def _validate_term_text(where: str, term: str) -> list[str]:
    if not term_words(term):
        return [f"{where}: must contain at least one letter or digit"]
    if len(term) > MAX_TERM_CHARS:
        return [f"{where}: longer than {MAX_TERM_CHARS} characters"]
    return []


def _validate_regexes(rules: Any) -> list[str]:
    if not isinstance(rules, list):
        return ["regexes: must be a list"]
    if len(rules) > MAX_REGEXES:
        return [f"regexes: at most {MAX_REGEXES} rules"]
    errors: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(rules):
        where = f"regexes[{i}]"
        if not isinstance(item, Mapping):
            errors.append(f"{where}: must be an object with 'name' and 'pattern'")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(f"{where}: 'name' must be a non-empty string")
        else:
            where = f"{where} ({name!r})"
            if name in seen:
                errors.append(f"{where}: duplicate name")
            seen.add(name)
        unknown = set(item) - set(RegexRuleConfig.__annotations__)
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        flags_text = item.get("flags", "")
        flags = 0
        if not isinstance(flags_text, str) or set(flags_text) - set(REGEX_FLAGS):
            errors.append(f"{where}: flags must be a string of letters from 'imsx'")
        else:
            flags = flags_value(flags_text)
        pattern = item.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"{where}: 'pattern' must be a non-empty string")
        elif len(pattern) > MAX_PATTERN_CHARS:
            errors.append(f"{where}: pattern longer than {MAX_PATTERN_CHARS} characters")
        else:
            problem = pattern_problem(pattern, flags)
            if problem:
                errors.append(f"{where}: {problem}")
        errors += _validate_severity(where, item)
        errors += _validate_message(where, item)
    return errors


def _validate_switches(
    field: str, value: Any, detectors: tuple[str, ...], *, allow_bool: bool
) -> list[str]:
    if allow_bool and isinstance(value, bool):
        return []
    if not isinstance(value, Mapping):
        kind = "true/false or an object" if allow_bool else "an object"
        return [f"{field}: must be {kind} with keys {', '.join(detectors)}"]
    errors = []
    for key, on in value.items():
        if key not in detectors:
            errors.append(
                f"{field}.{key}: unknown detector (expected one of {', '.join(detectors)})"
            )
        elif not isinstance(on, bool):
            errors.append(f"{field}.{key}: must be true or false")
    return errors


def _validate_disclosures(items: Any) -> list[str]:
    if not isinstance(items, list):
        return ["required_disclosures: must be a list of strings"]
    if len(items) > MAX_DISCLOSURES:
        return [f"required_disclosures: at most {MAX_DISCLOSURES} texts"]
    errors = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not normalise_phrase(item):
            errors.append(f"required_disclosures[{i}]: must be a non-empty string")
        elif len(item) > MAX_DISCLOSURE_CHARS:
            errors.append(
                f"required_disclosures[{i}]: longer than {MAX_DISCLOSURE_CHARS} characters"
            )
    return errors


def term_words(term: str) -> list[str]:
    return re.findall(r"[^\W_]+", term)


def normalise_phrase(text: str) -> str:
    """Case-fold, unify quotes and dashes (full-width forms too), collapse whitespace, and drop
    whitespace next to Han characters ("AI 生成" and "AI生成" are written both ways): for
    disclosure matching."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(
        str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
    )
    return _SPACE_BY_HAN_RE.sub("", " ".join(text.split()))


_SPACE_BY_HAN_RE = re.compile(f"\\s+(?=[{HAN}])|(?<=[{HAN}])\\s+")
