"""Archive search for background: the project's archive passages most relevant to a brief.

Two rankers, fused by reciprocal rank (RRF, k = 60: each passage scores the sum of
1 / (60 + rank) over the rankers that found it), because neither alone is enough for a brief of
a sentence or two: a lexical ranker finds the passages that share the brief's rare words
(names, places) and a semantic one those that say the same thing in other words.

* **Lexical:** BM25 over the passages (k1 = 1.2, b = 0.75, lowercased words without stop
  words). The plagiarism index (MinHash of 5-word shingles) finds copies, not topics: a brief
  shares no 5-word run with the story it should draw on. The BM25 matrix is built per project
  and process on first use and rebuilt when the project's sources change (``IndexState``).
* **Semantic:** the brief's embedding against the shared sentence index of the plagiarism
  check (``source_indexes``); a passage scores the cosine of its best sentence. Passages not
  embedded yet are found by the lexical ranker only; without the sentence model the lexical
  ranker runs alone and the record says so.

Only archive passages of the project are ever returned (never published drafts, never another
project's): every hit is read back through a query on the project's archive.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from generation.grounding import BackgroundSource
from review import source_indexes
from review.checks import semantic
from review.models import IndexState, SourceKind, SourcePassage
from review.services.embedding import get_embedder

logger = logging.getLogger(__name__)

RRF_K = 60
BM25_K1 = 1.2
BM25_B = 0.75
# Each ranker's list is this many times the passages asked for (at least 20) before fusion.
DEPTH_FACTOR = 5
# Sentences fetched from the semantic index per passage wanted (a passage has several).
SENTENCES_PER_PASSAGE = 8

_WORD_RE = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
        "not",
        "no",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "also",
        "about",
        "after",
        "before",
        "over",
        "under",
        "up",
        "down",
        "out",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "very",
        "just",
        "new",
        "write",
        "short",
        "report",
        "news",
        "article",
    ]
)


def terms(text: str) -> list[str]:
    return [w for w in _WORD_RE.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]


@dataclass
class _Bm25:
    key: tuple[Any, ...]
    passage_ids: np.ndarray
    vocabulary: dict[str, int]
    weights: sparse.csc_matrix  # passages x terms, BM25 weight of each term in each passage

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        columns = sorted({self.vocabulary[t] for t in terms(query) if t in self.vocabulary})
        if not columns or not self.passage_ids.size:
            return []
        scores = np.asarray(self.weights[:, columns].sum(axis=1)).ravel()
        hits = np.flatnonzero(scores > 0)
        order = hits[np.argsort(-scores[hits], kind="stable")][:k]
        return [(int(self.passage_ids[i]), float(scores[i])) for i in order]


def _build_bm25(key: tuple[Any, ...], rows: Sequence[tuple[int, str]]) -> _Bm25:
    vocabulary: dict[str, int] = {}
    indptr, indices, counts, lengths = [0], [], [], []
    for _, text in rows:
        bag: dict[int, int] = {}
        words = terms(text)
        for word in words:
            column = vocabulary.setdefault(word, len(vocabulary))
            bag[column] = bag.get(column, 0) + 1
        indices.extend(bag)
        counts.extend(bag.values())
        indptr.append(len(indices))
        lengths.append(len(words))
    n = len(rows)
    tf = sparse.csr_matrix(
        (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
        shape=(n, len(vocabulary)),
    )
    df = np.bincount(tf.indices, minlength=len(vocabulary)).astype(np.float32)
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
    length = np.asarray(lengths, dtype=np.float32)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / max(float(length.mean()) if n else 1.0, 1.0))
    row_norm = np.repeat(norm, np.diff(tf.indptr))
    data = tf.data * (BM25_K1 + 1) / (tf.data + row_norm) * idf[tf.indices]
    weights = sparse.csr_matrix((data, tf.indices, tf.indptr), shape=tf.shape).tocsc()
    ids = np.asarray([pk for pk, _ in rows], dtype=np.int64)
    return _Bm25(key=key, passage_ids=ids, vocabulary=vocabulary, weights=weights)


_bm25: dict[int, _Bm25] = {}
_bm25_lock = threading.Lock()


def _archive(project_id: int) -> Any:
    return SourcePassage.objects.filter(
        project_id=project_id, kind=SourceKind.ARCHIVE, document__isnull=False
    )


def lexical_index(project_id: int) -> _Bm25:
    """The project's BM25 index in this process, rebuilt when its sources changed."""
    state = (
        IndexState.objects.filter(project_id=project_id)
        .values_list("token", "epoch", "version")
        .first()
    )
    key = (state, _archive(project_id).count())
    with _bm25_lock:
        index = _bm25.get(project_id)
        if index is None or index.key != key:
            rows = list(_archive(project_id).order_by("pk").values_list("pk", "text"))
            index = _bm25[project_id] = _build_bm25(key, rows)
    return index


def forget_all() -> None:
    with _bm25_lock:
        _bm25.clear()


def _semantic_ranking(project_id: int, query: str, depth: int) -> list[tuple[int, float]]:
    embedder = get_embedder()
    vector = embedder.encode([query])
    # Hash nothing for the lexical plagiarism index here: only the sentence store is needed.
    store = source_indexes.indexes_for(project_id, lexical_budget=0).semantic
    [hits] = store.search(vector, k=depth * SENTENCES_PER_PASSAGE)
    best: dict[int, float] = {}
    for key, score in hits:
        item, _ = semantic.split_key(key)
        if not item.startswith("a:"):
            continue  # published drafts are sources of the plagiarism check, not background
        pk = source_indexes.parse_source_key(item)
        if pk is not None and score > best.get(pk, -1.0):
            best[pk] = score
    return sorted(best.items(), key=lambda kv: -kv[1])[:depth]


def background_passages(
    *, project_id: int, query: str, k: int
) -> tuple[list[BackgroundSource], dict[str, Any]]:
    """The ``k`` passages of the project's archive most relevant to ``query``, best first,
    and what ran (registered with ``generation.grounding`` by review's AppConfig)."""
    depth = max(20, k * DEPTH_FACTOR)
    info: dict[str, Any] = {"method": "reciprocal-rank fusion", "rrf_k": RRF_K}
    lexical = lexical_index(project_id).search(query, depth)
    info["lexical"] = {"ranker": "bm25", "hits": len(lexical)}
    try:
        ranked = _semantic_ranking(project_id, query, depth)
        info["semantic"] = {"ranker": "sentence embeddings", "hits": len(ranked)}
    except semantic.EmbeddingModelUnavailable as exc:
        ranked = []
        info["semantic"] = {"not_run": exc.reason}
    fused: dict[int, float] = {}
    lexical_rank = {pk: rank for rank, (pk, _) in enumerate(lexical, start=1)}
    semantic_rank = {pk: rank for rank, (pk, _) in enumerate(ranked, start=1)}
    cosine = dict(ranked)
    for ranks in (lexical_rank, semantic_rank):
        for pk, rank in ranks.items():
            fused[pk] = fused.get(pk, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(fused, key=lambda pk: (-fused[pk], pk))
    # Read back through the project's archive: nothing else can ever be returned.
    passages = {
        p.pk: p
        for p in _archive(project_id)
        .filter(pk__in=order[: k * 2])
        .select_related("document")
        .only(
            "pk",
            "start",
            "end",
            "text",
            "document__id",
            "document__title",
            "document__citation",
            "document__source_url",
        )
    }
    sources: list[BackgroundSource] = []
    for pk in order:
        passage = passages.get(pk)
        if passage is None:
            continue
        doc = passage.document
        sources.append(
            {
                "passage_id": passage.pk,
                "document_id": doc.pk,
                "title": doc.title or f"Archive document {doc.pk}",
                "citation": doc.citation,
                "url": doc.source_url,
                "start": passage.start,
                "end": passage.end,
                "score": round(fused[pk], 6),
                "lexical_rank": lexical_rank.get(pk),
                "semantic_rank": semantic_rank.get(pk),
                "cosine": round(cosine[pk], 4) if pk in cosine else None,
                "text": passage.text,
            }
        )
        if len(sources) >= k:
            break
    return sources, info
