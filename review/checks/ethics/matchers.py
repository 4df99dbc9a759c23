"""The matchers: rules compiled once, the detectors (blocked terms, regexes, personal
data, disclosures, claims) and :func:`check_ethics`, which reports every hit with its span.

Nothing here touches the ORM.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from review.checks.ethics.claims import claim_hits
from review.checks.ethics.redos import flags_value
from review.checks.ethics.rules import (
    CLAIM_DETECTORS,
    DEFAULT_SEVERITY,
    ENGINE,
    ENGINE_VERSION,
    MAX_HITS_PER_RULE,
    RULE_KINDS,
    EthicsHit,
    EthicsResult,
    InvalidRules,
    RuleKind,
    RuleSet,
    Severity,
    normalise_phrase,
    term_words,
    validate_rules,
)
from review.checks.text import HAN, HAN_OR_OTHER_RE, HAN_RE, WORD_NOT_HAN

# Boundaries below use a letter or digit that is not a Han character where they used ``\w``:
# Chinese has no spaces between words, so a number or a term inside running Chinese text
# ("请拨打13812345678联系") must still match. On text without Han it is exactly ``\w``.
_NW = WORD_NOT_HAN
# The patterns below open with a lookahead for their first character, so the engine skips
# other positions before trying the lookbehinds (3x faster on Chinese text, same matches).

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


def _letter_class(ch: str) -> str:
    subs = _LEET.get(ch.casefold())
    if subs is None:
        return re.escape(ch)
    return "[" + "".join(re.escape(c) for c in subs) + "]"


def _term_pattern(term: str) -> str:
    """Whole-word, case-insensitive pattern for ``term`` with automatic variants.

    Variants: any case, a plural "-s"/"-es", words joined by nothing/space/hyphen/punctuation,
    and the leetspeak substitutions in ``_LEET``. Whole word: "ass" does not match "class".
    Chinese has no word boundaries to test: a term's Han characters match inside running text,
    each may be separated by up to three spaces or punctuation marks ("傻 逼", "傻*逼"), and
    the Han characters around an English term do not stop it matching.
    """
    words = _term_parts(term)
    body = _PHRASE_GAP.join("".join(_letter_class(ch) for ch in word) for word in words)
    han_start, han_end = bool(HAN_RE.match(words[0][0])), bool(HAN_RE.match(words[-1][-1]))
    plural = "" if han_end else r"(?:[e3]?[s$5])?"
    # Whole word: no letter or digit on either side, nor "@"/"$" (letters in disguise, so
    # "$hit" is not the word "hit"). Underscores and "*" are markup ("_word_", "**word**").
    before = "" if han_start else rf"(?<![^\W_{HAN}])(?<![@$])"
    after = "" if han_end else rf"(?![^\W_{HAN}])(?![@$])"
    return f"{before}{body}{plural}{after}"


def _term_parts(term: str) -> list[str]:
    """The words of a term, each Han character a word of its own."""
    return [part for word in term_words(term) for part in HAN_OR_OTHER_RE.findall(word)]


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
            tuple(_skeleton(word) for word in _term_parts(spelling)) for spelling in spellings
        )
        terms.append(_Matcher(term, regex, message, severity, skeletons))
    regexes = tuple(
        _Matcher(
            item["name"],
            re.compile(item["pattern"], flags_value(item.get("flags", ""))),
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
    rf"(?=[A-Za-z0-9._%+-])(?<!{_NW})(?<![.%+-])"
    rf"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{{2,24}}(?!{_NW}|-)"
)

# Phone candidates: optional +CC, optional (area), then 1-5 digit groups joined by one space,
# dot or hyphen. _is_phone decides; the candidate itself is cheap and bounded.
_PHONE_CANDIDATE_RE = re.compile(
    rf"(?=[+(\d])(?<!{_NW})(?<![.,/+-])"
    r"(?:\+\d{1,3}[ \u00a0.-]?)?"
    r"(?:\(\d{1,5}\)[ \u00a0.-]?)?"
    r"\d{1,11}(?:[ \u00a0.-]\d{1,8}){0,5}"
    rf"(?!{_NW}|[.,]\d)"
)
_US_PHONE_RE = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")
# Chinese mobiles: 1[3-9] and nine digits, bare or as 3-4-4 groups, optionally after 86.
_CN_MOBILE_RE = re.compile(r"(?:86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}")
# Chinese landlines: a trunk-0 area code of 3-4 digits (in brackets or not), then 7-8 digits.
_CN_LANDLINE_RE = re.compile(r"(?:0\d{2,3}|\(0\d{2,3}\))[ -]?\d{3,4}[ -]?\d{4}")

# 13-19 digits, optionally grouped by single spaces or hyphens.
_CARD_CANDIDATE_RE = re.compile(
    rf"(?=\d)(?<!{_NW})(?<![.,-])\d(?:[ -]?\d){{12,18}}(?!{_NW}|[.,-]\d)"
)

# Chinese resident identity card numbers: region (6 digits), birth date (8), sequence (3) and
# an ISO 7064 MOD 11-2 check character (a digit or X); the date and the check are tested.
_CN_ID_CANDIDATE_RE = re.compile(
    rf"(?=\d)(?<!{_NW})(?<![.,-])"
    r"\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
    rf"(?!{_NW}|[.,-]?\d)"
)
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _cn_id_ok(candidate: str) -> bool:
    total = sum(int(d) * w for d, w in zip(candidate[:17], _CN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == candidate[17].upper()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_phone(candidate: str) -> bool:
    digits = _digits(candidate)
    if candidate.startswith("+"):
        # E.164 allows at most 15 digits; fewer than 8 with a country code is not a number.
        return 8 <= len(digits) <= 15
    if _US_PHONE_RE.fullmatch(candidate):
        return True
    if _CN_MOBILE_RE.fullmatch(candidate) or _CN_LANDLINE_RE.fullmatch(candidate):
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


def _mask_id(candidate: str) -> str:
    return "•" * (len(candidate) - 4) + candidate[-4:]


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


# --------------------------------------------------------------------------- the check


def check_ethics(
    text: str,
    *,
    rules: RuleSet | Mapping[str, Any] | CompiledRules,
    editor_text: str = "",
) -> EthicsResult:
    """Every rule hit in ``text``, sorted by position; no side effects.

    ``rules`` is a stored config (validated and compiled here, cached by content; raises
    :class:`InvalidRules`) or the result of :func:`compile_rules`. ``editor_text`` is what
    people wrote (the brief, the template's variables, the words an editor added): a figure or
    a quotation found there is the editor's own and is not a claim the model made up.
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
    timed("claim", lambda: (claim_hits(text, compiled.claims, editor_text), False))

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
    if "id_number" in detectors:
        for match in _CN_ID_CANDIDATE_RE.finditer(text):
            if _cn_id_ok(match.group()):
                card_spans.append(match.span())
                hits.append(
                    _pii_hit("id_number", match, "Identity card number", _mask_id(match.group()))
                )
    if "card" in detectors:
        for match in _CARD_CANDIDATE_RE.finditer(text):
            if any(s <= match.start() < e for s, e in card_spans):
                continue  # an identity card number, reported as such
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
    normalised = normalise_phrase(text)
    if any(normalise_phrase(d) in normalised for d in disclosures):
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
