"""Claims that need a source: percentages, statistics, quotations and "research shows"
phrasing, in English and Chinese, each reported unless its sentence names a source.

Nothing here touches the ORM.
"""

from __future__ import annotations

import re

from review.checks.ethics.rules import DEFAULT_SEVERITY, EthicsHit
from review.checks.text import HAN_OR_OTHER_RE, HAN_RE, WORD_NOT_HAN, segment_han, sentences

# A letter or digit that is not a Han character (see matchers): numbers inside running Chinese
# text are numbers. Patterns open with a lookahead for their first character (faster).
_NW = WORD_NOT_HAN

_PERCENT_RE = re.compile(
    rf"(?=\d)(?<!{_NW})(?<!\.)\d+(?:[.,]\d+)?\s?(?:[%％]|per\s?cent\b|percent\b|pct\b"
    r"|percentage points?\b|个百分点)"
    r"|百分之[零〇一二两三四五六七八九十百千点\d.]+",
    re.IGNORECASE,
)
# "2.5 million", "3 billion"; the short suffixes only after a currency sign ("£5m", "$3bn"),
# since a bare "5m" or "10k" is as often metres or a race.
_AMOUNT_START = rf"(?=[$£€¥\d])(?<!{_NW})(?<!\.)"
_MAGNITUDE_RE = re.compile(
    rf"{_AMOUNT_START}(?:[$£€¥]\s?)?\d+(?:[.,]\d+)*\s?(?:million|billion|trillion|thousand)\b"
    rf"|{_AMOUNT_START}[$£€¥]\s?\d+(?:[.,]\d+)*\s?(?:bn|mn|m|k)\b"
    # Chinese magnitudes: "300万", "2.5亿", "1.2万亿".
    rf"|{_AMOUNT_START}(?:[$£€¥]\s?)?\d+(?:[.,]\d+)*\s?(?:万亿|千万|百万|亿|万)",
    re.IGNORECASE,
)
# A number standing alone: not a group of a longer spaced or hyphenated digit sequence (phone,
# card, ID), not part of a range or date ("2024-2025", "15/03").
_NUMBER_RE = re.compile(
    rf"(?=[$£€¥\d])(?<!{_NW})(?<!\.)(?<!\d[ -])([$£€¥])?(\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?"
    rf"(?!{_NW}|[-–/ ]\d)"
)
# Every match of the three patterns above holds a digit or opens with 百分之: a sentence
# without either is skipped before running them.
_FIGURE_START_RE = re.compile(r"\d|百分之")
_QUOTE_RES = (
    re.compile(r"“([^”\n]{1,2000})”"),
    re.compile(r'"([^"\n]{1,2000})"'),
    re.compile(r"(?<!\w)‘([^’\n]{1,2000}?)’(?!\w)"),
    re.compile(r"«([^»\n]{1,2000})»"),
    re.compile(r"「([^」\n]{1,2000})」"),
    re.compile(r"『([^』\n]{1,2000})』"),
)
_QUOTE_MIN_WORDS = 4  # shorter quoted text is usually a name, a title or scare quotes
_ATTRIBUTION_RE = re.compile(
    r"\b(?:according\s+to|said|says|told|tells|reported|reports|stated|states|announced|"
    r"wrote|writes|cited|citing|quoted|estimated\s+by|data\s+from|figures\s+from|"
    r"published\s+by|sources?\s*:)"
    r"|https?://\S+|\bwww\.\S+"
    r"|\[\d+(?:\s*[,–-]\s*\d+)*\]"  # [1], [2, 3], [4-6]
    r"|\[[^\]\n]{1,80}\d{4}[a-z]?\]"  # [Smith 2020]
    r"|\([^()\n]{1,80},?\s\d{4}[a-z]?\)"  # (Smith, 2020), (ONS, 2023)
    # Chinese: 根据…, 据新华社报道 / 据了解 (not the 据 of 数据, 证据), 来源：, 援引, …表示,
    # …指出, …称 (not 称为), …说：
    r"|根据|(?<![数证依占收单票])据"
    r"|(?:资料|数据|信息)?来源\s*[:：]|出处\s*[:：]|引自|援引|引述|报道|写道|透露|宣布|表示|指出"
    r"|称(?![为作之号])|说(?=\s*[，,：:“「])",
    re.IGNORECASE,
)
# "Research shows" without naming the research (the research claim detector). Chinese
# phrasing; masked before the attribution test, since its own 指出/显示 are no attribution.
_RESEARCH_RE = re.compile(
    r"(?:有|一项|多项|最新|相关)?(?:研究|调查|实验|统计|数据|科学家|专家|报告|研究人员)"
    r"(?:表明|显示|发现|证实|证明|指出|认为)"
)


def _quote_words(inner: str) -> int:
    """Words of a quotation: letter/digit runs, and jieba words within Han runs."""
    count = 0
    for run in re.findall(r"[^\W_]+", inner):
        if HAN_RE.search(run) is None:
            count += 1
        else:
            count += sum(
                len(segment_han(part)) if HAN_RE.match(part) else 1
                for part in HAN_OR_OTHER_RE.findall(run)
            )
    return count


def _is_statistic_number(match: re.Match[str]) -> bool:
    currency, integer = match.group(1), match.group(2)
    value = int(integer.replace(",", ""))
    if value < 1000:
        return False
    if "," not in integer and len(integer) > 7 and not currency:
        return False  # a long bare run of digits is an identifier, not a statistic
    # A bare four-digit number between 1000 and 2199 is almost always a year.
    return bool(currency) or "," in integer or not (len(integer) == 4 and value < 2200)


_FIGURE_RE = re.compile(r"\d+(?:[.,]\d+)*")


def _figures(text: str) -> set[str]:
    """The numbers in ``text``, normalised ("1,200" and "1200" are one figure)."""
    return {m.group().replace(",", "") for m in _FIGURE_RE.finditer(text)}


def _words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def _wraps_everything(text: str, match: re.Match[str]) -> bool:
    """The quotation is the whole text: a model that puts its copy in quotes (an advert, a
    slogan) quotes nobody, so there is no one to attribute it to."""
    return match.start() == len(text) - len(text.lstrip()) and match.end() == len(text.rstrip())


def claim_hits(text: str, detectors: frozenset[str], editor_text: str = "") -> list[EthicsHit]:
    """``editor_text`` is what people wrote (the brief, the template's variables, words an
    editor added): a figure or quotation found there is theirs, not a claim the model made."""
    if not detectors:
        return []
    own_figures = _figures(editor_text)
    own_words = f" {_words(editor_text)} "

    def editors_figure(value: str) -> bool:
        found = _figures(value)
        return bool(found) and found <= own_figures

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

    figure_detectors = "percentages" in detectors or "statistics" in detectors
    for i, sent in enumerate(sents if figure_detectors else ()):
        if _FIGURE_START_RE.search(sent.text) is None:
            continue  # no number: no percentage, magnitude or statistic
        percents = list(_PERCENT_RE.finditer(sent.text))
        if "percentages" in detectors:
            for m in percents:
                if not editors_figure(m.group()):
                    triggers.setdefault(i, []).append(("percentage", m.group()))
        if "statistics" in detectors:
            magnitudes = list(_MAGNITUDE_RE.finditer(sent.text))
            found = [m.group().strip() for m in magnitudes]
            # A number already counted as part of a percentage or "2.5 million" is not
            # counted again on its own.
            taken = [m.span() for m in percents]
            taken += [m.span() for m in magnitudes]
            for m in _NUMBER_RE.finditer(sent.text):
                inside = any(s <= m.start() < e for s, e in taken)
                if not inside and _is_statistic_number(m):
                    found.append(m.group())
            for item in dict.fromkeys(found):
                if not editors_figure(item):
                    triggers.setdefault(i, []).append(("statistic", item))
    # Research claims: their own words are masked before the attribution test.
    masked = text
    if "research" in detectors:
        for m in _RESEARCH_RE.finditer(text):
            at = sentence_at(m.start())
            if at is not None:
                triggers.setdefault(at, []).append(("research", m.group()))
                masked = masked[: m.start()] + " " * (m.end() - m.start()) + masked[m.end() :]
    if "quotations" in detectors:
        for quote_re in _QUOTE_RES:
            for m in quote_re.finditer(text):
                inner = m.group(1)
                if _quote_words(inner) < _QUOTE_MIN_WORDS:
                    continue
                if _wraps_everything(text, m) or f" {_words(inner)} " in own_words:
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
        if _ATTRIBUTION_RE.search(masked, start, end):
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
