"""Per-candidate sampling on numpy logits, shared by the local backends (transformers, ONNX).

Why our own sampler: ONNX Runtime GenAI (like CTranslate2) seeds sampling per generator, not per
row, and transformers' ``generate`` draws every row from one global RNG; so neither can give each
candidate of a batch its own reproducible seed. Here every candidate owns a
``numpy.random.Generator(PCG64(seed))`` and the model only computes logits: the backend then
forces the chosen token (a one-hot row for ONNX Runtime GenAI, the next input for the loops).

A candidate is reproducible from its seed, its settings, this sampler's version (``sampler`` in
each draft's provenance) and bit-identical logits: the same backend build and weights on the same
kind of CPU. A row's logits depend neither on the other rows of its batch nor on a call stepping
beside it; the thread count (``threads``) is recorded too, as a kernel that splits a reduction
across threads could differ (measured: docs/generation.md; the tests check both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from generation.backends.types import SamplingSettings

# v2: v1 with the top k chosen exactly as "the k highest logits, ties by token id" (v1 left a tie
# at the k-th logit to numpy's partition) and found about 2x faster; otherwise the same draws
# (2,560 draws of random logits and settings gave the same tokens as v1).
SAMPLER_VERSION = "studio-pcg64-topk-topp-v2"
# The top k is looked for among the logits at least the k-th highest of every _STRIDE-th one.
_STRIDE = 16


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` highest values of ``x``, highest first, ties by id.

    The k-th highest of every 16th value is at most the k-th highest of all, so the top k are
    among the values at least that high (about 16k of them): two partitions, of 3k values and
    of several hundred, instead of one of the whole vocabulary (about half the time), then the
    exact top k of those, ties at the k-th value broken by id."""
    n = x.shape[0]
    candidates: np.ndarray | None = None
    if k < n:
        sample = x[::_STRIDE]
        if sample.shape[0] > k:
            found = np.flatnonzero(x >= np.partition(sample, -k)[-k])
            if found.shape[0] >= k:  # fewer only with NaN logits: then look at them all
                candidates = found
    if candidates is None:
        candidates = np.arange(n)
    if k < candidates.shape[0]:
        values = x[candidates]
        kth = np.partition(values, -k)[-k]
        above = candidates[values > kth]
        tied = candidates[values == kth]
        candidates = np.concatenate([above, tied[: k - above.shape[0]]])
    return candidates[np.lexsort((candidates, -x[candidates]))]


def _banned_ngram_tokens(history: Sequence[int], size: int) -> list[int]:
    """Tokens that would repeat an n-gram of ``size`` already in ``history`` (as HF does)."""
    if size <= 0 or len(history) < size:
        return []
    prefix = tuple(history[len(history) - size + 1 :])
    banned = []
    for start in range(len(history) - size + 1):
        if tuple(history[start : start + size - 1]) == prefix:
            banned.append(history[start + size - 1])
    return banned


def steer_ids(tokenizer: object, terms: Sequence[str]) -> list[list[list[int]]]:
    """Per term, the token ids of the ways a text writes it: after a space as given, with a
    capital, in lower case, and at the very start (no space before it)."""
    out = []
    for term in terms:
        term = term.strip()
        if not term:
            continue
        forms = {f" {term}", f" {term[:1].upper()}{term[1:]}", f" {term.lower()}"}
        forms.add(f"{term[:1].upper()}{term[1:]}")
        ways = [
            list(tokenizer(form, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
            for form in sorted(forms)
        ]
        out.append([w for w in ways if w])
    return out


class RowSampler:
    """Chooses the next token of every candidate, each from its own random stream."""

    # Off only to measure what recording costs (bench/bench_quality.py).
    record_logprobs = True

    def __init__(
        self,
        *,
        seeds: Sequence[int],
        settings: SamplingSettings,
        eos_ids: Sequence[int],
        temperatures: Sequence[float] | None = None,
        steer: Sequence[Sequence[Sequence[int]]] = (),
    ) -> None:
        self.settings = settings
        # Per steered term, the token ids of each way of writing it (``steer_ids``); per row,
        # the terms it has not written yet.
        self.steer = [[list(ids) for ids in term if ids] for term in steer]
        self._steer_left = [
            set(range(len(self.steer))) if settings.steer_bias else set() for _ in seeds
        ]
        self.temperatures = (
            list(temperatures) if temperatures else [settings.temperature] * len(seeds)
        )
        self.rngs = [np.random.Generator(np.random.PCG64(int(s) % 2**63)) for s in seeds]
        self.eos_ids = [int(e) for e in eos_ids]
        self.top_k = max(0, int(settings.top_k or 0))
        self.top_p = float(settings.top_p) if 0 < settings.top_p < 1.0 else 1.0
        # Per candidate: the sum of the log-probabilities of its chosen tokens under the model
        # (the raw logits, before temperature and penalties) and their count, for the draft's
        # fluency signal: free here, the logits are at hand.
        self.logprob_sums = [0.0] * len(seeds)
        self.logprob_counts = [0] * len(seeds)
        self._buffer: np.ndarray | None = None

    def mean_logprob(self, row: int) -> float | None:
        """Mean natural-log probability of the tokens ``row`` chose so far (None: none)."""
        count = self.logprob_counts[row]
        return self.logprob_sums[row] / count if count else None

    def _record(self, row: int, logits: np.ndarray, token: int) -> int:
        raw = np.asarray(logits, dtype=np.float32)
        # One buffer per sampler: the log-sum-exp of a 49k vocabulary without allocating.
        if self._buffer is None or self._buffer.shape != raw.shape:
            self._buffer = np.empty_like(raw)
        top = raw.max()
        np.subtract(raw, top, out=self._buffer)
        np.exp(self._buffer, out=self._buffer)
        log_total = float(top) + math.log(float(self._buffer.sum()))
        self.logprob_sums[row] += float(raw[token]) - log_total
        self.logprob_counts[row] += 1
        return token

    def choose(self, row: int, logits: np.ndarray, history: Sequence[int], step: int) -> int:
        """The token candidate ``row`` writes at ``step`` (its log-probability recorded)."""
        token = self._choose(row, logits, history, step)
        return self._record(row, logits, token) if self.record_logprobs else token

    def _steer_row(self, row: int, x: np.ndarray, written: Sequence[int]) -> None:
        """Add ``steer_bias`` to the logits of the tokens that start a term the row has not
        written yet or, when it has just written the start of one, only to the tokens that go
        on with it (a term is written whole; once written it is no longer steered towards)."""
        left = self._steer_left[row]
        written = list(written)
        starts: set[int] = set()
        going_on: set[int] = set()
        for term in sorted(left):
            ways = self.steer[term]
            if any(
                written[len(written) - len(ids) :] == ids
                for ids in ways
                if len(written) >= len(ids)
            ):
                left.discard(term)
                continue
            for ids in ways:
                starts.add(ids[0])
                # The longest start of this way of writing the term that ends what was written.
                for k in range(min(len(ids) - 1, len(written)), 0, -1):
                    if written[-k:] == ids[:k]:
                        going_on.add(ids[k])
                        break
        boost = [t for t in (going_on or starts) if t < x.shape[0]]
        if boost:
            x[boost] += np.float32(self.settings.steer_bias)

    def _choose(self, row: int, logits: np.ndarray, history: Sequence[int], step: int) -> int:
        """The token candidate ``row`` writes at ``step`` given next-token ``logits``.

        ``history`` is the prompt followed by what the candidate wrote so far (the repetition
        penalty and the n-gram ban look at both, as in transformers).
        """
        s = self.settings
        x = np.asarray(logits, dtype=np.float32).copy()
        if s.repetition_penalty != 1.0 and len(history):
            seen = np.unique(np.asarray(history, dtype=np.int64))
            seen = seen[seen < x.shape[0]]
            values = x[seen]
            x[seen] = np.where(
                values < 0, values * s.repetition_penalty, values / s.repetition_penalty
            )
        if s.no_repeat_ngram_size:
            banned = _banned_ngram_tokens(history, s.no_repeat_ngram_size)
            if banned:
                x[banned] = -np.inf
        if step < s.min_new_tokens and self.eos_ids:
            x[self.eos_ids] = -np.inf
        if self._steer_left[row]:
            self._steer_row(row, x, history[len(history) - step :] if step else [])
        temperature = self.temperatures[row]
        if temperature <= 0:
            return int(np.argmax(x))
        # A positive temperature keeps the order: only the k finalists are divided by it.
        k = self.top_k if self.top_k and self.top_k < x.shape[0] else x.shape[0]
        top = top_k(x, k)
        values = (x[top] / np.float32(temperature)).astype(np.float64)
        values -= values[0]
        probs = np.exp(values)
        probs /= probs.sum()
        if self.top_p < 1.0:
            cumulative = np.cumsum(probs)
            # Drop a token when the tokens ranked above it already reach top_p; the first stays.
            keep = (cumulative - probs) < self.top_p
            probs = np.where(keep, probs, 0.0)
            probs /= probs.sum()
        draw = self.rngs[row].random()
        index = int(np.searchsorted(np.cumsum(probs), draw, side="right"))
        return int(top[min(index, len(top) - 1)])
