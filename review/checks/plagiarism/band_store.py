"""Compact LSH band stores: the bucket tables behind the lexical plagiarism index.

A document (archive passage, draft, publication) is known to the store by a string key such as
``"a:123"`` and is represented by a 1-D ``uint64`` array of *band hashes* (one per LSH band per
indexed passage; computing them is :mod:`.shingles`'s job). Two documents are candidates for one
another when they share a band hash. The stores only answer "which keys share band hashes with
these", with the number of shared hashes as a rough rank.

Why not datasketch's ``MinHashLSH``: it keeps a Python dict of tuples per band and the
signatures, about 8.6 KB per document. Here the in-process store keeps 12 bytes per band entry in
sorted numpy arrays, and the Redis store packs a band entry into one member of a small sorted set.

Two implementations with the same interface (:class:`BandStore`):

* :class:`MemoryBandStore`, in the process: rebuilt from the database when a worker starts.
* :class:`RedisBandStore`, in Redis under a key prefix: shared by every worker, survives restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import redis

__all__ = ["BandStore", "MemoryBandStore", "RedisBandStore"]


@runtime_checkable
class BandStore(Protocol):
    """What the plagiarism index needs from a bucket table."""

    def add(self, key: str, band_hashes: np.ndarray) -> None:
        """Index ``key`` under ``band_hashes``, replacing whatever ``key`` had before."""
        ...

    def add_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """``add`` for many keys at once (a rebuild); later duplicates replace earlier ones."""
        ...

    def remove(self, key: str) -> bool:
        """Forget ``key``; True when it was there."""
        ...

    def query(self, band_hashes: np.ndarray) -> dict[str, int]:
        """Keys sharing at least one of ``band_hashes``, with how many distinct ones they share."""
        ...

    def __len__(self) -> int:
        """Number of keys indexed (keys whose text had no shingles count too)."""
        ...

    def __contains__(self, key: object) -> bool: ...

    def clear(self) -> None:
        """Forget every key."""
        ...


def _as_hashes(band_hashes: np.ndarray | Iterable[int]) -> np.ndarray:
    """The distinct hashes, sorted (``np.unique``'s result).

    Sorted and compared by hand: numpy 2's ``np.unique`` takes a hash-table path for these
    arrays that costs 7x more on a Chinese draft's ~600 window band hashes (100 vs 14 us)."""
    values = np.sort(np.asarray(band_hashes, dtype=np.uint64).ravel())
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


class MemoryBandStore:
    """In-process band store: sorted ``(band hash, doc id)`` arrays with a radix table.

    Layout, chosen for memory (about 13 bytes per band entry plus ~130 bytes per key):

    * a few *runs*, each a pair of arrays sorted by hash: ``uint64`` hashes and ``int32`` doc ids,
      plus a radix table (:class:`_Run`) that makes a lookup O(1) whatever the run's size.
      New entries go into a fresh small run; a run is merged into the one before it as soon as it
      is at least half its size, so there are O(log n) runs and every entry is re-sorted
      O(log n) times in all (the classic log-structured merge).
    * removal only marks the doc id dead (a tombstone) and forgets the key; once dead entries
      pass a quarter of all entries everything is compacted and doc ids are renumbered.

    Not thread-safe: one index per process, used by one thread at a time (the Django side holds
    it per project and serialises writes).
    """

    # Merge when the newest run reaches this fraction of the run before it.
    _MERGE_RATIO = 0.5
    # Compact when this share of the stored entries belongs to removed keys.
    _DEAD_RATIO = 0.25

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._runs: list[_Run] = []
        self._ids: dict[str, int] = {}
        self._keys: list[str | None] = []
        # Per doc id: alive flag and number of entries (to know when compaction pays).
        self._alive = np.zeros(0, dtype=bool)
        self._counts = np.zeros(0, dtype=np.int32)
        self._entries = 0
        self._dead_entries = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def keys(self) -> list[str]:
        return list(self._ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy arrays (the Python key dict and list come on top)."""
        arrays = sum(run.nbytes for run in self._runs)
        return arrays + self._alive.nbytes + self._counts.nbytes

    # -- writes -------------------------------------------------------------------------------

    def add(self, key: str, band_hashes: np.ndarray) -> None:
        self.add_many([(key, band_hashes)])

    def add_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        hash_parts: list[np.ndarray] = []
        doc_parts: list[np.ndarray] = []
        for key, band_hashes in items:
            # No compaction mid-batch: it would renumber the doc ids collected below.
            self._forget(key)
            doc = self._new_id(key)
            hashes = _as_hashes(band_hashes)
            self._counts[doc] = len(hashes)
            if len(hashes):
                hash_parts.append(hashes)
                doc_parts.append(np.full(len(hashes), doc, dtype=np.int32))
        if not hash_parts:
            self._maybe_compact()
            return
        hashes = np.concatenate(hash_parts)
        docs = np.concatenate(doc_parts)
        order = np.argsort(hashes, kind="stable")
        self._push_run(_Run(hashes[order], docs[order]))
        self._maybe_compact()

    def remove(self, key: str) -> bool:
        removed = self._forget(key)
        self._maybe_compact()
        return removed

    def _forget(self, key: str) -> bool:
        doc = self._ids.pop(key, None)
        if doc is None:
            return False
        self._keys[doc] = None
        self._alive[doc] = False
        self._dead_entries += int(self._counts[doc])
        return True

    def _maybe_compact(self) -> None:
        if self._dead_entries and self._dead_entries > self._DEAD_RATIO * max(self._entries, 1):
            self._compact()

    def _new_id(self, key: str) -> int:
        doc = len(self._keys)
        if doc >= len(self._alive):
            # Grow geometrically: single adds stay amortised O(1).
            grow = max(1024, len(self._alive))
            self._alive = np.concatenate([self._alive, np.zeros(grow, dtype=bool)])
            self._counts = np.concatenate([self._counts, np.zeros(grow, dtype=np.int32)])
        if doc > np.iinfo(np.int32).max:
            raise OverflowError("too many documents for one in-process band store")
        self._keys.append(key)
        self._ids[key] = doc
        self._alive[doc] = True
        return doc

    def _push_run(self, run: _Run) -> None:
        self._entries += len(run)
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-1]) >= self._MERGE_RATIO * len(
            self._runs[-2]
        ):
            newer = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(older.merged_with(newer))

    def _compact(self) -> None:
        """Drop the entries of removed keys and renumber doc ids densely."""
        n_ids = len(self._keys)
        alive = self._alive[:n_ids]
        new_id = np.cumsum(alive, dtype=np.int64) - 1
        merged_h: list[np.ndarray] = []
        merged_d: list[np.ndarray] = []
        for run in self._runs:
            keep = alive[run.docs]
            merged_h.append(run.hashes[keep])
            merged_d.append(new_id[run.docs[keep]].astype(np.int32))
        self._runs = []
        keys = [k for k in self._keys if k is not None]
        counts = self._counts[:n_ids][alive]
        self._keys = list(keys)
        self._ids = {k: i for i, k in enumerate(keys)}
        capacity = max(1024, len(keys))
        self._alive = np.zeros(capacity, dtype=bool)
        self._alive[: len(keys)] = True
        self._counts = np.zeros(capacity, dtype=np.int32)
        self._counts[: len(keys)] = counts
        self._entries = 0
        self._dead_entries = 0
        if merged_h:
            hashes = np.concatenate(merged_h)
            docs = np.concatenate(merged_d)
            order = np.argsort(hashes, kind="stable")
            if len(hashes):
                self._push_run(_Run(hashes[order], docs[order]))

    # -- reads --------------------------------------------------------------------------------

    def query(self, band_hashes: np.ndarray) -> dict[str, int]:
        wanted = _as_hashes(band_hashes)
        if not len(wanted) or not self._runs:
            return {}
        found = [run.find(wanted) for run in self._runs]
        ids, counts = np.unique(np.concatenate(found), return_counts=True)
        live = self._alive[ids]
        keys = self._keys
        return {
            keys[i]: c  # type: ignore[misc]  # alive ids always have a key
            for i, c in zip(ids[live].tolist(), counts[live].tolist(), strict=True)
        }


class _Run:
    """Band entries sorted by hash, with a radix table over the hashes' top bits.

    ``table[p]`` is the index of the first entry whose hash has top bits >= ``p``, so the
    entries of one hash lie in ``table[p]:table[p + 1]`` (about 4 entries: the table has one
    slot per 4 entries, ~1 byte per entry). A lookup is two memory reads instead of a binary
    search through a multi-megabyte array, which keeps query time flat as the archive grows.
    Runs too small to need it use ``searchsorted``.
    """

    __slots__ = ("docs", "hashes", "shift", "table")

    _ENTRIES_PER_SLOT = 4
    _MIN_TABLE_ENTRIES = 4096

    def __init__(self, hashes: np.ndarray, docs: np.ndarray) -> None:
        self.hashes = hashes
        self.docs = docs
        self.table: np.ndarray | None = None
        self.shift = np.uint64(64)
        if len(hashes) >= self._MIN_TABLE_ENTRIES:
            bits = int(np.ceil(np.log2(len(hashes) / self._ENTRIES_PER_SLOT)))
            self.shift = np.uint64(64 - bits)
            counts = np.bincount((hashes >> self.shift).astype(np.int64), minlength=1 << bits)
            table = np.zeros((1 << bits) + 1, dtype=np.int64)
            np.cumsum(counts, out=table[1:])
            self.table = table.astype(np.int32 if len(hashes) < 2**31 else np.int64)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        table = self.table.nbytes if self.table is not None else 0
        return self.hashes.nbytes + self.docs.nbytes + table

    def merged_with(self, newer: _Run) -> _Run:
        hashes = np.concatenate([self.hashes, newer.hashes])
        docs = np.concatenate([self.docs, newer.docs])
        # Timsort ("stable") finds the two sorted runs and merges them in linear time.
        order = np.argsort(hashes, kind="stable")
        return _Run(hashes[order], docs[order])

    def find(self, wanted: np.ndarray) -> np.ndarray:
        """Doc ids of every entry whose hash is in ``wanted`` (sorted, distinct)."""
        if self.table is None:
            lo = np.searchsorted(self.hashes, wanted, side="left")
            hi = np.searchsorted(self.hashes, wanted, side="right")
        else:
            slots = (wanted >> self.shift).astype(np.int64)
            lo = self.table[slots].astype(np.int64)
            hi = self.table[slots + 1].astype(np.int64)
        sizes = hi - lo
        total = int(sizes.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int32)
        # Every entry of every slot touched, flattened: position and the hash it must equal.
        starts = np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
        positions = starts + np.arange(total)
        equal = self.hashes[positions] == np.repeat(wanted, sizes)
        return self.docs[positions[equal]]


# -- Redis ------------------------------------------------------------------------------------

# A band entry is one member of a sorted set, ``8-byte big-endian band hash + key (utf-8)``,
# score 0, so ZRANGEBYLEX finds all keys under one hash. The sets are grouped by the hash's top
# 16 bits: at most 65,536 Redis keys, each a compact listpack while it has <= 128 members
# (zset-max-listpack-entries), i.e. up to about 250k documents at 32 bands; a set per bucket
# would instead cost a Redis key (~100 bytes) per band entry. UTF-8 never contains byte 0xFF, so
# ``hash + "\xff"`` bounds every member that starts with ``hash``.
#
# Per key, ``{prefix}:k:{key}`` holds the packed band hashes so the key can be removed, and
# ``{prefix}:keys`` is the set of keys (for len). Writes are Lua scripts so a reader never sees
# half an update. The scripts build key names from the prefix, which is fine for a single Redis
# server but not for Redis Cluster.

_LUA_GROUP = """
local function group_key(prefix, h)
  return prefix .. string.format('%02x%02x', string.byte(h, 1), string.byte(h, 2))
end
"""

# KEYS: [1] per-key hashes, [2] key set. ARGV: [1] key, [2] group prefix, [3] packed new hashes.
_LUA_ADD = (
    _LUA_GROUP
    + """
local key, gprefix, new = ARGV[1], ARGV[2], ARGV[3]
local old = redis.call('GET', KEYS[1])
if old then
  for i = 1, #old, 8 do
    local h = string.sub(old, i, i + 7)
    redis.call('ZREM', group_key(gprefix, h), h .. key)
  end
end
for i = 1, #new, 8 do
  local h = string.sub(new, i, i + 7)
  redis.call('ZADD', group_key(gprefix, h), 0, h .. key)
end
redis.call('SET', KEYS[1], new)
redis.call('SADD', KEYS[2], key)
return 1
"""
)

# KEYS: [1] per-key hashes, [2] key set. ARGV: [1] key, [2] group prefix.
_LUA_REMOVE = (
    _LUA_GROUP
    + """
local key, gprefix = ARGV[1], ARGV[2]
local old = redis.call('GET', KEYS[1])
if not old then
  return 0
end
for i = 1, #old, 8 do
  local h = string.sub(old, i, i + 7)
  redis.call('ZREM', group_key(gprefix, h), h .. key)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], key)
return 1
"""
)

# ARGV: [1] group prefix, [2] the packed hashes, 8 bytes each, in one argument. The group keys
# are derived in the script (as in the add and remove scripts) instead of being sent as one KEYS
# entry per hash: a 300-word draft looks up about 1,900 band hashes, and encoding 3,800 RESP
# arguments in Python cost about a fifth of a check's Redis time (measured 24 -> 19 ms p50 on
# 10k passages). Returns a flat list key, count, key, count...
_LUA_QUERY = (
    _LUA_GROUP
    + """
local gprefix, packed = ARGV[1], ARGV[2]
local counts = {}
for i = 1, #packed, 8 do
  local h = string.sub(packed, i, i + 7)
  local members = redis.call('ZRANGEBYLEX', group_key(gprefix, h), '[' .. h, '(' .. h .. '\\255')
  for _, m in ipairs(members) do
    local key = string.sub(m, 9)
    counts[key] = (counts[key] or 0) + 1
  end
end
local out = {}
for key, c in pairs(counts) do
  out[#out + 1] = key
  out[#out + 1] = c
end
return out
"""
)

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisBandStore:
    """Band store in Redis under ``prefix``, shared by every worker that uses the same prefix.

    Side effects: every method talks to Redis; ``clear`` deletes every Redis key that starts with
    ``prefix + ":"``. Give each index its own prefix (the plagiarism index derives it from the
    project namespace and its parameters).
    """

    # Commands per pipeline round trip for bulk adds, and hashes per query script call.
    _BATCH = 500
    _QUERY_CHUNK = 4096

    def __init__(self, url: str, *, prefix: str, client: redis.Redis | None = None) -> None:
        import redis as redis_lib  # imported lazily: the in-process store must not need Redis

        if not prefix or prefix.endswith(":"):
            raise ValueError("prefix must be non-empty and must not end with ':'")
        self.prefix = prefix
        self._redis: redis.Redis = client or redis_lib.Redis.from_url(url)
        self._keyset = f"{prefix}:keys"
        self._group_prefix = f"{prefix}:g:"
        self._add_script = self._redis.register_script(_LUA_ADD)
        self._remove_script = self._redis.register_script(_LUA_REMOVE)
        self._query_script = self._redis.register_script(_LUA_QUERY)

    def _key_entry(self, key: str) -> str:
        return f"{self.prefix}:k:{key}"

    def add(self, key: str, band_hashes: np.ndarray) -> None:
        packed = _as_hashes(band_hashes).astype(">u8").tobytes()
        self._add_script(
            keys=[self._key_entry(key), self._keyset], args=[key, self._group_prefix, packed]
        )

    def add_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pending = 0
        for key, band_hashes in items:
            packed = _as_hashes(band_hashes).astype(">u8").tobytes()
            self._add_script(
                keys=[self._key_entry(key), self._keyset],
                args=[key, self._group_prefix, packed],
                client=pipe,
            )
            pending += 1
            if pending >= self._BATCH:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()

    def remove(self, key: str) -> bool:
        removed = self._remove_script(
            keys=[self._key_entry(key), self._keyset], args=[key, self._group_prefix]
        )
        return bool(removed)

    def query(self, band_hashes: np.ndarray) -> dict[str, int]:
        wanted = _as_hashes(band_hashes)
        result: dict[str, int] = {}
        for start in range(0, len(wanted), self._QUERY_CHUNK):
            packed = wanted[start : start + self._QUERY_CHUNK].astype(">u8").tobytes()
            flat = self._query_script(keys=[], args=[self._group_prefix, packed])
            for i in range(0, len(flat), 2):
                key = flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])
                result[key] = result.get(key, 0) + int(flat[i + 1])
        return result

    def __len__(self) -> int:
        return int(self._redis.scard(self._keyset))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._redis.sismember(self._keyset, key))

    def clear(self) -> None:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + ":*"
        batch: list[bytes] = []
        for name in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                self._redis.unlink(*batch)
                batch = []
        if batch:
            self._redis.unlink(*batch)
