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
from review.checks.text import sentences

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
    """
    words = term_words(term)
    body = _PHRASE_GAP.join("".join(_letter_class(ch) for ch in word) for word in words)
    plural = r"(?:[e3]?[s$5])?"
    # Whole word: no letter or digit on either side, nor "@"/"$" (letters in disguise, so
    # "$hit" is not the word "hit"). Underscores and "*" are markup ("_word_", "**word**").
    return rf"(?<![^\W_])(?<![@$]){body}{plural}(?![^\W_])(?![@$])"


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
            tuple(_skeleton(word) for word in term_words(spelling)) for spelling in spellings
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
