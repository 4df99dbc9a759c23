"""The in-process vector index: bfloat16 rows, a bf16 scan for a shortlist, exact float32 rescoring.

No ANN library is needed at a newsroom archive's size: a scan of bf16 rows with top-k and a
float32 rescoring of the shortlist (``k + max(k, 24)`` rows) answers a 20-sentence draft in tens
of milliseconds at 100k passages with the recall of an exact scan, in about half the memory of
float32 vectors (docs/review.md). Where the CPU lacks fast bf16 the scan upcasts blocks to
float32 (decided once per process by a short probe); the results are the same. Every method
is thread-safe: request threads may search while a worker thread adds. Fewer torch ops is
faster on a busy machine: each parallel op waits at an OpenMP barrier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import cache

import numpy as np
import torch

from review.checks.semantic.passages import split_key
from review.checks.semantic.vectors import EMBEDDING_DIM, from_bytes, normalise_rows

# Queries are scored in blocks so a large batch never builds a (queries x passages) matrix
# bigger than this many rows at once.
QUERY_BLOCK = 64


@cache
def bf16_matmul_is_fast() -> bool:
    """Whether bf16 matmul beats upcasting to float32 on this CPU (probed once per process).

    CPUs with AVX-512 BF16 or AMX run it 2-4x faster than float32; others emulate it and are
    slower. Either way the shortlist is rescored in float32, so only speed depends on this.
    """
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(16384, EMBEDDING_DIM, generator=gen).to(torch.bfloat16)
    queries = torch.randn(20, EMBEDDING_DIM, generator=gen)

    def best_of(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    bf16 = best_of(lambda: queries.to(torch.bfloat16) @ data.T)
    f32 = best_of(lambda: queries @ data.float().T)
    return bf16 < f32


def shortlist_size(k: int) -> int:
    return k + max(k, 24)


class VectorIndex:
    """Passage vectors of one project, keyed by strings such as "a:123", "d:45", "p:7".

    Vectors are stored L2-normalised in bfloat16 (768 bytes each for MiniLM); a search scores
    every passage, keeps a shortlist and rescores it in float32 (see the module docstring).
    All methods are thread-safe. The index lives in process memory only: the database holds
    the vectors (:func:`to_bytes`) and :meth:`build` rebuilds the index from them.
    """

    def __init__(self, *, dim: int = EMBEDDING_DIM, namespace: str = "") -> None:
        self.dim = dim
        self.namespace = namespace
        self._lock = threading.RLock()
        self._set_data(torch.empty((0, dim), dtype=torch.bfloat16))
        self._size = 0
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        # item ("a:123") -> its keys ("a:123#0", ...), for exclusion and removal by item.
        self._item_keys: dict[str, set[str]] = {}

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, bytes | np.ndarray]],
        *,
        dim: int = EMBEDDING_DIM,
        namespace: str = "",
    ) -> VectorIndex:
        """An index from ``(key, vector or bytes)`` pairs, e.g. rows read from the database."""
        index = cls(dim=dim, namespace=namespace)
        keys: list[str] = []
        block: list[np.ndarray] = []
        for key, vector in items:
            if isinstance(vector, bytes | bytearray | memoryview):
                vector = from_bytes(vector, dim=dim)
            keys.append(key)
            block.append(np.asarray(vector, dtype=np.float32).reshape(-1))
            if len(block) == 8192:  # bound the float32 staging memory
                index.add(keys, np.stack(block))
                keys, block = [], []
        if block:
            index.add(keys, np.stack(block))
        return index

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def vector(self, key: str) -> np.ndarray | None:
        """The stored (bf16-rounded, normalised) vector for ``key`` as float32, or None."""
        with self._lock:
            row = self._rows.get(key)
            return None if row is None else self._data[row].float().numpy().copy()

    def memory_bytes(self) -> int:
        """Approximate process memory held: vector storage plus the key tables."""
        import sys

        with self._lock:
            vectors = self._data.element_size() * self._data.nelement()
            keys = sum(sys.getsizeof(k) for k in self._keys)
            return vectors + keys + sys.getsizeof(self._keys) + sys.getsizeof(self._rows)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``keys`` (a key seen twice keeps its last vector)."""
        array = normalise_rows(vectors, self.dim)
        if len(keys) != array.shape[0]:
            raise ValueError(f"{len(keys)} keys for {array.shape[0]} vectors")
        if not keys:
            return
        rows_bf16 = torch.from_numpy(array).to(torch.bfloat16)
        with self._lock:
            last_position = {key: i for i, key in enumerate(keys)}
            new_keys = [key for key in last_position if key not in self._rows]
            self._reserve(self._size + len(new_keys))
            for key in new_keys:
                self._rows[key] = self._size
                self._keys.append(key)
                self._item_keys.setdefault(split_key(key)[0], set()).add(key)
                self._size += 1
            targets = torch.tensor([self._rows[key] for key in last_position], dtype=torch.long)
            sources = torch.tensor(list(last_position.values()), dtype=torch.long)
            self._data[targets] = rows_bf16[sources]

    def remove(self, key: str) -> bool:
        """Drop ``key``; False when it was not there. The last row moves into its place."""
        with self._lock:
            row = self._rows.pop(key, None)
            if row is None:
                return False
            item = split_key(key)[0]
            siblings = self._item_keys[item]
            siblings.discard(key)
            if not siblings:
                del self._item_keys[item]
            last = self._size - 1
            if row != last:
                moved = self._keys[last]
                self._data[row] = self._data[last]
                self._keys[row] = moved
                self._rows[moved] = row
            self._keys.pop()
            self._size -= 1
            return True

    def remove_item(self, item: str) -> int:
        """Drop every key of ``item`` ("a:123" removes "a:123" and "a:123#n"); returns how many."""
        with self._lock:
            keys = list(self._item_keys.get(item, ()))
            for key in keys:
                self.remove(key)
            return len(keys)

    def _set_data(self, data: torch.Tensor) -> None:
        self._data = data
        # The same memory seen from numpy as raw bf16 bits, for rescoring without torch.
        self._bits = data.view(torch.int16).numpy().view(np.uint16)

    def _reserve(self, needed: int) -> None:
        capacity = self._data.shape[0]
        if needed <= capacity:
            return
        # Grow by half again so repeated adds cost amortised O(1) per row.
        new_capacity = max(needed, capacity + capacity // 2, 1024)
        grown = torch.empty((new_capacity, self.dim), dtype=torch.bfloat16)
        grown[: self._size] = self._data[: self._size]
        self._set_data(grown)

    def compact(self) -> None:
        """Release spare capacity (after a bulk build or many removals)."""
        with self._lock:
            if self._data.shape[0] > self._size:
                self._set_data(self._data[: self._size].clone())

    def search(
        self,
        query_vectors: np.ndarray,
        *,
        k: int = 10,
        min_score: float = -1.0,
        exclude_keys: Collection[str] = (),
    ) -> list[list[tuple[str, float]]]:
        """Per query, up to ``k`` ``(key, cosine)`` pairs with cosine >= ``min_score``, best
        first. Never returns a key in ``exclude_keys`` nor a key of an item listed there
        ("d:45" excludes "d:45#0", "d:45#1", ...)."""
        queries = normalise_rows(query_vectors, self.dim)
        if k <= 0:
            return [[] for _ in range(queries.shape[0])]
        with self._lock:
            n = self._size
            if n == 0:
                return [[] for _ in range(queries.shape[0])]
            data = self._data[:n]
            excluded = {
                self._rows[k]
                for key in exclude_keys
                for k in (key, *self._item_keys.get(key, ()))
                if k in self._rows
            }
            excluded_rows = np.array(sorted(excluded), dtype=np.int64) if excluded else None
            results: list[list[tuple[str, float]]] = []
            for start in range(0, queries.shape[0], QUERY_BLOCK):
                block = queries[start : start + QUERY_BLOCK]
                results += self._search_block(block, data, k, min_score, excluded_rows)
            return results

    def _search_block(
        self,
        queries: np.ndarray,
        data: torch.Tensor,
        k: int,
        min_score: float,
        excluded_rows: np.ndarray | None,
    ) -> list[list[tuple[str, float]]]:
        # Only the scan over every row runs in torch (bf16 matmul and top-k); the shortlist is
        # rescored in numpy. Each parallel torch op costs an OpenMP barrier, which on a busy
        # 2-core machine can wait ~10 ms for a descheduled thread, so fewer torch ops is faster.
        with torch.inference_mode():
            scores = approximate_scores(torch.from_numpy(queries), data)
            if excluded_rows is not None:
                scores[:, torch.from_numpy(excluded_rows)] = float("-inf")
            shortlist = min(data.shape[0], shortlist_size(k))
            candidates = torch.topk(scores, shortlist, dim=1, sorted=False).indices.numpy()
        # Exact rescoring of the shortlist in float32: bf16 bits are the top half of float32.
        bits = self._bits[: data.shape[0]][candidates].astype(np.uint32) << 16
        exact = np.einsum("qd,qsd->qs", queries, bits.view(np.float32))
        if excluded_rows is not None:
            exact[np.isin(candidates, excluded_rows)] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        out: list[list[tuple[str, float]]] = []
        for q, positions in enumerate(order):
            hits: list[tuple[str, float]] = []
            for position in positions:
                score = float(exact[q, position])
                if score == -np.inf or score < min_score:
                    break  # sorted best first: nothing after this qualifies
                hits.append((self._keys[int(candidates[q, position])], score))
            out.append(hits)
        return out


def approximate_scores(queries: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Cosines of every query against every stored row, to pick the shortlist."""
    if bf16_matmul_is_fast():
        return queries.to(torch.bfloat16) @ data.T
    scores = torch.empty((queries.shape[0], data.shape[0]), dtype=torch.float32)
    step = 16384
    for start in range(0, data.shape[0], step):
        scores[:, start : start + step] = queries @ data[start : start + step].float().T
    return scores


class IndexRegistry:
    """One :class:`VectorIndex` per project namespace in this process, built on first use.

    ``loader`` reads ``(key, bytes)`` rows from the database; it runs once per namespace (and
    again after :meth:`drop`), outside the registry-wide lock so other projects stay usable.
    """

    def __init__(self, *, dim: int = EMBEDDING_DIM) -> None:
        self.dim = dim
        self._indexes: dict[str, VectorIndex] = {}
        self._build_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self,
        namespace: str,
        *,
        loader: Callable[[], Iterable[tuple[str, bytes | np.ndarray]]],
    ) -> VectorIndex:
        with self._lock:
            index = self._indexes.get(namespace)
            if index is not None:
                return index
            build_lock = self._build_locks.setdefault(namespace, threading.Lock())
        with build_lock:
            with self._lock:
                index = self._indexes.get(namespace)
            if index is None:
                index = VectorIndex.build(loader(), dim=self.dim, namespace=namespace)
                index.compact()
                with self._lock:
                    self._indexes[namespace] = index
            return index

    def peek(self, namespace: str) -> VectorIndex | None:
        with self._lock:
            return self._indexes.get(namespace)

    def drop(self, namespace: str) -> None:
        """Forget the namespace's index; the next :meth:`get` rebuilds it from the loader."""
        with self._lock:
            self._indexes.pop(namespace, None)
