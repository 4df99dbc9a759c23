"""The shared semantic index: one memory-mapped base segment per project, a small delta per process.

Without it every worker process built its own :class:`~review.checks.semantic.index.VectorIndex`
of every stored sentence vector, private to the process, and a removed source rebuilt it:

* **Base segment** (:class:`Segment`): an immutable folder under
  ``INDEX_DIR/project-<id>/<name>/`` with the sentence vectors as one raw bfloat16 file and the
  keys as three small ``.npy`` arrays (passage id, sentence number, kind), sorted by passage id.
  Every process maps the files read-only (``np.memmap``), so the pages live once in the page
  cache. A search is ``VectorIndex``'s algorithm run over the mapped rows in chunks; once the
  segment's IVF index (:mod:`.ann`, a file in the same folder, built in the background) is
  there, it picks the shortlist instead of the scan, and the shortlist is rescored exactly from
  the same rows either way. An HNSW graph was measured and refused: far too slow to build on a
  small machine (docs/review.md).
* **Delta**: the sentences stored after the segment was built (ids above its mark), in a small
  in-process ``VectorIndex``; a periodic compaction folds it into a new segment.
* **Tombstones**: passages removed after the segment was built. Their rows are masked out of
  every search (rows of one passage are contiguous, found by binary search).

A rebuild writes a new segment folder beside the live one (``<name>.partial-<pid>`` renamed when
complete), then the caller swaps a pointer (``IndexState.segment``); processes open the new one
on their next refresh, while searches in flight finish on the object they started with. Nothing
here touches the ORM.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from review.checks.semantic import ann
from review.checks.semantic.index import (
    QUERY_BLOCK,
    VectorIndex,
    approximate_scores,
    shortlist_size,
)
from review.checks.semantic.passages import split_key
from review.checks.semantic.vectors import EMBEDDING_DIM, from_bytes, normalise_rows

FORMAT_VERSION = 1
# Rows scored per torch op: the (queries x rows) bf16 score block stays at most 64 x 32768 x 2
# bytes (4 MB), whatever the archive size; the matmul's own scratch (packed rows) stays as small.
_ROW_CHUNK = 32_768
_KINDS = {"a": ord("a"), "p": ord("p")}


def parse_item(item: str) -> int | None:
    """The SourcePassage id of an item key "a:12" / "p:12" (None for "d:45" and others)."""
    prefix, _, number = item.partition(":")
    return int(number) if prefix in _KINDS and number.isdigit() else None


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One sentence for :func:`write_segment`: rows must come sorted by (passage_id, number)."""

    passage_id: int
    kind: str  # "a" (archive) or "p" (published)
    number: int
    vector: np.ndarray | bytes  # float32 array, or the float16/float32 bytes of the database


def _to_bf16_bits(vectors: np.ndarray) -> np.ndarray:
    rows = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    return rows.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def write_segment(
    directory: Path,
    name: str,
    rows: Iterable[SegmentRow],
    *,
    dim: int = EMBEDDING_DIM,
    meta: dict[str, object] | None = None,
    on_block: object = None,
) -> Path:
    """Write a segment folder ``directory/name`` from ``rows``; returns its path.

    Written under a temporary name and renamed when complete, so a reader never sees half a
    segment. ``on_block()`` (if given) is called after each block of 8,192 rows (a caller
    renews its lease there). Side effects: files under ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    partial = directory / f"{name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    passages: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    count = 0
    last = (-1, -1)
    try:
        with (partial / "vectors.bf16").open("wb") as out:
            block: list[SegmentRow] = []

            def flush() -> None:
                nonlocal count
                if not block:
                    return
                matrix = np.stack(
                    [
                        from_bytes(bytes(r.vector), dim=dim)
                        if isinstance(r.vector, bytes | bytearray | memoryview)
                        else np.asarray(r.vector, dtype=np.float32).reshape(-1)
                        for r in block
                    ]
                )
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix /= np.where(norms > 0, norms, 1.0)
                out.write(_to_bf16_bits(matrix).tobytes())
                passages.append(np.array([r.passage_id for r in block], dtype=np.int64))
                numbers.append(np.array([r.number for r in block], dtype=np.int32))
                kinds.append(np.array([_KINDS[r.kind] for r in block], dtype=np.uint8))
                count += len(block)
                block.clear()
                if callable(on_block):
                    on_block()

            for row in rows:
                order = (row.passage_id, row.number)
                if order <= last:
                    raise ValueError(f"segment rows out of order at passage {row.passage_id}")
                last = order
                block.append(row)
                if len(block) >= 8192:
                    flush()
            flush()
        for filename, parts, dtype in (
            ("passages.npy", passages, np.int64),
            ("numbers.npy", numbers, np.int32),
            ("kinds.npy", kinds, np.uint8),
        ):
            np.save(partial / filename, np.concatenate(parts) if parts else np.zeros(0, dtype))
        info = {"format": FORMAT_VERSION, "dim": dim, "rows": count, **(meta or {})}
        (partial / "meta.json").write_text(json.dumps(info))
        os.rename(partial, final)  # atomic on one file system: the segment appears whole
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


class Segment:
    """A base segment, mapped read-only. Thread-safe (nothing in it changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.meta = json.loads((path / "meta.json").read_text())
        if self.meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"segment {path} has format {self.meta.get('format')}")
        self.dim = int(self.meta["dim"])
        self.size = int(self.meta["rows"])
        self.passages = np.load(path / "passages.npy", mmap_mode="r")
        self.numbers = np.load(path / "numbers.npy", mmap_mode="r")
        self.kinds = np.load(path / "kinds.npy", mmap_mode="r")
        if self.size:
            self.bits = np.memmap(
                path / "vectors.bf16", dtype=np.uint16, mode="r", shape=(self.size, self.dim)
            )
            with warnings.catch_warnings():
                # Read-only on purpose: torch only ever reads these pages.
                warnings.simplefilter("ignore", UserWarning)
                self.data = torch.from_numpy(self.bits).view(torch.bfloat16)
        else:
            self.bits = np.zeros((0, self.dim), dtype=np.uint16)
            self.data = torch.zeros((0, self.dim), dtype=torch.bfloat16)
        self._ann: ann.AnnShortlist | None = None
        self._ann_lock = threading.Lock()
        self._ann_mtime: float | None = None

    @property
    def ann(self) -> ann.AnnShortlist | None:
        """The segment's IVF shortlist once its file is there (None: the exact scan serves).

        Looked for at each search (one ``stat``), so an index built in the background by another
        process is swapped in by the next search here; a search in flight keeps what it took.
        """
        if not self.size:
            return None
        path = self.path / ann.FILENAME
        try:
            mtime = path.stat().st_mtime
        except OSError:
            self._ann, self._ann_mtime = None, None
            return None
        if mtime == self._ann_mtime:
            return self._ann  # this file was opened (or found stale) already
        with self._ann_lock:
            if mtime != self._ann_mtime:
                self._ann = ann.open_ann(self.path, rows=self.size, dim=self.dim)
                self._ann_mtime = mtime
            return self._ann

    def rows_of(self, passage_ids: Iterable[int]) -> np.ndarray:
        """The rows of these passages (contiguous per passage: rows are sorted by passage)."""
        ids = np.fromiter(passage_ids, dtype=np.int64)
        if not ids.size or not self.size:
            return np.zeros(0, dtype=np.int64)
        left = np.searchsorted(self.passages, ids, side="left")
        right = np.searchsorted(self.passages, ids, side="right")
        spans = [np.arange(lo, hi) for lo, hi in zip(left, right, strict=True) if hi > lo]
        return np.concatenate(spans).astype(np.int64) if spans else np.zeros(0, dtype=np.int64)

    def row_of(self, passage_id: int, number: int) -> int | None:
        for row in self.rows_of([passage_id]):
            if int(self.numbers[row]) == number:
                return int(row)
        return None

    def key(self, row: int) -> str:
        return f"{chr(int(self.kinds[row]))}:{int(self.passages[row])}#{int(self.numbers[row])}"

    def search(
        self, queries: np.ndarray, *, k: int, excluded_rows: np.ndarray, exact_scan: bool = False
    ) -> list[list[tuple[str, float]]]:
        """Per query, up to ``k`` (key, exact cosine) best first, never an excluded row.

        The shortlist comes from the IVF index when the segment has one (``exact_scan``: scan
        every row anyway, as a check of the ANN does). ``queries`` are unit-length float32 rows.
        Allocates only the per-chunk score block and the shortlist (private memory independent
        of the segment's size, bar the shortlist).
        """
        n = self.size
        if n == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        shortlist = shortlist_size(k)
        approximate = None if exact_scan else self.ann
        out: list[list[tuple[str, float]]] = []
        for start in range(0, queries.shape[0], QUERY_BLOCK):
            block = queries[start : start + QUERY_BLOCK]
            if approximate is not None:
                candidates = approximate.shortlist(block, min(shortlist, n), excluded_rows)
            else:
                candidates = self._shortlist(block, shortlist, excluded_rows)
            missing = candidates < 0  # the ANN found fewer than asked
            candidates = np.where(missing, 0, candidates)
            bits = self.bits[candidates.reshape(-1)].reshape(*candidates.shape, self.dim)
            exact = np.einsum("qd,qsd->qs", block, (bits.astype(np.uint32) << 16).view(np.float32))
            exact[missing] = -np.inf
            if excluded_rows.size:
                exact[np.isin(candidates, excluded_rows)] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            for q, positions in enumerate(order):
                hits: list[tuple[str, float]] = []
                seen: set[int] = set()
                for position in positions:
                    score = float(exact[q, position])
                    row = int(candidates[q, position])
                    if score == -np.inf:
                        break
                    if row in seen:
                        continue
                    seen.add(row)
                    hits.append((self.key(row), score))
                out.append(hits)
        return out

    def _shortlist(self, queries: np.ndarray, size: int, excluded_rows: np.ndarray) -> np.ndarray:
        """Rows (queries x m) of the best approximate scores, ``size`` per row chunk."""
        picked: list[np.ndarray] = []
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(queries))
            for start in range(0, self.size, _ROW_CHUNK):
                stop = min(start + _ROW_CHUNK, self.size)
                scores = approximate_scores(q, self.data[start:stop])
                if excluded_rows.size:
                    lo, hi = np.searchsorted(excluded_rows, [start, stop])
                    if hi > lo:
                        local = torch.from_numpy(excluded_rows[lo:hi] - start)
                        scores[:, local] = float("-inf")
                take = min(size, stop - start)
                top = torch.topk(scores, take, dim=1, sorted=False).indices.numpy()
                picked.append(top.astype(np.int64) + start)
        return np.concatenate(picked, axis=1)


class SemanticStore:
    """A project's semantic index in this process: the shared base segment (or none), the
    delta of newer sentences, and tombstones. Offers ``search`` / ``add`` / ``remove_item`` /
    ``len`` like :class:`VectorIndex`, so ``check_semantic`` takes either.

    Thread-safe: the delta locks itself; tombstones are replaced, never mutated in place.
    """

    def __init__(
        self, *, base: Segment | None = None, dim: int = EMBEDDING_DIM, namespace: str = ""
    ) -> None:
        self.base = base
        self.dim = base.dim if base is not None else dim
        self.namespace = namespace
        self.delta = VectorIndex(dim=self.dim, namespace=namespace)
        self._dead_rows = np.zeros(0, dtype=np.int64)  # sorted rows of the base masked out
        self._lock = threading.Lock()

    @property
    def segment_name(self) -> str:
        return self.base.name if self.base is not None else ""

    def __len__(self) -> int:
        base = self.base.size - self._dead_rows.size if self.base is not None else 0
        return base + len(self.delta)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if key in self.delta:
            return True
        item, number = split_key(key)
        pid = parse_item(item)
        if self.base is None or pid is None or number is None:
            return False
        row = self.base.row_of(pid, number)
        return row is not None and not np.isin(row, self._dead_rows).any()

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        self.delta.add(keys, vectors)

    def remove_item(self, item: str) -> int:
        """Drop every sentence of ``item`` ("a:12") from the delta and mask it in the base."""
        removed = self.delta.remove_item(item)
        pid = parse_item(item)
        if self.base is not None and pid is not None:
            rows = self.base.rows_of([pid])
            if rows.size:
                with self._lock:
                    merged = np.union1d(self._dead_rows, rows)
                    removed += merged.size - self._dead_rows.size
                    self._dead_rows = merged
        return removed

    def search(
        self,
        query_vectors: np.ndarray,
        *,
        k: int = 10,
        min_score: float = -1.0,
        exclude_keys: Collection[str] = (),
        exact_scan: bool = False,
    ) -> list[list[tuple[str, float]]]:
        """Like :meth:`VectorIndex.search`: per query, up to ``k`` (key, cosine) best first,
        at or above ``min_score``, none of ``exclude_keys`` (keys or whole items).
        ``exact_scan``: scan every row of the base even where its IVF index is there."""
        queries = normalise_rows(query_vectors, self.dim)
        found = self.delta.search(queries, k=k, min_score=min_score, exclude_keys=exclude_keys)
        if self.base is None or not self.base.size or k <= 0:
            return found
        dead = self._dead_rows
        excluded = self._excluded_rows(exclude_keys)
        if excluded.size:
            dead = np.union1d(dead, excluded)
        base = self.base.search(queries, k=k, excluded_rows=dead, exact_scan=exact_scan)
        merged: list[list[tuple[str, float]]] = []
        for mine, theirs in zip(found, base, strict=True):
            hits = sorted([*mine, *(h for h in theirs if h[1] >= min_score)], key=lambda h: -h[1])
            merged.append(hits[:k])
        return merged

    def _excluded_rows(self, exclude_keys: Collection[str]) -> np.ndarray:
        assert self.base is not None
        whole: list[int] = []
        single: list[int] = []
        for key in exclude_keys:
            item, number = split_key(key)
            pid = parse_item(item)
            if pid is None:
                continue
            if number is None:
                whole.append(pid)
            else:
                row = self.base.row_of(pid, number)
                if row is not None:
                    single.append(row)
        rows = self.base.rows_of(whole)
        if single:
            rows = np.union1d(rows, np.array(single, dtype=np.int64))
        return np.unique(rows)


# --- Segment folders --------------------------------------------------------------------------


def new_segment_name(upto: int) -> str:
    """A fresh name: the sentence mark it covers and a time and pid, never reused."""
    return f"seg-{upto:012d}-{time.time_ns():x}-{os.getpid()}"


def open_segment(directory: Path, name: str) -> Segment | None:
    """The named segment, or None when the folder is not there (not on this host's volume)."""
    path = directory / name
    if not name or not (path / "meta.json").is_file():
        return None
    return Segment(path)


def remove_old_segments(directory: Path, *, keep: Collection[str]) -> list[str]:
    """Delete segment folders not in ``keep`` (and partial ones over an hour old); returns
    their names. Processes that still map a deleted segment keep reading it (the inode lives
    until they unmap it) and move to the new one on their next refresh."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if entry.name in keep or not entry.name.startswith("seg-"):
            continue
        if ".partial-" in entry.name and time.time() - entry.stat().st_mtime < 3600:
            continue  # another process may still be writing it
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def iter_rows(
    rows: Iterator[tuple[int, str, int, bytes | memoryview]],
) -> Iterator[SegmentRow]:
    """SegmentRows from ``(passage_id, kind, number, vector bytes)`` tuples."""
    for passage_id, kind, number, vector in rows:
        yield SegmentRow(passage_id, kind, number, bytes(vector))
