"""What every backend takes and gives: its config, the sampling settings, the candidates, errors.

Plain data, no ORM: the caller copies a ``BackendConfig`` off whatever it stores models in and
hands it in; a backend returns ``CandidateOutput`` rows and raises the errors below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

# C0 control characters other than tab and newlines, and DEL: a model can emit them (byte-level
# BPE covers every byte) but they have no place in a draft, and PostgreSQL refuses NUL.
_CONTROL_CHARS = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 127])


def clean_text(text: str) -> str:
    return text.translate(_CONTROL_CHARS)


class ModelLoadError(Exception):
    """The model could not be loaded; the message is the exact reason shown to people."""


class BackendError(Exception):
    """Generation failed for a reason people can act on; the message is shown as it is."""


class PromptTooLong(Exception):
    """The prompt and the tokens asked for do not fit the model's context."""


def check_prompt_length(*, prompt_tokens: int, max_new_tokens: int, context_length: int) -> None:
    """Raise PromptTooLong when ``prompt_tokens`` + ``max_new_tokens`` exceed the context."""
    if prompt_tokens + max_new_tokens > context_length:
        raise PromptTooLong(
            f"The prompt has {prompt_tokens} tokens; with max_new_tokens="
            f"{max_new_tokens} that exceeds the model's context of "
            f"{context_length} tokens."
        )


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    min_new_tokens: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    # Terms the candidates are steered towards (a job's top-up: the brief's key terms, see
    # ``RowSampler``): until a candidate has written a term, its next token gets ``steer_bias``
    # added to its logit (a local model's sampler only; a remote server ignores it).
    steer_terms: tuple[str, ...] = ()
    steer_bias: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingSettings:
        return cls(
            max_new_tokens=int(data["max_new_tokens"]),
            min_new_tokens=int(data.get("min_new_tokens", 0)),
            temperature=float(data.get("temperature", 0.8)),
            top_p=float(data.get("top_p", 1.0)),
            top_k=int(data.get("top_k", 0)),
            repetition_penalty=float(data.get("repetition_penalty", 1.0)),
            no_repeat_ngram_size=int(data.get("no_repeat_ngram_size", 0)),
            steer_terms=tuple(str(t) for t in data.get("steer_terms", ())),
            steer_bias=float(data.get("steer_bias", 0.0)),
        )


@dataclass
class CandidateOutput:
    index: int
    seed: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finished: bool = False
    finish_reason: str = ""
    first_token_at: float | None = None
    finished_at: float | None = None
    # Tokens written; a remote server reports them without the ids.
    completion_tokens: int = 0
    # Prompt tokens as counted by whoever ran the model (None: the caller's own count).
    prompt_tokens: int | None = None
    # Intra-op threads its forward passes ran on, where the backend chose them per call (None:
    # the backend's provenance says).
    threads: int | None = None
    # Mean natural-log probability of the tokens written (end of text included) under the
    # model, from the logits the sampler saw; None where the backend cannot tell.
    mean_logprob: float | None = None


@dataclass
class TextScore:
    """A given text's log-likelihood after a prompt under a model (teacher-forced): the sum of
    the natural-log probabilities of its tokens and how many were scored. ``truncated``: the
    text had more tokens than were scored (the context or the caller's cap)."""

    logprob_sum: float
    tokens: int
    truncated: bool = False

    @property
    def mean_logprob(self) -> float | None:
        return self.logprob_sum / self.tokens if self.tokens else None

    @property
    def perplexity(self) -> float | None:
        import math

        mean = self.mean_logprob
        return None if mean is None else math.exp(-mean)


# Per step, per candidate: the new text ("" while a character is incomplete or at the end),
# or None when that candidate wrote nothing in this step (finished, or not its turn).
OnDelta = Callable[[list[str | None]], None]
ShouldStop = Callable[[], bool]


class Provenance(TypedDict, total=False):
    backend: str  # transformers | onnx | openai
    version: str  # e.g. "onnxruntime-genai 0.18.0"
    weights: str  # "sha256:..." of the weights file, a hub revision, or the server's model id
    precision: str
    device: str
    sampler: str  # how a seed becomes tokens (see generation.backends.sampling)
    threads: int
    server: str  # the OpenAI-compatible base URL (never the key)


@dataclass(frozen=True)
class BackendConfig:
    """What a worker needs to load a backend: the model's fields and the worker's cores."""

    backend: str  # transformers | onnx | openai
    source_kind: str = "local"
    source: str = ""
    revision: str = ""
    device: str = "auto"
    dtype: str = "auto"
    # onnx: the converted model directory and the precision it was built with.
    onnx_dir: str = ""
    onnx_precision: str = ""
    # openai: the server, the model name it serves, the key (never logged), the API flavour.
    base_url: str = ""
    remote_model: str = ""
    api_key: str = field(default="", repr=False)
    api_mode: str = "completions"  # completions | chat
    timeout: float = 60.0
    max_retries: int = 2
    server_honours_n: bool = False
    server_sampling_extras: bool = False
    server_concurrent_requests: bool = True
    model_name: str = ""
    # onnx on CPU, the worker's side: its cores (0: every core of the machine), how many
    # ``generate`` calls it runs at once, whether the calls on one model step in one batch,
    # whether a call that runs alone gets a second session with every core, and whether the
    # every-core session's pool threads may spin-wait.
    cores: int = 0
    concurrency: int = 1
    merge_calls: bool = True
    wide_session: bool = True
    spin: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        # The key's digest, not the key: two configs differing only by key are two backends.
        digest = hashlib.sha256(self.api_key.encode()).hexdigest()[:16] if self.api_key else ""
        return (
            self.backend,
            self.source_kind,
            self.source,
            self.revision,
            self.device,
            self.dtype,
            self.onnx_dir,
            self.base_url,
            self.remote_model,
            digest,
            self.api_mode,
            self.timeout,
            self.max_retries,
            self.server_honours_n,
            self.server_sampling_extras,
            self.server_concurrent_requests,
            self.cores,
            self.concurrency,
            self.merge_calls,
            self.wide_session,
            self.spin,
        )
