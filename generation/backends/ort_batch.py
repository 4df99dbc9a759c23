"""Every ``generate`` call on one ONNX session in one batch (continuous batching), CPU.

A call's rows join between two passes (its prompt prefilled once by ``ort_loop``), are stepped
with every other call's rows in one forward pass, and leave when their candidates end. A row's
logits do not depend on the other rows (the attention takes each row's length from its mask), so
a call writes the same candidates alone or in the batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from generation.backends.ort_loop import BoundCache, LoopGenerator, LoopModel

logger = logging.getLogger(__name__)


class BatchMember:
    """One call's rows in a :class:`SharedBatch`.

    The call's thread sees the calls of :class:`LoopGenerator`: ``append_tokens`` (joins the
    batch; its prompt is prefilled once), ``get_logits`` (waits for the pass that computes them,
    or runs it), ``set_next_tokens``, ``keep_rows`` and ``close`` (leaves the batch).
    """

    def __init__(self, batch: SharedBatch, *, rows: int, max_length: int) -> None:
        self.batch = batch
        self.rows = rows
        self.max_length = max_length
        self.prompt: list[int] = []
        self.prefix = 0  # the prompt's preamble, in tokens (LoopGenerator.append_tokens)
        self.length = 0  # positions of each row in the cache (the same for every row)
        self.logits: np.ndarray | None = None  # delivered, not yet read
        self.next_tokens: list[int] | None = None
        self.keep: list[int] | None = None
        self.left = False
        self.error: BaseException | None = None

    def append_tokens(self, ids: np.ndarray, *, prefix: int = 0) -> None:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[0] != self.rows or not (ids == ids[0]).all():
            raise ValueError("a shared batch takes one prompt, the same in every row")
        self.prompt = [int(t) for t in ids[0]]
        self.prefix = prefix
        with self.batch._cond:
            self.batch._joining.append(self)
            self.batch._cond.notify_all()

    def get_logits(self) -> np.ndarray:
        batch = self.batch
        with batch._cond:
            while self.logits is None and self.error is None:
                # No thread of its own: a waiting call runs the next pass when one is due and
                # nobody runs it (a call alone steps in its own thread, as without a batch).
                if not batch._running and batch._due():
                    batch._run_pass()
                    continue
                batch._cond.wait()
            if self.error is not None:
                raise RuntimeError(f"shared batch: {self.error}") from self.error
            logits, self.logits = self.logits, None
        return logits[:, None, :]

    def keep_rows(self, rows: Sequence[int]) -> None:
        rows = list(rows)
        if rows != list(range(self.rows)):
            with self.batch._cond:
                self.keep = rows

    def set_next_tokens(self, tokens: Sequence[int]) -> None:
        expected = len(self.keep) if self.keep is not None else self.rows
        if len(tokens) != expected:
            raise ValueError(f"{len(tokens)} tokens for {expected} rows")
        with self.batch._cond:
            self.next_tokens = [int(t) for t in tokens]
            self.batch._cond.notify_all()

    def close(self) -> None:
        batch = self.batch
        with batch._cond:
            self.left = True
            if self in batch._joining:
                batch._joining.remove(self)
            if not batch._running and not batch._joining and all(m.left for m in batch._members):
                batch._members, batch._cache = [], None  # the last call left: free the cache
            batch._cond.notify_all()


class SharedBatch:
    """Every call on one session in one batch (continuous batching): a call's rows join between
    two passes, are stepped with every other call's rows in one forward pass, and leave when
    their candidates end, while the other calls go on.

    No thread of its own: a pass runs in the thread of a call that waits for its logits when
    every call in the batch has handed in its next tokens (or a call is joining), so a call
    alone steps in its own thread with no hand-over. Each call samples its rows' tokens from the
    logits it is handed, in its own thread. A pass waits for every call's tokens: a call is as
    fast as the batch, and a long call does not hold a short one back (the short one's rows
    leave when it ends).

    A row's logits do not depend on the other rows of the pass (rows of different lengths: the
    attention takes each row's length from its mask, and the new token's position from it):
    bit-identical here to the row alone. The cache is one buffer per layer and kind of
    (rows, kv heads, capacity, head size); capacity is the longest call's ``max_length``.
    """

    def __init__(self, model: LoopModel) -> None:
        self.model = model
        self._cond = threading.Condition()
        self._members: list[BatchMember] = []  # in row order
        self._joining: list[BatchMember] = []
        self._running = False  # a pass is running (in some call's thread)
        self._cache: _Cache | None = None

    def member(self, *, batch_size: int, max_length: int) -> BatchMember:
        return BatchMember(self, rows=batch_size, max_length=max_length)

    def _stepping(self) -> bool:
        members = self._members
        return bool(members) and all(m.left or m.next_tokens is not None for m in members)

    def _due(self) -> bool:
        return bool(self._joining) or self._stepping()

    def _run_pass(self) -> None:
        """One pass, called with the lock held and ``_due()``; releases it while computing."""
        self._running = True
        stepping = self._stepping()
        joining, self._joining = self._joining, []
        # What each member asked for, taken now: its thread waits until it is served.
        plan = [(m, m.left, m.keep, m.next_tokens) for m in self._members] if stepping else []
        for member, *_ in plan:
            member.keep, member.next_tokens = None, None
        self._cond.release()
        try:
            delivered = self._pass(plan, joining, stepping)
            failure = None
        except BaseException as exc:  # every call in the batch fails with the reason
            logger.exception("shared batch pass failed")
            delivered, failure = [], exc
        finally:
            self._cond.acquire()
        if failure is not None:
            for member in [*self._members, *joining]:
                member.error = failure
            self._members, self._cache = [], None
        for member, logits in delivered:
            member.logits = logits
        if not self._members and not self._joining:
            self._cache = None  # the batch is empty: free its cache
        self._running = False
        self._cond.notify_all()

    def _pass(
        self,
        plan: list[tuple[BatchMember, bool, list[int] | None, list[int] | None]],
        joining: list[BatchMember],
        stepping: bool,
    ) -> list[tuple[BatchMember, np.ndarray]]:
        delivered: list[tuple[BatchMember, np.ndarray]] = []
        if stepping:
            # Rows that stay: a member that left takes its rows out, one that dropped some
            # keeps the rest. Then one pass over every row with its next token.
            index: list[int] = []
            staying: list[BatchMember] = []
            start = 0
            for member, left, keep, _ in plan:
                current = member.rows  # its rows in the cache now, from ``start`` on
                if not left:
                    kept = keep if keep is not None else list(range(current))
                    index.extend(start + r for r in kept)
                    member.rows = len(kept)
                    staying.append(member)
                start += current
            with self._cond:
                self._members = staying
            assert self._cache is not None
            self._cache.keep(np.asarray(index, dtype=np.intp), staying)
            if staying:
                tokens = [t for member, left, _, nxt in plan if not left for t in (nxt or [])]
                logits = self._cache.step(staying, tokens)
                offset = 0
                for member in staying:
                    delivered.append((member, logits[offset : offset + member.rows]))
                    offset += member.rows
        for member in joining:
            if member.left:
                continue
            if self._cache is None:
                self._cache = _Cache(self.model)
            delivered.append((member, self._cache.join(member, self._members)))
            with self._cond:
                self._members = [*self._members, member]
        return delivered


class _Cache:
    """The shared batch's cache: rows of every member, in member order."""

    def __init__(self, model: LoopModel) -> None:
        self.model = model
        self.bound: BoundCache | None = None

    @property
    def rows(self) -> int:
        return self.bound.rows if self.bound is not None else 0

    @property
    def capacity(self) -> int:
        return self.bound.capacity if self.bound is not None else 0

    def _bind(self, buffers: list[np.ndarray]) -> None:
        self.bound = BoundCache(self.model, buffers)

    def keep(self, index: np.ndarray, members: list[BatchMember]) -> None:
        if len(index) == self.rows and (index == np.arange(self.rows)).all():
            return
        assert self.bound is not None
        used = max((m.length for m in members), default=0)
        self._bind([LoopGenerator._copy_rows(b, index, used) for b in self.bound.buffers])

    def join(self, member: BatchMember, members: list[BatchMember]) -> np.ndarray:
        """Prefill ``member``'s prompt once, add its rows (a copy of that cache each), and
        return their first logits."""
        prefill = LoopGenerator(self.model, batch_size=1, max_length=len(member.prompt))
        prefill.append_tokens(np.array([member.prompt]), prefix=member.prefix)
        first = prefill.get_logits()[:, -1, :]
        member.length = len(member.prompt)
        capacity = max(self.capacity, member.max_length)
        used = max((m.length for m in members), default=0)
        shape = (self.rows + member.rows, self.model.kv_heads, capacity, self.model.head_size)
        grown = []
        current = self.bound.buffers if self.bound is not None else []
        for index, old in enumerate(prefill.buffers):
            buffer = np.zeros(shape, dtype=old.dtype)
            if self.rows:
                buffer[: self.rows, :, :used] = current[index][:, :, :used]
            buffer[self.rows :, :, : member.length] = old[0, :, : member.length]
            grown.append(buffer)
        prefill.close()
        self._bind(grown)
        return np.repeat(first, member.rows, axis=0)

    def step(self, members: list[BatchMember], tokens: list[int]) -> np.ndarray:
        total = max(m.length for m in members) + 1
        if total > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions")
        mask = np.zeros((len(tokens), total), dtype=np.int64)
        row = 0
        for member in members:
            mask[row : row + member.rows, : member.length + 1] = 1
            row += member.rows
        assert self.bound is not None
        logits = self.bound.run(np.asarray(tokens)[:, None], mask)
        for member in members:
            member.length += 1
        return logits
