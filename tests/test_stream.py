"""Coalescing of tokens into numbered frames, and the text-so-far snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from generation import stream


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent() -> list[tuple[str, dict[str, Any]]]:
    return []


def make(sent: list, clock: Clock, n: int = 1) -> stream.JobStream:
    return stream.JobStream(
        job_id=99_001,
        n_candidates=n,
        tokens_per_frame=8,
        min_interval=0.05,
        max_delay=0.25,
        send=lambda group, message: sent.append((group, message)),
        clock=clock,
    )


def apply(frames: list[dict[str, Any]], n: int) -> list[str]:
    texts = [""] * n
    for frame in frames:
        for d in frame["deltas"]:
            assert d["o"] <= len(texts[d["i"]]), "a delta never starts past the text we have"
            texts[d["i"]] = texts[d["i"]][: d["o"]] + d["t"]
    return texts


def test_first_token_goes_out_at_once_then_frames_wait_for_eight_tokens(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock)
    js.step(["Hello"])
    assert len(sent) == 1 and sent[0][1]["deltas"][0]["t"] == "Hello"
    for i in range(7):  # fast model: 1 ms per token
        clock.now += 0.001
        js.step([f" {i}"])
    assert len(sent) == 1, "7 pending tokens inside 50 ms: no frame yet"
    clock.now += 0.06
    js.step([" x"])
    assert len(sent) == 2
    assert sent[1][1]["deltas"][0]["n"] == 9


def test_a_slow_model_still_shows_progress_after_the_max_delay(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock)
    js.step(["a"])
    for _ in range(3):
        clock.now += 0.1  # 10 tokens/s
        js.step(["b"])
    assert len(sent) == 2, "250 ms after the previous frame the pending tokens go out"


def test_frames_are_numbered_and_reassemble_every_candidate(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock, n=3)
    words = [f"w{i} " for i in range(40)]
    for i, word in enumerate(words):
        clock.now += 0.01
        js.step([word, word.upper(), None if i > 20 else word])
    js.flush()
    frames = [m for _, m in sent]
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    texts = apply(frames, 3)
    assert texts[0] == "".join(words)
    assert texts[1] == "".join(words).upper()
    assert texts[2] == "".join(words[:21])
    assert len(frames) <= 40 * 3 / 8 + 2


def test_replace_sends_a_correction_from_the_first_changed_character(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock)
    js.step(["Hello wor"])
    js.replace(0, "Hello world!")
    js.flush()
    assert apply([m for _, m in sent], 1) == ["Hello world!"]
    assert sent[-1][1]["deltas"][0]["o"] == len("Hello wor")


def test_the_live_state_holds_the_text_so_far_with_its_sequence_number(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock, n=2)
    js.step(["one", "two"])
    state = stream.live_state(99_001)
    assert state == {"seq": 1, "texts": {"0": "one", "1": "two"}, "tokens": {"0": 1, "1": 1}}
    stream.live_state_clear(99_001)
    assert stream.live_state(99_001) is None


def test_status_flushes_pending_tokens_first(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock)
    js.step(["a"])
    js.step(["b"])
    js.status("succeeded", candidates=[])
    kinds = [m["type"] for _, m in sent]
    assert kinds == [stream.JOB_TOKENS, stream.JOB_TOKENS, stream.JOB_STATUS]
    assert sent[-1][1]["seq"] == 3


def test_a_status_frame_before_the_first_token_does_not_hold_that_token_back(sent: list) -> None:
    clock = Clock()
    js = make(sent, clock)
    js.status("running", candidates=[])
    clock.now += 0.2  # the prompt is being read
    js.step(["First"])
    assert [m["type"] for _, m in sent] == [stream.JOB_STATUS, stream.JOB_TOKENS]
