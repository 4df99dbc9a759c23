"""The semantic check: draft sentences whose nearest indexed sentences are paraphrases.

Each draft sentence of :data:`~review.checks.semantic.passages.DEFAULT_MIN_WORDS` words or more
is embedded and looked up in a vector index; matches at or above a threshold are reported with
the draft sentence's span and, when the passage text is available, the span of the source
sentence that matches best. A sentence alone says little: a draft on the same topic meets one
similar sentence now and then. A paraphrase of one document aligns many of its sentences with
the *same* source and restates much of it, so :func:`align_sources` groups the matches by
source; a pair classifier (:mod:`~review.checks.semantic.pairs`) decides on each source, the
caller's policy's two shares as floors (docs/review.md). Runs the embedding model; nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, NotRequired, Protocol, TypedDict

import numpy as np

from review.checks.semantic.passages import DEFAULT_MIN_WORDS, split_key
from review.checks.text import sentences, words

if TYPE_CHECKING:
    from review.checks.semantic.index import VectorIndex
    from review.checks.semantic.store import SemanticStore

ENGINE = "semantic"
ENGINE_VERSION = "1"
DEFAULT_THRESHOLD = 0.7
DEFAULT_K = 5
# Locating the best source sentence embeds the source's sentences; cap the work per check.
MAX_LOCATE_SENTENCES = 2000


class TextEncoder(Protocol):
    """What :func:`check_semantic` needs from an embedder (tests may pass a fake)."""

    model_name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SemanticMatch(TypedDict):
    key: str
    score: float
    draft_start: int
    draft_end: int
    # Present when the passage text was fetched: the passage sentence that matches best.
    source_start: NotRequired[int]
    source_end: NotRequired[int]
    source_score: NotRequired[float]


class SemanticTimings(TypedDict):
    embed_ms: float
    search_ms: float
    locate_ms: float
    total_ms: float


class SemanticResult(TypedDict):
    engine: str
    engine_version: str
    model: str
    threshold: float
    sentences_checked: int
    matches: list[SemanticMatch]  # by draft position, then best score first
    max_score: float  # best passage score of any checked sentence, even below the threshold
    timings: SemanticTimings


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def check_semantic(
    text: str,
    *,
    embedder: TextEncoder,
    index: VectorIndex | SemanticStore,
    fetch_texts: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
    exclude_keys: Collection[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
    k: int = DEFAULT_K,
    min_words: int = DEFAULT_MIN_WORDS,
) -> SemanticResult:
    """Draft sentences whose nearest indexed passages score at least ``threshold``.

    ``exclude_keys`` are never matched: keys, or items whose every sentence is excluded (pass
    the draft's own item, "d:45"). ``fetch_texts(keys)`` returns the texts of matched passages
    (missing keys are skipped); when given, each match also gets the span, within that text,
    of the passage sentence closest to the draft sentence. With sentence-level keys the
    passage is one sentence, so the caller can instead take the span it stored with the key
    and skip ``fetch_texts``. Runs the embedding model; no other side effects.
    """
    started = time.perf_counter()
    checked = [s for s in sentences(text) if len(words(s.text)) >= min_words]
    vectors = embedder.encode([s.text for s in checked])
    embedded = time.perf_counter()
    found = index.search(vectors, k=k, exclude_keys=exclude_keys) if checked else []
    searched = time.perf_counter()

    max_score = max((hits[0][1] for hits in found if hits), default=0.0)
    matches: list[SemanticMatch] = []
    match_vectors: list[np.ndarray] = []
    for sentence, vector, hits in zip(checked, vectors, found, strict=True):
        for key, score in hits:
            if score < threshold:
                break
            matches.append(
                {
                    "key": key,
                    "score": round(score, 4),
                    "draft_start": sentence.start,
                    "draft_end": sentence.end,
                }
            )
            match_vectors.append(vector)
    if matches and fetch_texts is not None:
        _locate_sources(matches, match_vectors, embedder=embedder, fetch_texts=fetch_texts)
    located = time.perf_counter()

    return {
        "engine": ENGINE,
        "engine_version": ENGINE_VERSION,
        "model": embedder.model_name,
        "threshold": threshold,
        "sentences_checked": len(checked),
        "matches": matches,
        "max_score": round(max_score, 4),
        "timings": {
            "embed_ms": _ms(embedded - started),
            "search_ms": _ms(searched - embedded),
            "locate_ms": _ms(located - searched),
            "total_ms": _ms(located - started),
        },
    }


class SourceAlignment(TypedDict):
    """How much of a draft restates one source, and how much of the source it restates."""

    source: str  # the source, as ``source_of`` names it
    draft_sentences: int  # draft sentences aligned with a sentence of this source
    draft_share: float  # ... of the draft's checked sentences
    source_sentences: int  # sentences of the source aligned with a draft sentence
    source_share: float  # ... of the source's indexed sentences (``source_sizes``)
    mean_score: float  # mean cosine of the aligned pairs
    pairs: list[SemanticMatch]  # per aligned draft sentence, its closest sentence of the source


def align_sources(
    matches: Sequence[SemanticMatch],
    *,
    sentences_checked: int,
    threshold: float,
    source_sizes: Mapping[str, int],
    source_of: Callable[[str], str | None] | None = None,
) -> list[SourceAlignment]:
    """Group sentence matches by source: the draft's paraphrase of each source, best first.

    Each draft sentence is aligned with its closest sentence of every source it matches at
    ``threshold`` or more. A source's ``draft_share`` is the share of the draft's sentences so
    aligned with it, its ``source_share`` the share of its own sentences (``source_sizes``:
    indexed sentences per source) that a draft sentence aligns with: a paraphrase of one
    document restates most of it, sentence by sentence, where a draft on the same topic meets
    one sentence here and one there. ``source_of(key)`` names a match's source (default: the
    item part of the key, "a:12#3" -> "a:12"; None leaves the match out). Pure function.
    """
    name = source_of or (lambda key: split_key(key)[0])
    best: dict[str, dict[tuple[int, int], SemanticMatch]] = {}
    for match in matches:
        if match["score"] < threshold:
            continue
        source = name(match["key"])
        if source is None:
            continue
        span = (match["draft_start"], match["draft_end"])
        per_source = best.setdefault(source, {})
        if span not in per_source or match["score"] > per_source[span]["score"]:
            per_source[span] = match
    out: list[SourceAlignment] = []
    for source, aligned in best.items():
        pairs = sorted(aligned.values(), key=lambda m: m["draft_start"])
        restated = len({m["key"] for m in pairs})
        size = max(int(source_sizes.get(source, 0) or 0), restated)
        out.append(
            {
                "source": source,
                "draft_sentences": len(pairs),
                "draft_share": round(len(pairs) / max(sentences_checked, len(pairs)), 4),
                "source_sentences": restated,
                "source_share": round(restated / size, 4),
                "mean_score": round(sum(m["score"] for m in pairs) / len(pairs), 4),
                "pairs": pairs,
            }
        )
    out.sort(key=lambda a: (-a["draft_share"], -a["source_share"], -a["mean_score"], a["source"]))
    return out


def _locate_sources(
    matches: list[SemanticMatch],
    match_vectors: list[np.ndarray],
    *,
    embedder: TextEncoder,
    fetch_texts: Callable[[Sequence[str]], Mapping[str, str]],
) -> None:
    """Add ``source_start``/``source_end``/``source_score`` to ``matches`` in place."""
    keys = list(dict.fromkeys(m["key"] for m in matches))
    texts = fetch_texts(keys)
    # Per key: its sentences, and (for multi-sentence passages) rows into one batch of vectors.
    spans: dict[str, list[tuple[int, int]]] = {}
    to_embed: list[str] = []
    rows: dict[str, tuple[int, int]] = {}
    for key in keys:
        source = texts.get(key)
        if not source:
            continue
        parts = sentences(source)
        if not parts:
            continue
        spans[key] = [(p.start, p.end) for p in parts]
        if len(parts) > 1 and len(to_embed) + len(parts) <= MAX_LOCATE_SENTENCES:
            rows[key] = (len(to_embed), len(to_embed) + len(parts))
            to_embed += [p.text for p in parts]
    source_vectors = embedder.encode(to_embed) if to_embed else None
    for match, vector in zip(matches, match_vectors, strict=True):
        key = match["key"]
        if key not in spans:
            continue
        if key in rows and source_vectors is not None:
            first, last = rows[key]
            sims = source_vectors[first:last] @ vector
            best = int(np.argmax(sims))
            match["source_score"] = round(float(sims[best]), 4)
        elif len(spans[key]) == 1:
            best = 0
            match["source_score"] = match["score"]
        else:
            continue  # over the locating budget: leave the passage unlocated
        match["source_start"], match["source_end"] = spans[key][best]
