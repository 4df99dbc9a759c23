"""What a draft owes its brief: the brief's key terms covered or missing, and the specifics
(numbers, dates, names, quotations) the draft states that neither the brief nor a source gave.

Public, reused outside the studio's draft signals (evaluation, grounding):
``brief_terms(brief, variables)``, ``coverage(text, terms)``,
``unsupported_specifics(text, brief, sources=None)`` and ``agreement(lists)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from generation.quality import text as tx


class Term(TypedDict):
    text: str  # as the brief writes it
    kind: str  # word | name | number | date
    key: str  # stem, name key, or number value


class Specific(TypedDict, total=False):
    kind: str  # number | date | name | quote
    text: str
    start: int
    end: int
    status: str  # verify | contradiction
    reason: str
    contradicts: str  # the brief's figure it contradicts
    others: int  # other candidates of the job stating the same specific (``agreement``)


def brief_terms(brief: str, variables: Mapping[str, Any] | None = None) -> list[Term]:
    """The key terms of a brief: its names, numbers and dates, then its content words (not
    stopwords nor the instruction's words: "Write a short news report:"), each once.

    ``variables`` (a template's values) are the brief when given; ``brief`` (the free text, or
    the rendered prompt) is read as well, for the seed text of a job without a template."""
    parts = [str(v) for v in (variables or {}).values() if isinstance(v, str | int | float)]
    source = "\n".join(parts) if parts else brief
    seen: set[tuple[str, str]] = set()
    terms: list[Term] = []

    def add(text: str, kind: str, key: str) -> None:
        if (kind, key) not in seen:
            seen.add((kind, key))
            terms.append({"text": text, "kind": kind, "key": key})

    covered: list[tuple[int, int]] = []
    for span in tx.specifics(source):
        if span.kind == "quote":
            continue
        kind = "number" if span.kind == "number" else span.kind
        add(span.text, kind, span.key)
        covered.append((span.start, span.end))
    for w, s, e in tx.words(source):
        lw = w.lower()
        if any(a <= s and e <= b for a, b in covered):
            continue
        if lw in tx.STOPWORDS or lw in tx.INSTRUCTION_WORDS or len(lw) < 3:
            continue
        if lw in tx.NUMBER_WORDS or lw in tx.MONTHS:
            continue
        add(w, "word", tx.stem(lw))
    return terms


REBRIEF = "Mention each of these words from the brief: {terms}."


def rebrief(user_text: str, terms: Sequence[Term]) -> str:
    """The user message of a job's top-up (drawn when none of its candidates covered the
    brief): the same message with the brief's key terms spelled out after it."""
    if not terms:
        return user_text
    line = REBRIEF.format(terms=", ".join(t["text"] for t in terms))
    return f"{user_text.rstrip()}\n\n{line}"


def _found(term: Term, text_stems: set[str], spans: list[tx.Span]) -> bool:
    kind, key = term["kind"], term["key"]
    if kind == "word":
        return key in text_stems
    if kind == "name":
        name_words = [tx.stem(w) for w in key.split() if w not in tx.TITLES]
        return all(w in text_stems for w in name_words)
    if kind == "number":
        return any(s.kind in ("number", "date") and s.key == key for s in spans)
    return any(s.kind == kind and s.key == key for s in spans)


def coverage(text: str, terms: Sequence[Term]) -> dict[str, Any]:
    """``{"found": [...], "missing": [...], "share": found / all, "missing_numbers": [...]}``
    for the brief's ``terms`` in ``text``; a brief with no terms is covered (share 1.0)."""
    text_stems = tx.word_stems(text)
    spans = tx.numbers(text) + tx.dates(text)
    found = [t["text"] for t in terms if _found(t, text_stems, spans)]
    missing = [t for t in terms if not _found(t, text_stems, spans)]
    return {
        "found": found,
        "missing": [t["text"] for t in missing],
        "missing_numbers": [t["text"] for t in missing if t["kind"] in ("number", "date")],
        "terms": len(terms),
        "share": round(len(found) / len(terms), 4) if terms else 1.0,
    }


def _same_thing(a: tx.Span, b: tx.Span) -> bool:
    """Two figures about the same thing: same unit (currency, percent, or counted noun)."""
    return bool(a.unit) and a.unit == b.unit


def unsupported_specifics(
    text: str, brief: str, sources: Sequence[str] | None = None
) -> list[Specific]:
    """The numbers, dates, names and quotations of ``text`` that appear neither in ``brief``
    nor in any of ``sources`` (passages given to the model), each marked ``verify``; a figure
    that differs from a figure of the brief with the same unit ("$13.5 million" where the brief
    says "$4.2 million") is marked ``contradiction`` and names it.

    Support: a number by its value (whatever way it is written), a date by its day, a name when
    every word of it but a title is a word of the brief or a source, a quotation when its words
    are a run of the brief's or a source's words."""
    given = [brief, *(sources or [])]
    given_norm = [tx.normalise(g) for g in given]
    given_stems: set[str] = set()
    given_spans: list[tx.Span] = []
    for g in given:
        given_stems |= tx.word_stems(g)
        given_spans += tx.numbers(g) + tx.dates(g)
    brief_numbers = [s for s in tx.numbers(brief) if s.kind == "number"]
    given_keys = {s.key for s in given_spans}
    out: list[Specific] = []
    for span in tx.specifics(text):
        item: Specific = {
            "kind": span.kind,
            "text": span.text,
            "start": span.start,
            "end": span.end,
            "status": "verify",
        }
        if span.kind in ("number", "date"):
            if span.key in given_keys:
                continue
            clash = next(
                (b for b in brief_numbers if span.kind == "number" and _same_thing(span, b)),
                None,
            )
            if clash is not None:
                item["status"] = "contradiction"
                item["contradicts"] = clash.text
                item["reason"] = f"The brief says {clash.text}."
            else:
                item["reason"] = f"This {span.kind} is not in the brief or the sources."
        elif span.kind == "name":
            if all(w in given_stems for w in span.words):
                continue
            item["reason"] = "This name is not in the brief or the sources."
        elif span.kind == "quote":
            if span.key and any(span.key in g for g in given_norm):
                continue
            item["reason"] = "This quotation is not in the brief or the sources."
        out.append(item)
    return out


def _agreement_key(item: Mapping[str, Any]) -> str:
    if item["kind"] in ("number", "date"):
        spans = tx.numbers(item["text"]) + tx.dates(item["text"])
        if spans:
            return f"n:{spans[0].key}"
    return f"{item['kind']}:{tx.normalise(item['text'])}"


def agreement(per_candidate: Sequence[Sequence[Specific]]) -> list[list[Specific]]:
    """Each candidate's unsupported specifics with ``others``: how many other candidates of the
    same job state the same specific. A specific only one candidate states is the more likely
    invention (the idea of SelfCheckGPT), one signal among the others."""
    keys = [{_agreement_key(s) for s in items} for items in per_candidate]
    out: list[list[Specific]] = []
    for index, items in enumerate(per_candidate):
        marked = []
        for s in items:
            k = _agreement_key(s)
            others = sum(1 for j, ks in enumerate(keys) if j != index and k in ks)
            marked.append({**s, "others": others})
        out.append(marked)
    return out
