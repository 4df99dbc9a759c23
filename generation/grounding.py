"""Background from the house archive: the hook generation calls, and fitting it into the prompt.

Generation may not import review (the import contract), yet the archive and its indexes live
there. So review registers its retriever here when its app is ready (``register_retriever``),
and the worker asks through ``retrieve``: without review installed a job that asked for
background runs without it and its drafts say so.

Where the passages go is the prompt *layout* (``LAYOUTS``; the record says which): before the
brief in the user message, after it, in the system turn, as quoted statements, as a short
extract of the passages' sentences nearest the brief, or before the brief with an instruction
after it to write from them. ``DEFAULT_LAYOUT`` is the one chosen on the grounding bench's dev
split (docs/grounding.md). In every layout the passages must fit the model's context with the
tokens the job asks for: each passage is added whole (best first) while the prompt (counted with
the model's own tokenizer) fits; the first that does not is cut at a word boundary to what is
left, and the rest are dropped. The record says which were trimmed or dropped, and keeps the
exact text each source put into the prompt (the checks judge the draft against it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict

from generation.quality.text import STOPWORDS

# A passage cut shorter than this says too little to be worth its place.
MIN_TRIMMED_WORDS = 12
# Without a tokenizer (a remote server), tokens are estimated from characters, cautiously.
CHARS_PER_TOKEN_ESTIMATE = 3

HEADER = "Background from the archive (use its facts; write in your own words):"
QUOTED_HEADER = "Statements from the archive (use their facts; write in your own words):"
EXTRACT_HEADER = "Facts from the archive (use them; write in your own words):"
# The instruction the "instructed" layout puts after the brief.
USE_FACTS = "Write it from the facts in the background above: use its names, numbers and details."

# Where the background goes in the prompt (a draft's ``background.layout``):
LAYOUT_BEFORE = "before"  # the passages, then the brief, in the user message
LAYOUT_AFTER = "after"  # the brief, then the passages
LAYOUT_SYSTEM = "system"  # the passages appended to the system turn; the user message unchanged
LAYOUT_QUOTED = "quoted"  # before the brief, each passage a quoted statement of its source
LAYOUT_EXTRACT = "extract"  # before the brief, only the passages' sentences nearest the brief
LAYOUT_INSTRUCTED = "instructed"  # before the brief, and an instruction after it to use them
LAYOUTS = (
    LAYOUT_BEFORE,
    LAYOUT_AFTER,
    LAYOUT_SYSTEM,
    LAYOUT_QUOTED,
    LAYOUT_EXTRACT,
    LAYOUT_INSTRUCTED,
)
# Chosen on the grounding bench's dev split (docs/grounding.md): 1.104 against 1.048 for before.
DEFAULT_LAYOUT = LAYOUT_SYSTEM
# The extract layout: at most this many sentences of each passage, and in all.
EXTRACT_PER_PASSAGE = 2
EXTRACT_TOTAL = 6


class BackgroundSource(TypedDict, total=False):
    passage_id: int
    document_id: int
    title: str
    citation: str
    url: str
    start: int  # offsets of the passage within the document's text
    end: int
    score: float  # the fused rank score (reciprocal-rank fusion)
    lexical_rank: int | None
    semantic_rank: int | None
    cosine: float | None
    text: str  # exactly what went into the prompt (trimmed passages: the kept part)
    trimmed: bool


class BackgroundRecord(TypedDict, total=False):
    requested: int
    query: str
    sources: list[BackgroundSource]
    dropped: list[BackgroundSource]  # retrieved, but no room in the context (text omitted)
    retrieval: dict[str, Any]  # which rankers ran and why one did not
    context_length: int | None
    budget_tokens: int | None
    tokens_estimated: bool
    layout: str  # where the background went in the prompt (``LAYOUTS``)
    note: str


class Retriever(Protocol):
    def __call__(
        self, *, project_id: int, query: str, k: int
    ) -> tuple[list[BackgroundSource], dict[str, Any]]: ...


_retriever: Retriever | None = None


def register_retriever(retriever: Retriever) -> None:
    """Called by review's AppConfig.ready: the archive search that ``retrieve`` uses."""
    global _retriever
    _retriever = retriever


def retrieve(
    *, project_id: int, query: str, k: int
) -> tuple[list[BackgroundSource], dict[str, Any]]:
    """The ``k`` archive passages of the project most relevant to ``query``, best first, and
    what the retrieval did (rankers run, reasons one did not). Empty without a retriever."""
    if _retriever is None or k <= 0 or not query.strip():
        reason = "no archive search is installed" if _retriever is None else "nothing to search"
        return [], {"not_run": reason}
    return _retriever(project_id=project_id, query=query, k=k)


def background_block(sources: Sequence[Mapping[str, Any]], layout: str = LAYOUT_BEFORE) -> str:
    if layout == LAYOUT_QUOTED:
        parts = [QUOTED_HEADER]
        for source in sources:
            parts.append(f'{source.get("title") or "The archive"} said: "{source["text"].strip()}"')
        return "\n\n".join(parts)
    if layout == LAYOUT_EXTRACT:
        lines = [f"- {source['text'].strip()}" for source in sources]
        return "\n".join([EXTRACT_HEADER, *lines])
    parts = [HEADER]
    for number, source in enumerate(sources, start=1):
        parts.append(f"[{number}] {source.get('title') or 'Archive'}\n{source['text'].strip()}")
    return "\n\n".join(parts)


def with_background(
    user_text: str, sources: Sequence[Mapping[str, Any]], layout: str = LAYOUT_BEFORE
) -> str:
    """The user message for ``layout`` (the system layout leaves it as it is)."""
    if not sources or layout == LAYOUT_SYSTEM:
        return user_text
    block = background_block(sources, layout)
    if layout == LAYOUT_AFTER:
        return f"{user_text}\n\n{block}"
    if layout == LAYOUT_INSTRUCTED:
        return f"{block}\n\n{user_text}\n\n{USE_FACTS}"
    return f"{block}\n\n{user_text}"


def system_with_background(
    system_text: str, sources: Sequence[Mapping[str, Any]], layout: str = LAYOUT_BEFORE
) -> str:
    """The system text for ``layout``: only the system layout adds the background to it."""
    if not sources or layout != LAYOUT_SYSTEM:
        return system_text
    block = background_block(sources, layout)
    return f"{system_text.strip()}\n\n{block}" if system_text.strip() else block


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_WORD = re.compile(r"[a-z0-9]+")


def shared_system(record: Mapping[str, Any] | None) -> bool:
    """Whether a prompt's system turn is one many prompts share (worth a cached preamble):
    not when this job's background went into it."""
    return not (record or {}).get("sources") or (record or {}).get("layout") != LAYOUT_SYSTEM


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2}


def extract_sentences(sources: Sequence[BackgroundSource], *, brief: str) -> list[BackgroundSource]:
    """The extract layout's sources: of each passage only its sentences sharing the most
    content words with the brief (at most ``EXTRACT_PER_PASSAGE`` each, ``EXTRACT_TOTAL`` in
    all, in the passage's order), so a short prompt carries the passages' most relevant facts.
    Sentences sharing no word with the brief come last: a passage of such keeps its first
    sentences only while the total leaves room."""
    wanted = _content_words(brief)
    scored: list[tuple[int, int, int, str]] = []  # (-overlap, source, position, sentence)
    for number, source in enumerate(sources):
        sentences = [x.strip() for x in _SENTENCE_END.split(source["text"]) if x.strip()]
        ranked = sorted(
            range(len(sentences)),
            key=lambda i: (-len(_content_words(sentences[i]) & wanted), i),
        )
        for i in ranked[:EXTRACT_PER_PASSAGE]:
            scored.append((-len(_content_words(sentences[i]) & wanted), number, i, sentences[i]))
    chosen = sorted(scored)[:EXTRACT_TOTAL]
    out: list[BackgroundSource] = []
    for number, source in enumerate(sources):
        mine = sorted((i, text) for _, n, i, text in chosen if n == number)
        if mine:
            out.append({**source, "text": " ".join(text for _, text in mine)})  # type: ignore[typeddict-item]
    return out


def _cut_words(text: str, n: int) -> str:
    words = text.split()
    if n >= len(words):
        return text.strip()
    return " ".join(words[:n]) + " ..."


def fit_for_backend(
    backend: Any,
    *,
    sources: Sequence[BackgroundSource],
    user_text: str,
    max_new_tokens: int,
    system_text: str = "",
    brief: str | None = None,
) -> tuple[str, str, BackgroundRecord]:
    """``fit_background`` with a generation backend's own chat template, tokenizer and context
    length (the job's runner and the evaluation's grounded variants)."""
    return fit_background(
        sources=sources,
        user_text=user_text,
        system_text=system_text,
        brief=brief,
        render=lambda system, user: backend.render_prompt(system=system, user=user),
        count_tokens=backend.count_tokens,
        context_length=backend.context_length,
        max_new_tokens=max_new_tokens,
    )


def fit_background(
    *,
    sources: Sequence[BackgroundSource],
    user_text: str,
    render: Callable[[str, str], str],
    count_tokens: Callable[[str], int | None],
    context_length: int | None,
    max_new_tokens: int,
    system_text: str = "",
    layout: str | None = None,
    brief: str | None = None,
) -> tuple[str, str, BackgroundRecord]:
    """The system text and user message with as much background as fits in ``layout``
    (default ``DEFAULT_LAYOUT``), and the record of what went in.

    ``render(system, user)`` is the whole prompt (the chat template around them);
    ``count_tokens(prompt)`` counts it with the model's tokenizer (None: not known here, then
    characters are used as an estimate and the record says so). The prompt plus
    ``max_new_tokens`` stays within ``context_length``. ``brief`` (default: the user text) is
    what the extract layout picks sentences for.
    """
    layout = layout or DEFAULT_LAYOUT
    if layout not in LAYOUTS:
        raise ValueError(f"unknown background layout {layout!r}")
    if layout == LAYOUT_EXTRACT:
        sources = extract_sentences(sources, brief=brief or user_text)
    elif layout == LAYOUT_QUOTED:  # its own double quotes would end the quotation
        sources = [{**s, "text": s["text"].replace('"', "'")} for s in sources]  # type: ignore[misc]
    estimated = False

    def prompt_of(kept: Sequence[BackgroundSource]) -> str:
        return render(
            system_with_background(system_text, kept, layout),
            with_background(user_text, kept, layout),
        )

    def tokens(prompt: str) -> int:
        nonlocal estimated
        counted = count_tokens(prompt)
        if counted is None:
            estimated = True
            return -(-len(prompt) // CHARS_PER_TOKEN_ESTIMATE)
        return counted

    budget = None if context_length is None else context_length - max_new_tokens
    kept: list[BackgroundSource] = []
    dropped: list[BackgroundSource] = []
    trimmed = 0
    for source in sources:
        if dropped:  # once one did not fit whole, the later (less relevant) ones go too
            dropped.append(_without_text(source))
            continue
        whole = {**source, "trimmed": False}
        if budget is None or tokens(prompt_of([*kept, whole])) <= budget:  # type: ignore[list-item]
            kept.append(whole)  # type: ignore[arg-type]
            continue
        # Cut this one to what is left: the most words that still fit (binary search).
        words = source["text"].split()
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cut = {**source, "text": _cut_words(source["text"], mid)}
            if tokens(prompt_of([*kept, cut])) <= budget:  # type: ignore[list-item]
                lo = mid
            else:
                hi = mid - 1
        if lo >= MIN_TRIMMED_WORDS:
            kept.append({**source, "text": _cut_words(source["text"], lo), "trimmed": True})  # type: ignore[typeddict-item]
            trimmed += 1
        else:
            dropped.append(_without_text(source))
    user = with_background(user_text, kept, layout)
    system = system_with_background(system_text, kept, layout)
    notes = [f"{len(kept)} of {len(sources)} retrieved passages in the prompt ({layout} layout)"]
    if trimmed:
        notes.append(f"{trimmed} trimmed to fit the model's context")
    if dropped:
        notes.append(f"{len(dropped)} left out: no room in the model's context")
    if budget is not None:
        notes.append(
            f"{tokens(prompt_of(kept))} of {budget} prompt tokens used "
            f"({context_length} context - {max_new_tokens} new)"
            + (" (estimated from characters: no tokenizer here)" if estimated else "")
        )
    record: BackgroundRecord = {
        "sources": kept,
        "dropped": dropped,
        "context_length": context_length,
        "budget_tokens": budget,
        "tokens_estimated": estimated,
        "layout": layout,
        "note": "; ".join(notes) + ".",
    }
    return system, user, record


def _without_text(source: BackgroundSource) -> BackgroundSource:
    return {key: value for key, value in source.items() if key != "text"}  # type: ignore[return-value]


def brief_of(*, variables: Mapping[str, Any], seed_text: str) -> str:
    """What to search the archive for: the template's values, or the free prompt."""
    if variables:
        return "\n".join(str(v).strip() for v in variables.values() if str(v or "").strip())
    return seed_text.strip()


def supplied_texts(record: Mapping[str, Any] | None) -> list[str]:
    """The texts the model was given as background (a draft's ``background``), for checks that
    judge a draft against its sources (unsupported specifics, copying)."""
    return [s["text"] for s in (record or {}).get("sources", []) if s.get("text")]
