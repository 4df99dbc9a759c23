"""One job's token stream: event types, numbered frames, the text so far.

Group names and the publisher itself are in ``contentstudio.realtime``. The database is the
source of truth and the stream is best-effort (the in-memory layer drops messages past its
capacity). So every frame carries a job-wide sequence number and, per
candidate, the character offset its text starts at: a client appends when the offset matches
what it has, and asks for a fresh snapshot when it sees a gap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

from django.core.cache import cache

from contentstudio.realtime import job_group, publisher

logger = logging.getLogger(__name__)

# Event types; a consumer handles "job.tokens" in its method job_tokens.
JOB_TOKENS = "job.tokens"
JOB_STATUS = "job.status"
JOB_DRAFT = "job.draft"

LIVE_STATE_TTL = 6 * 3600


def live_state_key(job_id: int) -> str:
    return f"job-live:{job_id}"


class Delta(TypedDict):
    i: int  # candidate index
    o: int  # offset in the candidate's text where ``t`` starts (replacing what follows)
    t: str  # text
    n: int  # tokens generated so far by this candidate


class TokensEvent(TypedDict):
    type: str
    seq: int
    deltas: list[Delta]


class CandidateState(TypedDict):
    index: int
    status: str
    text: str
    tokens: int
    tokens_per_second: float | None
    finish_reason: str  # "length": cut off at the token limit (generation.models)
    draft_id: int | None
    # The draft's quality in short (generation.selectors.quality_summary); None before it.
    quality: NotRequired[dict[str, Any] | None]


class StatusEvent(TypedDict):
    type: str
    seq: int
    status: str
    error: str
    candidates: list[CandidateState]


class DraftSavedEvent(TypedDict):
    """The frame announcing a candidate saved as a Draft (the audit row is review.DraftEvent)."""

    type: str
    seq: int
    index: int
    draft_id: int
    url: str


class LiveState(TypedDict):
    seq: int
    texts: dict[str, str]
    tokens: dict[str, int]


# --- One job's stream -------------------------------------------------------------------------


class JobStream:
    """Coalesces a job's tokens into numbered frames and keeps the text so far in the cache.

    The first token goes out at once. After that a frame goes out when ``tokens_per_frame``
    tokens are pending, but never sooner than ``min_interval`` after the previous frame; and
    when fewer are pending, once ``max_delay`` has passed, so a slow model still shows progress.
    Tokens of all candidates of the job share a frame.
    """

    def __init__(
        self,
        *,
        job_id: int,
        n_candidates: int,
        tokens_per_frame: int,
        min_interval: float,
        max_delay: float,
        send: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.group = job_group(job_id)
        self.tokens_per_frame = tokens_per_frame
        self.min_interval = min_interval
        self.max_delay = max_delay
        self._send = send or publisher.publish
        self._clock = clock
        self.seq = 0
        self.texts = [""] * n_candidates
        self.tokens = [0] * n_candidates
        # Per candidate: the offset of the first character not yet sent.
        self._sent_upto = [0] * n_candidates
        self._replace_from: list[int | None] = [None] * n_candidates
        self._pending_tokens = 0
        self._last_frame_at: float | None = None
        self._first_pending_at: float | None = None
        self.frames = 0

    def add_candidates(self, count: int) -> None:
        """Make room for ``count`` more candidates (a job's top-up), numbered after the rest."""
        self.texts += [""] * count
        self.tokens += [0] * count
        self._sent_upto += [0] * count
        self._replace_from += [None] * count

    def drop_candidates(self, keep: int) -> None:
        """Forget the candidates after the first ``keep`` (a top-up that failed)."""
        for name in ("texts", "tokens", "_sent_upto", "_replace_from"):
            setattr(self, name, getattr(self, name)[:keep])

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def step(self, deltas: list[str | None]) -> None:
        """Record one decoding step (per candidate: new text, "" or None when finished)."""
        for index, delta in enumerate(deltas):
            if delta is None:
                continue
            self.tokens[index] += 1
            self._pending_tokens += 1
            if delta:
                self.texts[index] += delta
        now = self._clock()
        if self._first_pending_at is None and self._pending_tokens:
            self._first_pending_at = now
        if self._due(now):
            self.flush(now)

    def replace(self, index: int, text: str) -> None:
        """Set a candidate's final text when it differs from what was streamed."""
        if text == self.texts[index]:
            return
        common = 0
        for a, b in zip(text, self.texts[index], strict=False):
            if a != b:
                break
            common += 1
        self.texts[index] = text
        start = min(common, self._sent_upto[index])
        current = self._replace_from[index]
        self._replace_from[index] = start if current is None else min(current, start)

    def _due(self, now: float) -> bool:
        if not self._pending_tokens:
            return False
        if self._last_frame_at is None:
            return True  # the first token of the job: at once
        since_frame = now - self._last_frame_at
        if since_frame < self.min_interval:
            return False
        if self._pending_tokens >= self.tokens_per_frame:
            return True
        waited = now - (self._first_pending_at or now)
        return since_frame >= self.max_delay or waited >= self.max_delay

    def flush(self, now: float | None = None) -> None:
        """Send whatever is pending as one frame, now."""
        deltas: list[Delta] = []
        for index, text in enumerate(self.texts):
            start = self._sent_upto[index]
            replace_from = self._replace_from[index]
            if replace_from is not None:
                start = replace_from
            if start == len(text) and replace_from is None and not self._pending_tokens:
                continue
            if start < len(text) or replace_from is not None:
                deltas.append({"i": index, "o": start, "t": text[start:], "n": self.tokens[index]})
            self._sent_upto[index] = len(text)
            self._replace_from[index] = None
        self._pending_tokens = 0
        self._first_pending_at = None
        if not deltas:
            # Nothing was sent: the next token still counts as the first one, at once.
            return
        self._last_frame_at = self._clock() if now is None else now
        seq = self._next_seq()
        self._save_live_state(seq)
        event: TokensEvent = {"type": JOB_TOKENS, "seq": seq, "deltas": deltas}
        self._send(self.group, dict(event))
        self.frames += 1

    def status(self, status: str, *, error: str = "", candidates: list[CandidateState]) -> None:
        """Announce a job status change; pending tokens go out first so order is kept."""
        self.flush()
        seq = self._next_seq()
        self._save_live_state(seq)
        event: StatusEvent = {
            "type": JOB_STATUS,
            "seq": seq,
            "status": status,
            "error": error,
            "candidates": candidates,
        }
        self._send(self.group, dict(event))

    def draft(self, *, index: int, draft_id: int, url: str) -> None:
        seq = self._next_seq()
        event: DraftSavedEvent = {
            "type": JOB_DRAFT,
            "seq": seq,
            "index": index,
            "draft_id": draft_id,
            "url": url,
        }
        self._send(self.group, dict(event))

    def _save_live_state(self, seq: int) -> None:
        state: LiveState = {
            "seq": seq,
            "texts": {str(i): t for i, t in enumerate(self.texts)},
            "tokens": {str(i): n for i, n in enumerate(self.tokens)},
        }
        cache.set(live_state_key(self.job_id), state, LIVE_STATE_TTL)


def live_state(job_id: int) -> LiveState | None:
    return cache.get(live_state_key(job_id))


def live_state_clear(job_id: int) -> None:
    cache.delete(live_state_key(job_id))
