"""Background from the house archive: the hook generation calls, and fitting it into the prompt.

Generation may not import review (the import contract), yet the archive and its indexes live
there. So review registers its retriever here when its app is ready (``register_retriever``),
and the worker asks through ``retrieve``: without review installed a job that asked for
background runs without it and its drafts say so.

The passages go into the user message before the brief, best first. They must fit the model's
context with the tokens the job asks for: each passage is added whole while the prompt (counted
with the model's own tokenizer) fits; the first that does not is cut at a word boundary to what
is left, and the rest are dropped. The record says which were trimmed or dropped, and keeps the
exact text each source put into the prompt (the checks judge the draft against it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict

# A passage cut shorter than this says too little to be worth its place.
MIN_TRIMMED_WORDS = 12
# Without a tokenizer (a remote server), tokens are estimated from characters, cautiously.
CHARS_PER_TOKEN_ESTIMATE = 3

HEADER = "Background from the archive (use its facts; write in your own words):"


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


def background_block(sources: Sequence[Mapping[str, Any]]) -> str:
    parts = [HEADER]
    for number, source in enumerate(sources, start=1):
        parts.append(f"[{number}] {source.get('title') or 'Archive'}\n{source['text'].strip()}")
    return "\n\n".join(parts)


def with_background(user_text: str, sources: Sequence[Mapping[str, Any]]) -> str:
    if not sources:
        return user_text
    return f"{background_block(sources)}\n\n{user_text}"


def _cut_words(text: str, n: int) -> str:
    words = text.split()
    if n >= len(words):
        return text.strip()
    return " ".join(words[:n]) + " ..."


def fit_background(
    *,
    sources: Sequence[BackgroundSource],
    user_text: str,
    render: Callable[[str], str],
    count_tokens: Callable[[str], int | None],
    context_length: int | None,
    max_new_tokens: int,
) -> tuple[str, BackgroundRecord]:
    """The user message with as much background as fits, and the record of what went in.

    ``render(user)`` is the whole prompt for a user message (the chat template around it);
    ``count_tokens(prompt)`` counts it with the model's tokenizer (None: not known here, then
    characters are used as an estimate and the record says so). The prompt plus
    ``max_new_tokens`` stays within ``context_length``.
    """
    estimated = False

    def tokens(user: str) -> int:
        nonlocal estimated
        prompt = render(user)
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
        if budget is None or tokens(with_background(user_text, [*kept, whole])) <= budget:
            kept.append(whole)  # type: ignore[arg-type]
            continue
        # Cut this one to what is left: the most words that still fit (binary search).
        words = source["text"].split()
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cut = {**source, "text": _cut_words(source["text"], mid)}
            if tokens(with_background(user_text, [*kept, cut])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo >= MIN_TRIMMED_WORDS:
            kept.append({**source, "text": _cut_words(source["text"], lo), "trimmed": True})  # type: ignore[typeddict-item]
            trimmed += 1
        else:
            dropped.append(_without_text(source))
    user = with_background(user_text, kept)
    notes = [f"{len(kept)} of {len(sources)} retrieved passages in the prompt"]
    if trimmed:
        notes.append(f"{trimmed} trimmed to fit the model's context")
    if dropped:
        notes.append(f"{len(dropped)} left out: no room in the model's context")
    if budget is not None:
        notes.append(
            f"{tokens(user)} of {budget} prompt tokens used "
            f"({context_length} context - {max_new_tokens} new)"
            + (" (estimated from characters: no tokenizer here)" if estimated else "")
        )
    record: BackgroundRecord = {
        "sources": kept,
        "dropped": dropped,
        "context_length": context_length,
        "budget_tokens": budget,
        "tokens_estimated": estimated,
        "note": "; ".join(notes) + ".",
    }
    return user, record


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
