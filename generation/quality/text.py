"""Reading specifics out of English prose: words and their stems, numbers with their unit,
dates, names, quotations, each with its character span.

Rules, not a tagger: a brief is one or two sentences and a draft a few paragraphs, so a
capitalised run of words is a name, a figure is a number with what follows it as its unit. The
rules were written against news briefs; where they are unsure (a capitalised word that opens a
sentence) they say nothing rather than flag it.
"""

from __future__ import annotations

import functools
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]")


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOPWORDS = _set(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself new says said say will may might must shall upon via per its it's s t"""
)
# Words of the instruction around a brief ("Write a short news report: ..."), not of its story.
INSTRUCTION_WORDS = _set(
    """write short news report article brief story paragraph paragraphs words word following
    post ad copy summary summarise summarize describe draft piece please create generate
    compose headline lede title topic tone audience segment announce announcing"""
)
_MONTH_NAMES = "january february march april may june july august september october november"
MONTHS = {m: i + 1 for i, m in enumerate([*_MONTH_NAMES.split(), "december"])}
MONTHS.update({m[:3]: v for m, v in list(MONTHS.items())} | {"sept": 9})
WEEKDAYS = _set("monday tuesday wednesday thursday friday saturday sunday")
# Words that precede a name as its title: not needed for the name to be the brief's.
TITLES = _set(
    """mr mrs ms dr prof mayor president minister prime senator governor chief ceo director
    officer secretary king queen judge general councillor councilman councilwoman spokesperson
    spokesman spokeswoman chancellor chairman chairwoman chair commissioner inspector sir lady
    lord saint st captain"""
)
NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "dozen": 12, "dozens": 24, "hundreds": 200, "thousands": 2000,
}  # fmt: skip
SCALES = {
    "thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9,
    "b": 1e9, "trillion": 1e12, "tn": 1e12,
}  # fmt: skip
CURRENCY_WORDS = _set(
    "dollar dollars euro euros pound pounds yen yuan rupees rupee francs franc usd eur gbp"
)
PERCENT_WORDS = ("percentage points", "percentage point", "per cent", "percent", "%")
_SUFFIXES = (
    ("ational", "ate"), ("ations", ""), ("ation", ""), ("ments", ""), ("ment", ""),
    ("ings", ""), ("ing", ""), ("ies", "y"), ("ied", "y"), ("ers", ""), ("er", ""),
    ("ed", ""), ("es", ""), ("s", ""), ("ly", ""), ("al", ""),
)  # fmt: skip


def stem(word: str) -> str:
    """A crude English stem, enough to match "libraries" with "library", "approved" with
    "approval", "raised" with "raise"."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'-")
    for suffix, repl in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


@dataclass
class Span:
    """One specific found in a text: ``kind`` number | date | name | quote."""

    kind: str
    text: str
    start: int
    end: int
    key: str  # what two mentions of the same specific share ("4200000", "michael martinez")
    value: float | None = None  # numbers
    unit: str = ""  # numbers: currency | percent | the stem of the counted noun
    words: list[str] = field(default_factory=list)  # names: stems of the non-title words


def words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def word_stems(text: str) -> set[str]:
    return {stem(w) for w, _, _ in words(text)}


def normalise(text: str) -> str:
    """Lowercase words joined by single spaces: quotes and passages compare on this."""
    return " ".join(w.lower().replace("’", "'") for w, _, _ in words(text))


# -- numbers ------------------------------------------------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = "|".join(sorted(SCALES, key=len, reverse=True))
_PCT = "|".join(re.escape(p) for p in PERCENT_WORDS)
NUMBER_RE = re.compile(
    rf"(?P<cur>[$€£¥])?\s?(?P<num>{_NUM})(?![\d])(?:\s?(?P<scale>{_SCALE})\b)?"
    rf"(?:\s?(?P<pct>{_PCT}))?(?![A-Za-z\d])",
    re.IGNORECASE,
)
_WORDNUM = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
WORD_NUMBER_RE = re.compile(
    rf"\b(?P<half>half a (?:percentage point|percent|per cent))\b|"
    rf"\b(?P<word>(?:{_WORDNUM})(?:[- ](?:{_WORDNUM}))?)(?![A-Za-z])(?:\s(?P<scale>{_SCALE})\b)?"
    rf"(?:\s(?P<pct>{_PCT}))?",
    re.IGNORECASE,
)
YEAR_RE = re.compile(r"^(1[6-9]\d\d|20\d\d)$")


def _unit_after(text: str, end: int) -> str:
    """The stem of the first content word after a figure ("two villages" -> "villag")."""
    for w, _, _ in words(text[end : end + 40])[:3]:
        lw = w.lower()
        if lw in CURRENCY_WORDS:
            return "currency"
        if lw in STOPWORDS or lw in SCALES:
            continue
        return stem(lw)
    return ""


def _number_key(value: float) -> str:
    return f"{value:.6g}"


def numbers(text: str) -> list[Span]:
    """Figures with value and unit: "$4.2 million" (4200000, currency), "20%" (20, percent),
    "two villages" (2, "villag"), "half a percentage point" (0.5, percent); years are dates."""
    found: list[Span] = []
    for m in NUMBER_RE.finditer(text):
        raw = m.group("num")
        # "1st", "3-year-old": a digit run glued to letters is not a figure of its own.
        if m.start("num") > 0 and text[m.start("num") - 1].isalpha():
            continue
        value = float(raw.replace(",", ""))
        scale = (m.group("scale") or "").lower()
        if scale:
            value *= SCALES[scale]
        pct = m.group("pct")
        if m.group("cur"):
            unit = "currency"
        elif pct:
            unit = "percent"
        else:
            unit = _unit_after(text, m.end())
        kind = "number"
        if YEAR_RE.match(raw) and not scale and not pct and not m.group("cur"):
            kind = "date"
        found.append(
            Span(kind, m.group().strip(), m.start(), m.end(), _number_key(value), value, unit)
        )
    taken = [(s.start, s.end) for s in found]
    for m in WORD_NUMBER_RE.finditer(text):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue
        if m.group("half"):
            found.append(Span("number", m.group(), m.start(), m.end(), "0.5", 0.5, "percent"))
            continue
        parts = re.split(r"[- ]", m.group("word").lower())
        value = float(sum(NUMBER_WORDS[p] for p in parts if p in NUMBER_WORDS))
        if "hundred" in parts and parts[0] != "hundred":
            value = NUMBER_WORDS[parts[0]] * 100.0
        scale = (m.group("scale") or "").lower()
        if scale:
            value *= SCALES[scale]
        unit = "percent" if m.group("pct") else _unit_after(text, m.end())
        found.append(Span("number", m.group(), m.start(), m.end(), _number_key(value), value, unit))
    return sorted(found, key=lambda s: s.start)


# -- dates ------------------------------------------------------------------------------------

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
DATE_RE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<m1>{_MONTH})\b\.?|"
    rf"(?P<m2>{_MONTH})\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b|"
    rf"(?P<wd>monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b)",
    re.IGNORECASE,
)


def dates(text: str) -> list[Span]:
    """Calendar days and weekdays ("March 3", "3 March", "on Monday"); years are in
    :func:`numbers`. A bare month ("in May") is not a specific: "may" is too often a verb."""
    found = []
    for m in DATE_RE.finditer(text):
        if m.group("wd"):
            key = m.group("wd").lower()
        else:
            month = MONTHS[(m.group("m1") or m.group("m2")).lower().rstrip(".")]
            key = f"{month}-{int(m.group('d1') or m.group('d2'))}"
        found.append(Span("date", m.group(), m.start(), m.end(), key))
    return found


# -- names ------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?:;\n\"“”]\s*$")
_CONNECTORS = frozenset({"of", "de", "van", "von", "der", "la", "du", "&"})
# A capitalised word opening a sentence is a name when one of these follows it ("Ruiz said").
SPEECH_VERBS = _set(
    """said says told added announced criticised criticized warned argued claimed insisted
    denied confirmed stated explained noted wrote backed praised welcomed rejected called urged
    replied admitted promised"""
)


def _sentence_initial(text: str, start: int) -> bool:
    before = text[max(0, start - 4) : start]
    return start == 0 or not before.strip() or bool(_SENTENCE_END.search(before))


# Common subjects that open a news sentence before a verb of saying: not names.
GENERIC_SUBJECTS = _set(
    """police officials residents critics analysts experts witnesses authorities locals
    organisers organizers campaigners protesters investigators researchers scientists doctors
    teachers parents firefighters neighbours neighbors staff everyone nobody someone many others
    some most both all officers lawmakers ministers economists unions farmers workers voters
    he she they it we i you one this that these those"""
)


COMMON_WORDS_FILE = Path(__file__).with_name("common_words.txt.gz")


@functools.cache
def common_words() -> frozenset[str]:
    """English words a dictionary writes in lower case (63,875: the all-lowercase entries,
    possessives left out, of SCOWL's ``american-english`` list as Debian's ``wamerican``
    2020.12.07 ships it; SCOWL's licence allows copying with its notice, kept in
    ``common_words.NOTICE``). A capitalised word opening a sentence that is one of these
    ("Nurses", "Commuters", "Officials") is read as that word, not as a name."""
    with gzip.open(COMMON_WORDS_FILE, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip() for line in handle if line.strip())


def is_common_word(word: str) -> bool:
    return word.lower().replace("’", "'") in common_words()


def _speech_follows(text: str, end: int) -> bool:
    following = WORD_RE.match(text, end + 1) if text[end : end + 1] == " " else None
    return bool(following) and following.group().lower() in SPEECH_VERBS


def names(text: str) -> list[Span]:
    """Capitalised runs of words ("Mayor Michael Martinez", "Bank of England", "Tesco").

    A run's leading function words ("The", "In") are dropped, months and weekdays are dates. A
    single capitalised word that opens a sentence is a name only where the same word is
    capitalised inside a sentence elsewhere in ``text``, or where a verb of saying follows it
    ("Ruiz said") and it is no common word of the dictionary (``common_words``: "Nurses said"
    is not a name; "Baker said" is one only when "Baker" is capitalised elsewhere too)."""
    tokens = words(text)
    inner_caps = {
        w for w, s, _ in tokens if w[0].isupper() and not _sentence_initial(text, s) and w != "I"
    }
    runs: list[list[tuple[str, int, int]]] = []
    current: list[tuple[str, int, int]] = []
    for i, (w, s, e) in enumerate(tokens):
        cap = w[0].isupper() and w != "I"
        gap_ok = not current or not re.search(r"[.!?;:,\n\"“”()]", text[current[-1][2] : s])
        connector = (
            w.lower() in _CONNECTORS
            and current
            and i + 1 < len(tokens)
            and tokens[i + 1][0][0].isupper()
        )
        if (cap or connector) and gap_ok:
            current.append((w, s, e))
            continue
        if current:
            runs.append(current)
        current = [(w, s, e)] if cap else []
    if current:
        runs.append(current)
    found = []
    for run in runs:
        while run and (
            run[0][0].lower() in STOPWORDS
            or run[0][0].lower() in INSTRUCTION_WORDS
            or run[0][0].lower() in _CONNECTORS
        ):
            run = run[1:]
        while run and run[-1][0].lower() in _CONNECTORS:
            run = run[:-1]
        if not run:
            continue
        lowered = [w.lower().replace("’", "'") for w, _, _ in run]
        if all(w in MONTHS or w in WEEKDAYS for w in lowered):
            continue
        if (
            len(run) == 1
            and _sentence_initial(text, run[0][1])
            and run[0][0] not in inner_caps
            and (
                run[0][0].lower() in GENERIC_SUBJECTS
                or is_common_word(run[0][0])
                or not _speech_follows(text, run[0][2])
            )
        ):
            continue
        key_words = [stem(w) for w in lowered if w not in TITLES and w not in _CONNECTORS]
        if not key_words:
            continue
        start, end = run[0][1], run[-1][2]
        found.append(Span("name", text[start:end], start, end, " ".join(lowered), words=key_words))
    return found


# -- quotations ---------------------------------------------------------------------------------

QUOTE_RE = re.compile(r"[\"“]([^\"“”\n]{3,400}?)[\"”]")


def quotes(text: str) -> list[Span]:
    """Quoted passages of three words or more (a quoted single word is a term, not a quote)."""
    found = []
    for m in QUOTE_RE.finditer(text):
        inner = m.group(1)
        if len(words(inner)) < 3:
            continue
        found.append(Span("quote", m.group(), m.start(), m.end(), normalise(inner)))
    return found


def specifics(text: str) -> list[Span]:
    """Every number, date, name and quotation of ``text``, in order. Names inside a quotation
    belong to the quotation; a number inside a date belongs to the date."""
    quoted = quotes(text)
    day_spans = dates(text)
    out: list[Span] = list(quoted) + list(day_spans)

    def inside(span: Span, others: list[Span]) -> bool:
        return any(o.start <= span.start and span.end <= o.end for o in others)

    for span in numbers(text):
        if not inside(span, quoted) and not any(
            d.start < span.end and span.start < d.end for d in day_spans
        ):
            out.append(span)
    for span in names(text):
        if not inside(span, quoted):
            out.append(span)
    return sorted(out, key=lambda s: s.start)
