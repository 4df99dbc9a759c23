"""The one interface every generation backend implements, and what they share.

No ORM here: the runner copies a ``BackendConfig`` off a ``LanguageModel`` row, asks
``generation.backends.get_backend`` for the loaded backend and calls ``generate``. Whatever the
backend, the runner's streaming, saving, cancelling, provenance and review paths are the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from generation.engine import (
    CandidateOutput,
    ModelLoadError,
    PromptTooLong,
    SamplingSettings,
    clean_text,
)

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendError",
    "CandidateOutput",
    "IncrementalDecoder",
    "ModelLoadError",
    "OnDelta",
    "PromptTooLong",
    "Provenance",
    "SamplingSettings",
    "ShouldStop",
    "file_checksum",
    "local_job",
    "local_jobs",
]

# Jobs this process has claimed and not yet finished generating, counted from the claim (the
# runner's ``local_job``), so that a backend choosing a session per job sees a job that is about
# to start beside it, not only one already generating: two jobs submitted together were claimed
# within milliseconds, but the first reached ``generate`` before the second, took every core
# and then shared them with the second (three threads on two cores).
_local_jobs = 0
_local_jobs_lock = threading.Lock()


class LocalJob:
    """One claimed job's place in the count; ``release`` (idempotent) gives it up, when the job
    stops generating or turns out to compute elsewhere (a remote server)."""

    def __init__(self) -> None:
        global _local_jobs
        with _local_jobs_lock:
            _local_jobs += 1
        self._held = True

    def release(self) -> None:
        global _local_jobs
        with _local_jobs_lock:
            if self._held:
                _local_jobs -= 1
                self._held = False


@contextlib.contextmanager
def local_job() -> Any:
    slot = LocalJob()
    try:
        yield slot
    finally:
        slot.release()


def local_jobs() -> int:
    """How many jobs this process has claimed that have not finished generating."""
    with _local_jobs_lock:
        return _local_jobs


# Per step, per candidate: the new text ("" while a character is incomplete or at the end),
# or None when that candidate wrote nothing in this step (finished, or not its turn).
OnDelta = Callable[[list[str | None]], None]
ShouldStop = Callable[[], bool]


class BackendError(Exception):
    """Generation failed for a reason people can act on; the message is shown as it is."""


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
    """What a worker needs to load a backend, copied off a LanguageModel row."""

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
        )


class Backend(ABC):
    """A loaded model behind one interface. Instances live for the worker process and are used
    by several jobs at once (each call of ``generate`` keeps its own state)."""

    name: str = ""
    load_seconds: float = 0.0
    context_length: int | None = None
    device: str = "cpu"

    @abstractmethod
    def provenance(self) -> Provenance:
        """Backend, version and weights checksum or revision: copied into every draft."""

    @abstractmethod
    def render_prompt(self, *, system: str, user: str) -> str:
        """The exact text the model sees (the chat template where there is one)."""

    @abstractmethod
    def count_tokens(self, prompt: str) -> int | None:
        """Prompt tokens, or None where only the server knows (it reports them later)."""

    @abstractmethod
    def generate(
        self,
        *,
        prompt: str,
        n: int,
        seeds: Sequence[int],
        settings: SamplingSettings,
        on_delta: OnDelta | None = None,
        should_stop: ShouldStop | None = None,
        temperatures: Sequence[float] | None = None,
        preamble: str = "",
    ) -> list[CandidateOutput]:
        """Write ``n`` candidates of ``prompt``, candidate i sampling with ``seeds[i]``.

        Streams through ``on_delta`` (one call per step, a list of ``n`` entries); polls
        ``should_stop`` and, when it says so, ends the unfinished candidates with finish reason
        "cancelled". Returns per candidate its text, token count (``completion_tokens``) and
        finish reason (eos | length | cancelled). Raises PromptTooLong or BackendError with a
        message people can act on. ``preamble``: what ``preamble(system=...)`` gave for the
        system text the prompt was rendered with (a backend that caches it prefills it once).
        """

    def preamble(self, *, system: str) -> str:
        """The opening every prompt rendered with this system text shares, up to the user's
        text (the chat template's system turn). "" for a backend that gains nothing from it."""
        return ""

    def check(self) -> str:
        """Generate a few tokens; a one-line report for the admin's check action."""
        prompt = self.render_prompt(system="", user="Write one sentence about the weather.")
        started = time.monotonic()
        out = self.generate(
            prompt=prompt,
            n=1,
            seeds=[0],
            settings=SamplingSettings(max_new_tokens=24, temperature=0.0),
        )[0]
        prov = self.provenance()
        context = f"; context {self.context_length} tokens" if self.context_length else ""
        return (
            f"Loaded in {self.load_seconds:.1f} s on {self.device} with {prov.get('backend')} "
            f"({prov.get('version')}; weights {prov.get('weights', '?')}){context}; test output "
            f"({out.completion_tokens} tokens in {time.monotonic() - started:.1f} s): "
            f"{out.text.strip()[:300]!r}"
        )


class IncrementalDecoder:
    """Token ids to text deltas for one candidate, never half a UTF-8 character.

    As in text-generation-inference: decode a short window and emit only complete characters.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
            return clean_text(full[len(prefix) :])
        return ""

    def text(self) -> str:
        return clean_text(self._decode(self.ids))


def file_checksum(path: Path, *, chunk: int = 1 << 22) -> str:
    """sha256 of a file, as "sha256:<hex>"."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


_checksums: dict[tuple[Any, ...], str] = {}
CHECKSUM_FILE = ".studio_weights_checksum.json"


def weights_checksum(directory: Path) -> str:
    """One checksum over a model directory's weight files.

    Hashing 500 MB takes seconds, so the result is kept per (name, size, mtime) of the files, in
    this process and in a small file beside the weights where the directory is writable.
    """
    names = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".onnx", ".data", ".gguf"}
    )
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in names)
    if stamp in _checksums:
        return _checksums[stamp]
    sidecar = directory / CHECKSUM_FILE
    try:
        stored = json.loads(sidecar.read_text())
        if [tuple(item) for item in stored["files"]] == list(stamp):
            _checksums[stamp] = str(stored["checksum"])
            return _checksums[stamp]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for p in names:
        digest.update(p.name.encode())
        digest.update(file_checksum(p).encode())
    checksum = f"sha256:{digest.hexdigest()}"
    _checksums[stamp] = checksum
    # A read-only model directory: the in-process cache still holds it.
    with contextlib.suppress(OSError):
        sidecar.write_text(json.dumps({"files": [list(x) for x in stamp], "checksum": checksum}))
    return checksum
