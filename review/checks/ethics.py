"""Ethics rules per project: blocked terms, custom regexes, personal data, required disclosures
and claims that need a source.

A project stores its rules as a JSON-able dict (:class:`RuleSet`); project admins edit it, so
:func:`validate_rules` reports every problem with the field and item it concerns, and
:func:`compile_rules` turns a valid config into :class:`CompiledRules` (regexes compiled once).
:func:`check_ethics` reports every hit with its character span and the rule that fired. It does
not decide whether a draft is blocked: policy elsewhere maps ``rule_kind``/``severity`` to that.

Decisions worth knowing (also in the docstrings below):

* A config field that is absent means "off / empty", not "default": :data:`DEFAULT_RULES` is the
  template a new project starts from, and a stored config is taken literally.
* Custom regexes run on Python's backtracking ``re`` with no timeout, so :func:`validate_rules`
  rejects the shapes that backtrack catastrophically: a variable-length quantifier nested inside
  a repeating one (``(\\w+\\s?)+``, ``(a*)*``) and a repeated alternation whose branches can start
  with the same character (``(a|a)*``, ``(\\w|\\d)+``). Possessive quantifiers (``a++``) and
  atomic groups (``(?>...)``) never backtrack and are accepted anywhere; the error message
  suggests them. Patterns are capped at :data:`MAX_PATTERN_CHARS`.
* A missing required disclosure is a hit with ``start``/``end`` set to ``None`` (there is no
  place in the text to point at) and ``text`` empty.
* Card-number hits carry a masked ``text`` (all but the last four digits replaced) so the stored
  result does not copy the number again; the span still points at it in the draft.

Nothing here touches the ORM.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from re import _constants as sre_constants  # the parse tree types; stable within Python 3.11
from re import _parser as sre_parser
from typing import Any, Literal, NotRequired, TypedDict

from review.checks.text import sentences

ENGINE = "ethics"
ENGINE_VERSION = "1"

Severity = Literal["low", "medium", "high"]
RuleKind = Literal["blocked_term", "regex", "pii", "disclosure", "claim"]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high")
RULE_KINDS: tuple[str, ...] = ("blocked_term", "regex", "pii", "disclosure", "claim")
PII_DETECTORS: tuple[str, ...] = ("email", "phone", "card")
CLAIM_DETECTORS: tuple[str, ...] = ("percentages", "statistics", "quotations")

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

# A quantifier whose upper bound reaches this counts as "repeating" for the nested-quantifier
# check; ``(\w+\s){2}`` is harmless, ``(\w+\s){50}`` is not.
_REPEATING_BOUND = 10


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


class ClaimsConfig(TypedDict, total=False):
    percentages: bool
    statistics: bool
    quotations: bool


class RuleSet(TypedDict, total=False):
    """The JSON-able form a project stores. Absent fields mean off/empty."""

    blocked_terms: list[str | BlockedTermConfig]
    regexes: list[RegexRuleConfig]
    pii: PiiConfig
    required_disclosures: list[str]
    claims: bool | ClaimsConfig


# Placeholder profanities: a project admin replaces or extends them.
DEFAULT_RULES: RuleSet = {
    "blocked_terms": ["fuck", "shit", "bullshit", "asshole", "bastard"],
    "regexes": [],
    "pii": {"email": True, "phone": True, "card": True},
    "required_disclosures": [],
    "claims": {"percentages": True, "statistics": True, "quotations": True},
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


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class _Matcher:
    rule: str
    regex: re.Pattern[str]
    message: str
    severity: Severity
    # Blocked terms only: per spelling (term or variant), the skeletons of its words. The
    # regex can only match where every word's skeleton occurs in the text's skeleton, so one
    # substring test per word skips most terms without running their regex.
    skeletons: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRules:
    blocked_terms: tuple[_Matcher, ...]
    regexes: tuple[_Matcher, ...]
    pii: frozenset[str]
    required_disclosures: tuple[str, ...]
    claims: frozenset[str]


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
    if not _term_words(term):
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
        if not isinstance(flags_text, str) or set(flags_text) - set(_REGEX_FLAGS):
            errors.append(f"{where}: flags must be a string of letters from 'imsx'")
        else:
            flags = _flags_value(flags_text)
        pattern = item.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            errors.append(f"{where}: 'pattern' must be a non-empty string")
        elif len(pattern) > MAX_PATTERN_CHARS:
            errors.append(f"{where}: pattern longer than {MAX_PATTERN_CHARS} characters")
        else:
            problem = _pattern_problem(pattern, flags)
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
        if not isinstance(item, str) or not _normalise_phrase(item):
            errors.append(f"required_disclosures[{i}]: must be a non-empty string")
        elif len(item) > MAX_DISCLOSURE_CHARS:
            errors.append(
                f"required_disclosures[{i}]: longer than {MAX_DISCLOSURE_CHARS} characters"
            )
    return errors


# --------------------------------------------------------------------------- regex safety

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _flags_value(flags_text: str) -> int:
    value = 0
    for letter in flags_text:
        value |= _REGEX_FLAGS[letter]
    return value


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)


def _pattern_problem(pattern: str, flags: int) -> str | None:
    """Why ``pattern`` is unusable (does not compile, or may backtrack catastrophically)."""
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        return f"pattern does not compile: {exc}"
    try:
        tree = sre_parser.parse(pattern, flags)
    except Exception:  # the private parser changed shape; compiling already succeeded
        return None
    ignore_case = bool(flags & re.IGNORECASE) or bool(tree.state.flags & re.IGNORECASE)
    problem = _walk_for_backtracking(
        list(tree), inside_repeat=False, repeat_first=None, ignore_case=ignore_case
    )
    if problem:
        return (
            f"pattern may backtrack catastrophically ({problem}); use a possessive quantifier "
            "(a++), an atomic group (?>...) or a simpler pattern"
        )
    return None


# The first character a repeated body can start with: what may follow an empty branch inside
# it. ``None`` means unknown (any character).
_FirstTest = Callable[[str], bool] | None


def _walk_for_backtracking(
    items: list[Any], *, inside_repeat: bool, repeat_first: _FirstTest, ignore_case: bool
) -> str | None:
    """Why ``items`` may backtrack catastrophically, or None.

    Flags a variable-length quantifier that can take more than one character ("+", "*",
    "{2,5}"; "?" is harmless) nested in a repeating one, and a repeated alternation whose
    branches can start with the same character (an empty branch starts with whatever follows:
    the next repetition). Python's parser already folds single-character alternations such as
    ``(\\w|\\d)`` into one class, which is safe, so those pass.
    """

    def walk(sub: list[Any], inside: bool, first: _FirstTest) -> str | None:
        return _walk_for_backtracking(
            sub, inside_repeat=inside, repeat_first=first, ignore_case=ignore_case
        )

    for op, av in items:
        found: str | None = None
        if op in _REPEATS:
            low, high, sub = av
            if inside_repeat and low != high and high > 1:
                return "a variable-length quantifier inside a repeated group"
            repeats = high == sre_constants.MAXREPEAT or high >= _REPEATING_BOUND
            if repeats and not inside_repeat:
                found = walk(list(sub), True, _first_char_test(list(sub), ignore_case))
            else:
                found = walk(list(sub), inside_repeat, repeat_first)
        elif op in (sre_constants.POSSESSIVE_REPEAT, sre_constants.ATOMIC_GROUP):
            continue  # these never give back what they matched, so they cannot blow up
        elif op == sre_constants.SUBPATTERN:
            found = walk(list(av[3]), inside_repeat, repeat_first)
        elif op == sre_constants.BRANCH:
            branches = [list(b) for b in av[1]]
            if inside_repeat and _branches_overlap(
                branches, follow=repeat_first, ignore_case=ignore_case
            ):
                return "a repeated alternation whose branches can start alike"
            for branch in branches:
                found = found or walk(branch, inside_repeat, repeat_first)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            found = walk(list(av[1]), inside_repeat, repeat_first)
        elif op == sre_constants.GROUPREF_EXISTS:
            for sub in av[1:]:
                if sub is not None:
                    found = found or walk(list(sub), inside_repeat, repeat_first)
        if found:
            return found
    return None


# Characters used to test whether two branches can start with the same character: exact for
# literals and classes over this alphabet, which covers what newsroom rules use in practice.
_PROBE_CHARS = [chr(c) for c in range(32, 127)] + list("\t\n\u00a0éüßçñ€£’“”–—")


def _first_char_test(items: list[Any], ignore_case: bool) -> Callable[[str], bool] | None:
    """A predicate for the first character ``items`` can match; None means "any character"."""
    for op, av in items:
        if op == sre_constants.AT:
            continue  # anchors consume nothing
        if op == sre_constants.LITERAL:
            ch = chr(av)
            if ignore_case:
                return lambda c, ch=ch: c.casefold() == ch.casefold()
            return lambda c, ch=ch: c == ch
        if op == sre_constants.NOT_LITERAL:
            ch = chr(av)
            return lambda c, ch=ch: c != ch
        if op == sre_constants.IN:
            pattern = re.compile(_class_source(av), re.IGNORECASE if ignore_case else 0)
            return lambda c, pattern=pattern: pattern.fullmatch(c) is not None
        if op == sre_constants.SUBPATTERN:
            return _first_char_test(list(av[3]), ignore_case)
        if op in _REPEATS and av[0] >= 1:
            return _first_char_test(list(av[2]), ignore_case)
        return None  # ANY, optional repeats, branches: assume the worst
    return None  # the items can match nothing: what follows decides, so assume the worst


def _class_source(av: list[Any]) -> str:
    """Rebuild a character class ``[...]`` from its parse tree."""
    parts: list[str] = []
    negate = ""
    categories = {
        sre_constants.CATEGORY_DIGIT: r"\d",
        sre_constants.CATEGORY_NOT_DIGIT: r"\D",
        sre_constants.CATEGORY_SPACE: r"\s",
        sre_constants.CATEGORY_NOT_SPACE: r"\S",
        sre_constants.CATEGORY_WORD: r"\w",
        sre_constants.CATEGORY_NOT_WORD: r"\W",
    }
    for op, value in av:
        if op == sre_constants.NEGATE:
            negate = "^"
        elif op == sre_constants.LITERAL:
            parts.append(re.escape(chr(value)))
        elif op == sre_constants.RANGE:
            parts.append(f"{re.escape(chr(value[0]))}-{re.escape(chr(value[1]))}")
        elif op == sre_constants.CATEGORY and value in categories:
            parts.append(categories[value])
        else:
            return r"[\s\S]"  # unknown member: treat the class as matching anything
    return f"[{negate}{''.join(parts)}]"


def _branches_overlap(branches: list[list[Any]], *, follow: _FirstTest, ignore_case: bool) -> bool:
    # An empty branch (the parser turns "(a|ab)" into "a(|b)") starts with what follows it.
    tests = [_first_char_test(b, ignore_case) if b else follow for b in branches]
    if any(t is None for t in tests):
        return True
    return any(sum(1 for t in tests if t is not None and t(ch)) > 1 for ch in _PROBE_CHARS)


# --------------------------------------------------------------------------- compiling

# Leetspeak-ish substitutions people use to dodge filters; "*" stands in for a vowel ("f*ck").
_LEET: dict[str, str] = {
    "a": "a@4*",
    "e": "e3*",
    "i": "i1!|*",
    "o": "o0*",
    "u": "u*",
    "s": "s$5",
    "t": "t7",
    "l": "l1|",
    "b": "b8",
    "g": "g9",
}

# Between the words of a phrase: nothing, spaces, hyphens or other punctuation ("bad-word",
# "bad word", "badword", "bad. word"), at most three characters so it stays a phrase.
_PHRASE_GAP = r"[\W_]{0,3}"


def _canonical_table() -> dict[int, str]:
    """Map every letter of ``_LEET`` and its substitutes to one representative per group.

    Groups are the connected sets of "can stand for" ("1" joins i and l, "*" joins the
    vowels), so a text character the regex may take for a letter always maps to the same
    representative as that letter.
    """
    parent: dict[str, str] = {}

    def find(ch: str) -> str:
        while parent.setdefault(ch, ch) != ch:
            ch = parent[ch]
        return ch

    for letter, substitutes in _LEET.items():
        for sub in substitutes:
            parent[find(sub)] = find(letter)
    return {ord(ch): find(ch) for ch in parent}


_CANONICAL = _canonical_table()


def _skeleton(text: str) -> str:
    return text.casefold().translate(_CANONICAL)


def _term_words(term: str) -> list[str]:
    return re.findall(r"[^\W_]+", term)


def _letter_class(ch: str) -> str:
    subs = _LEET.get(ch.casefold())
    if subs is None:
        return re.escape(ch)
    return "[" + "".join(re.escape(c) for c in subs) + "]"


def _term_pattern(term: str) -> str:
    """Whole-word, case-insensitive pattern for ``term`` with automatic variants.

    Variants: any case, a plural "-s"/"-es", words joined by nothing/space/hyphen/punctuation,
    and the leetspeak substitutions in ``_LEET``. Whole word: "ass" does not match "class".
    """
    words = _term_words(term)
    body = _PHRASE_GAP.join("".join(_letter_class(ch) for ch in word) for word in words)
    plural = r"(?:[e3]?[s$5])?"
    # Whole word: no letter or digit on either side, nor "@"/"$" (letters in disguise, so
    # "$hit" is not the word "hit"). Underscores and "*" are markup ("_word_", "**word**").
    return rf"(?<![^\W_])(?<![@$]){body}{plural}(?![^\W_])(?![@$])"


def _normalise_phrase(text: str) -> str:
    """Case-fold, unify quotes and dashes, collapse whitespace: for disclosure matching."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(
        str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
    )
    return " ".join(text.split())


def compile_rules(config: RuleSet | Mapping[str, Any]) -> CompiledRules:
    """Validate and compile ``config``; raises :class:`InvalidRules` listing every problem."""
    errors = validate_rules(config)
    if errors:
        raise InvalidRules(errors)
    return _compile_cached(json.dumps(config, sort_keys=True))


@lru_cache(maxsize=64)
def _compile_cached(config_json: str) -> CompiledRules:
    # Keyed by the canonical JSON, so checking many drafts of one project compiles once.
    config = json.loads(config_json)
    terms: list[_Matcher] = []
    for item in config.get("blocked_terms", []):
        if isinstance(item, str):
            item = {"term": item}
        term = item["term"]
        severity = item.get("severity", DEFAULT_SEVERITY["blocked_term"])
        message = item.get("message") or f"Blocked term: {term}"
        alternatives = sorted({_term_pattern(t) for t in [term, *item.get("variants", [])]})
        regex = re.compile("|".join(alternatives), re.IGNORECASE)
        spellings = [term, *item.get("variants", [])]
        skeletons = tuple(
            tuple(_skeleton(word) for word in _term_words(spelling)) for spelling in spellings
        )
        terms.append(_Matcher(term, regex, message, severity, skeletons))
    regexes = tuple(
        _Matcher(
            item["name"],
            re.compile(item["pattern"], _flags_value(item.get("flags", ""))),
            item.get("message") or f"Matches rule {item['name']}",
            item.get("severity", DEFAULT_SEVERITY["regex"]),
        )
        for item in config.get("regexes", [])
    )
    claims_config = config.get("claims", False)
    if isinstance(claims_config, bool):
        claims = frozenset(CLAIM_DETECTORS) if claims_config else frozenset()
    else:
        claims = frozenset(k for k, on in claims_config.items() if on)
    return CompiledRules(
        blocked_terms=tuple(terms),
        regexes=regexes,
        pii=frozenset(k for k, on in config.get("pii", {}).items() if on),
        required_disclosures=tuple(config.get("required_disclosures", [])),
        claims=claims,
    )


# --------------------------------------------------------------------------- detectors

# The lookbehind pins the start to the beginning of the local part, so a long run of letters
# without "@" costs linear time, not quadratic.
_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])"
)

# Phone candidates: optional +CC, optional (area), then 1-5 digit groups joined by one space,
# dot or hyphen. _is_phone decides; the candidate itself is cheap and bounded.
_PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w.,/+-])"
    r"(?:\+\d{1,3}[ \u00a0.-]?)?"
    r"(?:\(\d{1,5}\)[ \u00a0.-]?)?"
    r"\d{1,11}(?:[ \u00a0.-]\d{1,6}){0,5}"
    r"(?![\w]|[.,]\d)"
)
_US_PHONE_RE = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")

# 13-19 digits, optionally grouped by single spaces or hyphens.
_CARD_CANDIDATE_RE = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w]|[.,-]\d)")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_phone(candidate: str) -> bool:
    digits = _digits(candidate)
    if candidate.startswith("+"):
        # E.164 allows at most 15 digits; fewer than 8 with a country code is not a number.
        return 8 <= len(digits) <= 15
    if _US_PHONE_RE.fullmatch(candidate):
        return True
    # National formats that start with a trunk 0 (UK "020 7946 0958", "07700 900123").
    # Runs without a leading 0 or + (IDs, counts, "2024-2025") are not taken for phones.
    return digits.startswith("0") and 10 <= len(digits) <= 11 and not digits.startswith("00")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        value = int(ch)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = _digits(candidate)
    # Issuer prefixes of the major networks start with 2-6 (Mastercard 2/5, Amex/Diners/JCB 3,
    # Visa 4, Discover/UnionPay/Maestro 6); this drops most Luhn-valid accidents.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits)


def _mask_card(candidate: str) -> str:
    count = len(_digits(candidate))
    seen = 0
    out = []
    for ch in candidate:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > count - 4 else "•")
        else:
            out.append(ch)
    return "".join(out)


# Claims ------------------------------------------------------------------------------------

_PERCENT_RE = re.compile(
    r"(?<![\w.])\d+(?:[.,]\d+)?\s?(?:%|per\s?cent\b|percent\b|pct\b|percentage points?\b)",
    re.IGNORECASE,
)
# "2.5 million", "3 billion"; the short suffixes only after a currency sign ("£5m", "$3bn"),
# since a bare "5m" or "10k" is as often metres or a race.
_MAGNITUDE_RE = re.compile(
    r"(?<![\w.])(?:[$£€¥]\s?)?\d+(?:[.,]\d+)*\s?(?:million|billion|trillion|thousand)\b"
    r"|(?<![\w.])[$£€¥]\s?\d+(?:[.,]\d+)*\s?(?:bn|mn|m|k)\b",
    re.IGNORECASE,
)
# A number standing alone: not a group of a longer spaced or hyphenated digit sequence (phone,
# card, ID), not part of a range or date ("2024-2025", "15/03").
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?<!\d[ -])([$£€¥])?(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|[-–/ ]\d)"
)
_QUOTE_RES = (
    re.compile(r"“([^”\n]{1,2000})”"),
    re.compile(r'"([^"\n]{1,2000})"'),
    re.compile(r"(?<!\w)‘([^’\n]{1,2000}?)’(?!\w)"),
    re.compile(r"«([^»\n]{1,2000})»"),
)
_QUOTE_MIN_WORDS = 4  # shorter quoted text is usually a name, a title or scare quotes
_ATTRIBUTION_RE = re.compile(
    r"\b(?:according\s+to|said|says|told|tells|reported|reports|stated|states|announced|"
    r"wrote|writes|cited|citing|quoted|estimated\s+by|data\s+from|figures\s+from|"
    r"published\s+by|sources?\s*:)"
    r"|https?://\S+|\bwww\.\S+"
    r"|\[\d+(?:\s*[,–-]\s*\d+)*\]"  # [1], [2, 3], [4-6]
    r"|\[[^\]\n]{1,80}\d{4}[a-z]?\]"  # [Smith 2020]
    r"|\([^()\n]{1,80},?\s\d{4}[a-z]?\)",  # (Smith, 2020), (ONS, 2023)
    re.IGNORECASE,
)


def _is_statistic_number(match: re.Match[str]) -> bool:
    currency, integer = match.group(1), match.group(2)
    value = int(integer.replace(",", ""))
    if value < 1000:
        return False
    if "," not in integer and len(integer) > 7 and not currency:
        return False  # a long bare run of digits is an identifier, not a statistic
    # A bare four-digit number between 1000 and 2199 is almost always a year.
    return bool(currency) or "," in integer or not (len(integer) == 4 and value < 2200)


# --------------------------------------------------------------------------- the check


def check_ethics(text: str, *, rules: RuleSet | Mapping[str, Any] | CompiledRules) -> EthicsResult:
    """Every rule hit in ``text``, sorted by position; no side effects.

    ``rules`` is a stored config (validated and compiled here, cached by content; raises
    :class:`InvalidRules`) or the result of :func:`compile_rules`.
    """
    compiled = rules if isinstance(rules, CompiledRules) else compile_rules(rules)
    started = time.perf_counter()
    hits: list[EthicsHit] = []
    timings: dict[str, float] = {}
    truncated = False

    def timed(kind: str, fn: Callable[[], tuple[list[EthicsHit], bool]]) -> None:
        nonlocal truncated
        t0 = time.perf_counter()
        found, cut = fn()
        hits.extend(found)
        truncated = truncated or cut
        timings[f"{kind}_ms"] = round((time.perf_counter() - t0) * 1000, 3)

    timed("blocked_term", lambda: _run_matchers(text, compiled.blocked_terms, "blocked_term"))
    timed("regex", lambda: _run_matchers(text, compiled.regexes, "regex"))
    timed("pii", lambda: _pii_hits(text, compiled.pii))
    timed("disclosure", lambda: (_disclosure_hits(text, compiled.required_disclosures), False))
    timed("claim", lambda: (_claim_hits(text, compiled.claims), False))

    # Position order for the page; a missing disclosure (no span) goes last.
    hits.sort(key=lambda h: (h["start"] is None, h["start"] or 0, h["end"] or 0, h["rule_kind"]))
    counts = dict.fromkeys(RULE_KINDS, 0)
    for hit in hits:
        counts[hit["rule_kind"]] += 1
    return {
        "engine": ENGINE,
        "engine_version": ENGINE_VERSION,
        "hits": hits,
        "counts": counts,
        "truncated": truncated,
        "timings": {
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
            "blocked_term_ms": timings["blocked_term_ms"],
            "regex_ms": timings["regex_ms"],
            "pii_ms": timings["pii_ms"],
            "disclosure_ms": timings["disclosure_ms"],
            "claim_ms": timings["claim_ms"],
        },
    }


def _run_matchers(
    text: str, matchers: Iterable[_Matcher], kind: RuleKind
) -> tuple[list[EthicsHit], bool]:
    hits: list[EthicsHit] = []
    truncated = False
    skeleton: str | None = None
    for matcher in matchers:
        if matcher.skeletons:
            skeleton = skeleton if skeleton is not None else _skeleton(text)
            if not any(all(w in skeleton for w in words) for words in matcher.skeletons):
                continue
        count = 0
        for match in matcher.regex.finditer(text):
            if match.end() == match.start():
                continue  # an empty match points at nothing
            if count == MAX_HITS_PER_RULE:
                truncated = True
                break
            count += 1
            hits.append(
                {
                    "rule_kind": kind,
                    "rule": matcher.rule,
                    "start": match.start(),
                    "end": match.end(),
                    "text": match.group(),
                    "message": matcher.message,
                    "severity": matcher.severity,
                }
            )
    return hits, truncated


def _pii_hit(detector: str, match: re.Match[str], message: str, shown: str) -> EthicsHit:
    return {
        "rule_kind": "pii",
        "rule": detector,
        "start": match.start(),
        "end": match.end(),
        "text": shown,
        "message": message,
        "severity": DEFAULT_SEVERITY["pii"],
    }


def _pii_hits(text: str, detectors: frozenset[str]) -> tuple[list[EthicsHit], bool]:
    hits: list[EthicsHit] = []
    card_spans: list[tuple[int, int]] = []
    if "card" in detectors:
        for match in _CARD_CANDIDATE_RE.finditer(text):
            if _is_card(match.group()):
                card_spans.append(match.span())
                hits.append(
                    _pii_hit("card", match, "Payment card number", _mask_card(match.group()))
                )
    if "email" in detectors:
        for match in _EMAIL_RE.finditer(text):
            hits.append(_pii_hit("email", match, "E-mail address", match.group()))
    if "phone" in detectors:
        for match in _PHONE_CANDIDATE_RE.finditer(text):
            inside_card = any(s <= match.start() < e for s, e in card_spans)
            if not inside_card and _is_phone(match.group()):
                hits.append(_pii_hit("phone", match, "Phone number", match.group()))
    truncated = len(hits) > 3 * MAX_HITS_PER_RULE
    return hits[: 3 * MAX_HITS_PER_RULE], truncated


def _disclosure_hits(text: str, disclosures: tuple[str, ...]) -> list[EthicsHit]:
    if not disclosures:
        return []
    normalised = _normalise_phrase(text)
    if any(_normalise_phrase(d) in normalised for d in disclosures):
        return []
    wanted = " / ".join(repr(d) for d in disclosures)
    return [
        {
            "rule_kind": "disclosure",
            "rule": disclosures[0] if len(disclosures) == 1 else "any of required_disclosures",
            "start": None,
            "end": None,
            "text": "",
            "message": f"Required disclosure missing: {wanted}",
            "severity": DEFAULT_SEVERITY["disclosure"],
        }
    ]


def _claim_hits(text: str, detectors: frozenset[str]) -> list[EthicsHit]:
    if not detectors:
        return []
    sents = sentences(text)
    # Per sentence index: the triggers found, in the order percentage, statistic, quotation.
    triggers: dict[int, list[tuple[str, str]]] = {}
    # A quotation may span several sentences; its hit covers all of them.
    quote_groups: dict[int, int] = {}

    def sentence_at(pos: int) -> int | None:
        for i, s in enumerate(sents):
            if s.start <= pos < s.end:
                return i
        return None

    for i, sent in enumerate(sents):
        if "percentages" in detectors:
            for m in _PERCENT_RE.finditer(sent.text):
                triggers.setdefault(i, []).append(("percentage", m.group()))
        if "statistics" in detectors:
            magnitudes = list(_MAGNITUDE_RE.finditer(sent.text))
            found = [m.group().strip() for m in magnitudes]
            # A number already counted as part of a percentage or "2.5 million" is not
            # counted again on its own.
            taken = [m.span() for m in _PERCENT_RE.finditer(sent.text)]
            taken += [m.span() for m in magnitudes]
            for m in _NUMBER_RE.finditer(sent.text):
                inside = any(s <= m.start() < e for s, e in taken)
                if not inside and _is_statistic_number(m):
                    found.append(m.group())
            for item in dict.fromkeys(found):
                triggers.setdefault(i, []).append(("statistic", item))
    if "quotations" in detectors:
        for quote_re in _QUOTE_RES:
            for m in quote_re.finditer(text):
                inner = m.group(1)
                if len(re.findall(r"[^\W_]+", inner)) < _QUOTE_MIN_WORDS:
                    continue
                first, last = sentence_at(m.start()), sentence_at(m.end() - 1)
                if first is None or last is None:
                    continue
                snippet = inner if len(inner) <= 60 else inner[:57] + "..."
                triggers.setdefault(first, []).append(("quotation", snippet))
                quote_groups[first] = max(quote_groups.get(first, first), last)

    hits: list[EthicsHit] = []
    for i in sorted(triggers):
        last = quote_groups.get(i, i)
        start, end = sents[i].start, sents[last].end
        if _ATTRIBUTION_RE.search(text, start, end):
            continue
        found = triggers[i]
        described = "; ".join(f"{kind} {value!r}" for kind, value in found)
        hits.append(
            {
                "rule_kind": "claim",
                "rule": found[0][0],
                "start": start,
                "end": end,
                "text": text[start:end],
                "message": f"Claim without a source ({described})",
                "severity": DEFAULT_SEVERITY["claim"],
            }
        )
    return hits
