"""The transformers backend: any hub id, local directory or packaged GGUF, CPU or GPU.

Weights load once per process (``load_weights``; fp16/bf16 only where CUDA computes them) and
every backend object of that model shares them and their lock. The decoding loop is our own
rather than ``model.generate``: the shared prompt is prefilled once and its KV cache copied to
every candidate, each candidate samples from its own seeded stream (``RowSampler``), and a
candidate that has finished leaves the batch (its cache rows are dropped).
"""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any

from generation.backends.base import (
    Call,
    LocalBackend,
    take_token,
    weights_checksum,
)
from generation.backends.gguf import convert_packaged_gguf
from generation.backends.sampling import SAMPLER_VERSION
from generation.backends.types import (
    BackendConfig,
    ModelLoadError,
    Provenance,
    TextScore,
)


def pick_device(requested: str) -> str:
    import torch

    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is available.")
        return "cuda"
    if requested == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str) -> Any:
    import torch

    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "auto":
        # Half precision only where the device computes it natively: bf16 on recent GPUs,
        # fp16 on older ones, fp32 on the CPU.
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if bf16_ok else torch.float16
    if requested in {"float16", "bfloat16"} and device != "cuda":
        raise ModelLoadError(
            f"dtype {requested} needs a CUDA device; this worker runs on {device}."
        )
    if requested == "bfloat16" and not bf16_ok:
        raise ModelLoadError("dtype bfloat16 is not supported by this GPU; use float16 or auto.")
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        requested
    ]


class Weights:
    """A model and its tokenizer loaded once in this process, and the lock every forward pass
    on them holds (so calls side by side take turns step by step)."""

    def __init__(self, config: BackendConfig, *, cache_root: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.monotonic()
        try:
            if config.source_kind == "package_gguf":
                path: str = str(convert_packaged_gguf(config.source, cache_root))
            elif config.source_kind == "local":
                if not Path(config.source).is_dir():
                    raise ModelLoadError(f"Local model directory {config.source!r} does not exist.")
                path = config.source
            else:
                path = config.source
            self.device = pick_device(config.device)
            dtype = pick_dtype(config.dtype, self.device)
            kwargs: dict[str, Any] = {}
            if config.source_kind == "hub" and config.revision:
                kwargs["revision"] = config.revision
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
        self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model_config = self.model.config
        self.context_length: int = int(
            getattr(model_config, "max_position_embeddings", None)
            or getattr(model_config, "n_positions", None)
            or 2048
        )
        self.load_seconds = time.monotonic() - started
        self.lock = threading.Lock()

    def eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return []
        return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


_weights: dict[tuple[str, ...], Weights] = {}
_weights_lock = threading.Lock()


def load_weights(config: BackendConfig, *, cache_root: Path) -> Weights:
    """The weights of ``config``'s model in this process, loaded on first use."""
    key = (config.source_kind, config.source, config.revision, config.device, config.dtype)
    with _weights_lock:
        weights = _weights.get(key)
        if weights is None:
            weights = Weights(config, cache_root=cache_root)
            _weights[key] = weights
        return weights


class TransformersBackend(LocalBackend):
    name = "transformers"

    def __init__(self, config: BackendConfig, *, cache_root: Path) -> None:
        import torch
        import transformers

        # One copy of the weights per process, whichever backend object asks for them.
        self.weights = load_weights(config, cache_root=cache_root)
        self.config = config
        self.tokenizer = self.weights.tokenizer
        self.model = self.weights.model
        self.device = self.weights.device
        self.context_length = self.weights.context_length
        self.load_seconds = self.weights.load_seconds
        self._torch = torch
        self._version = f"transformers {transformers.__version__}, torch {torch.__version__}"
        self._weights_id_value: str | None = None
        self._weights_id_lock = threading.Lock()
        self._eos = set(self.weights.eos_ids())
        # transformers 5 renames past_key_values to cache (the old name warns, then goes).
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def lock(self) -> threading.Lock:
        """Held by every forward pass on these weights."""
        return self.weights.lock

    def _weights_id(self) -> str:
        with self._weights_id_lock:
            if self._weights_id_value is None:
                if self.config.source_kind == "hub":
                    commit = getattr(self.model.config, "_commit_hash", None)
                    revision = commit or self.config.revision or "main"
                    self._weights_id_value = f"{self.config.source}@{revision}"
                else:
                    name = getattr(self.model.config, "_name_or_path", "")
                    path = Path(name or self.config.source)
                    self._weights_id_value = weights_checksum(path) if path.is_dir() else str(path)
            return self._weights_id_value

    def provenance(self) -> Provenance:
        return {
            "backend": self.name,
            "version": self._version,
            "weights": self._weights_id(),
            "precision": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": self.device,
            "sampler": SAMPLER_VERSION,
            "threads": self._torch.get_num_threads(),
        }

    def score_ids(self, *, prompt_ids: list[int], ids: list[int]) -> TextScore:
        """One forward pass over prompt and text; the log-softmax at each of the text's
        positions (fp32, whatever the weights' dtype)."""
        torch = self._torch
        if not ids or not prompt_ids:
            return TextScore(logprob_sum=0.0, tokens=0)
        with torch.inference_mode():
            tensor = torch.tensor([prompt_ids + ids], dtype=torch.long, device=self.device)
            with self.lock:
                logits = self.model(input_ids=tensor).logits[0].float()
            # Position p's logits predict token p + 1: the text's tokens from the prompt's last.
            start = len(prompt_ids) - 1
            logprobs = torch.log_softmax(logits[start : start + len(ids)], dim=-1)
            target = torch.tensor(ids, dtype=torch.long, device=logprobs.device)
            total = float(logprobs.gather(1, target[:, None]).sum())
        return TextScore(logprob_sum=total, tokens=len(ids))

    def decode_call(self, call: Call) -> bool:
        torch = self._torch
        prompt_ids, outputs, decoders = call.prompt_ids, call.outputs, call.decoders
        sampler, settings = call.sampler, call.settings
        n = len(outputs)
        cancelled = False
        with torch.inference_mode():
            ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
            # The prompt is the same for every candidate: prefill it once, then copy its cache.
            # Every forward pass holds the weights' lock: calls running side by side take turns
            # step by step (none waits for another to finish), and two passes never fight
            # over the cores.
            with self.lock:
                result = self.model(input_ids=ids, use_cache=True)
            past = result.past_key_values
            logits = result.logits[:, -1, :].float()
            if n > 1:
                past.batch_repeat_interleave(n)
                logits = logits.expand(n, -1)
            active = list(range(n))  # the candidate of each batch row
            for step in range(settings.max_new_tokens):
                if call.should_stop is not None and call.should_stop():
                    cancelled = True
                    break
                rows = logits.cpu().numpy()
                now = time.monotonic()
                deltas: list[str | None] = [None] * n
                keep: list[int] = []
                chosen: list[int] = []
                for row, index in enumerate(active):
                    out = outputs[index]
                    if out.first_token_at is None:
                        out.first_token_at = now
                    token = sampler.choose(index, rows[row], prompt_ids + out.token_ids, step)
                    deltas[index] = take_token(
                        out,
                        token,
                        eos=self._eos,
                        decoder=decoders[index],
                        settings=settings,
                        now=now,
                    )
                    if not out.finished:
                        keep.append(row)
                        chosen.append(token)
                if call.on_delta is not None:
                    call.on_delta(deltas)
                if not keep:
                    break
                if len(keep) < len(active):
                    # Finished candidates leave the batch: no more compute for them.
                    past.batch_select_indices(torch.tensor(keep, device=self.device))
                    active = [active[row] for row in keep]
                step_ids = torch.tensor(chosen, dtype=torch.long, device=self.device)[:, None]
                with self.lock:
                    result = self.model(
                        input_ids=step_ids, use_cache=True, **{self._cache_kw: past}
                    )
                logits = result.logits[:, -1, :].float()
        return cancelled
