"""An approximate shortlist for a base segment: a faiss IVF index of int8 codes beside the vectors.

A scan of every bf16 row grows with the archive (about 3 s a draft at a million sentences on a
busy 2-core machine); an inverted-file index reads ``nprobe`` lists of about 256 rows each per
query, whatever the archive's size, so a search costs about the same at 100k and at a million.
The ANN only picks the shortlist: every candidate is rescored exactly from the segment's own
rows, as after the exact scan, so scores are never approximate, only the candidate set.

Why IVF (faiss) and not an HNSW graph (usearch, faiss HNSW): on 2 busy cores usearch inserted
about 1,100 vectors a second and faiss HNSW about 2,100 (8-15 minutes at a million), while IVF
trains on a sample and assigns a million rows in a few minutes; its recall is set by ``nprobe``
(docs/review.md has the figures). int8 codes (384 bytes a row) rather than float: the codes only
rank candidates.

The index is a file in the segment's folder (``ann-v<format>.faiss``), written under a temporary
name and renamed, so a process sees none or all of it; it is mapped read-only (faiss's
``IO_FLAG_MMAP``), so every process of the host shares its pages. A file whose row count or
dimension differs from the segment's is stale: it is ignored (the exact scan serves) and rebuilt.
faiss's OpenMP threads are its own (not torch's): searches run on one, a build on those it is
given, and the setting is put back to one afterwards.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

# faiss logs at INFO each SIMD build it could not load before the one it uses: noise in logs.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
import faiss  # noqa: E402  (after quieting its loader)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILENAME = f"ann-v{FORMAT_VERSION}.faiss"
ROWS_PER_LIST = 256  # rows per inverted list: the work per probed list, at any archive size
TRAIN_PER_LIST = 20  # k-means training rows per list (a sample of the segment)
DEFAULT_NPROBE = 48  # lists read per query
_BLOCK = 65_536  # rows converted from bf16 and added per step (bounds the float32 staging)

faiss.omp_set_num_threads(1)
_threads_lock = threading.Lock()


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def build(
    directory: Path,
    bits: np.ndarray,
    *,
    threads: int = 1,
    seed: int = 0,
    rows_per_list: int = ROWS_PER_LIST,
    block_rows: int = _BLOCK,
    on_block: Callable[[], None] | None = None,
) -> Path:
    """Build the IVF index of a segment's bf16 rows (``bits``: rows x dim uint16) and write it
    into ``directory``; returns the file's path. Side effects: the file (and a temporary one
    while it is written, removed on failure); faiss's thread count while it runs.

    ``on_block()`` (if given) is called after each block of added rows (a caller renews its
    lease there, or a test stops it there).
    """
    n, dim = bits.shape
    if n == 0:
        raise ValueError("no rows to index")
    nlist = max(1, n // rows_per_list)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, nlist * TRAIN_PER_LIST), replace=False))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = 10
    index.cp.seed = seed
    # faiss warns below 39 training rows per list; 20 keeps the lists balanced enough here.
    index.cp.min_points_per_centroid = 1
    final = directory / FILENAME
    partial = directory / f"{FILENAME}.partial-{os.getpid()}-{threading.get_ident()}"
    with _threads_lock:
        faiss.omp_set_num_threads(max(1, threads))
        try:
            index.train(np.ascontiguousarray(_bf16_to_f32(bits[sample])))
            for start in range(0, n, block_rows):
                block = _bf16_to_f32(bits[start : start + block_rows])
                index.add(np.ascontiguousarray(block))
                if on_block is not None:
                    on_block()
            faiss.write_index(index, str(partial))
            os.rename(partial, final)  # atomic: readers see no file or a whole one
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            faiss.omp_set_num_threads(1)
    return final


LOCK_FILENAME = "ann.lock"


def build_once(
    directory: Path,
    bits: np.ndarray,
    *,
    threads: int = 1,
    block_rows: int = _BLOCK,
    on_block: Callable[[], None] | None = None,
) -> bool:
    """Build the folder's index unless it is current or another process is building it (an
    exclusive ``flock`` on ``ann.lock`` in the folder, released by the kernel when its holder
    dies); True when this call built it. A killed build's temporary file is deleted first.
    Side effects: as :func:`build`; the lock file."""
    rows, dim = bits.shape
    with (directory / LOCK_FILENAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if is_current(directory, rows=rows, dim=dim):
            return False  # built by the holder before us
        remove_partials(directory)
        build(directory, bits, threads=threads, block_rows=block_rows, on_block=on_block)
        return True


def remove_partials(directory: Path) -> int:
    """Delete temporary files a killed build left (call while holding the build lock)."""
    count = 0
    for entry in directory.glob(f"{FILENAME}.partial-*"):
        entry.unlink(missing_ok=True)
        count += 1
    return count


class AnnShortlist:
    """A mapped IVF index of one segment. Thread-safe: searches only read it."""

    def __init__(self, index: faiss.Index, *, nprobe: int = DEFAULT_NPROBE) -> None:
        self.index = index
        self.nprobe = nprobe
        self.rows = int(index.ntotal)

    def shortlist(self, queries: np.ndarray, size: int, excluded_rows: np.ndarray) -> np.ndarray:
        """Rows (queries x ``size``) of the best approximate scores, -1 where a query found
        fewer; never an excluded row."""
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self.nprobe, int(self.index.nlist))
        keep: list[object] = []  # the selectors must outlive the search
        if excluded_rows.size:
            excluded = np.ascontiguousarray(excluded_rows, dtype=np.int64)
            inner = faiss.IDSelectorBatch(excluded.size, faiss.swig_ptr(excluded))
            selector = faiss.IDSelectorNot(inner)
            keep += [excluded, inner, selector]
            params.sel = selector
        _, rows = self.index.search(
            np.ascontiguousarray(queries, dtype=np.float32), size, params=params
        )
        return rows.astype(np.int64, copy=False)


def open_ann(directory: Path, *, rows: int, dim: int) -> AnnShortlist | None:
    """The segment's index, or None when there is none or it is stale (other row count or
    dimension) or unreadable; a stale or unreadable one is logged, to be rebuilt."""
    path = directory / FILENAME
    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as exc:
        logger.warning("ANN index %s unreadable: %s", path, exc)
        return None
    if int(index.ntotal) != rows or int(index.d) != dim:
        logger.warning("ANN index %s is stale (%s rows for %s)", path, index.ntotal, rows)
        return None
    return AnnShortlist(index)


def is_current(directory: Path, *, rows: int, dim: int) -> bool:
    return open_ann(directory, rows=rows, dim=dim) is not None
