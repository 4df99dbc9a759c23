"""The transformers backend: any hub id, local directory or packaged GGUF, CPU or GPU.

Loading is ``generation.engine.Engine`` (device and dtype choice: fp16/bf16 only on CUDA). The
decoding loop is our own rather than ``model.generate``: the shared prompt is prefilled once and
its KV cache copied to every candidate, and a candidate that has finished leaves the batch (its
cache rows are dropped), so the others stop paying for it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from generation import engine as engine_mod
from generation.backends.base import (
    Backend,
    BackendConfig,
    CandidateOutput,
    IncrementalDecoder,
    OnDelta,
    PromptTooLong,
    Provenance,
    SamplingSettings,
    ShouldStop,
    weights_checksum,
)
from generation.backends.sampling import SAMPLER_VERSION, RowSampler
from generation.engine import ModelSpec


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: BackendConfig, *, cache_root: Path) -> None:
        import torch
        import transformers

        spec = ModelSpec(
            source_kind=config.source_kind,
            source=config.source,
            revision=config.revision,
            device=config.device,
            dtype=config.dtype,
        )
        # The per-process engine cache: one copy of the weights whichever path asks for them.
        self.engine = engine_mod.get_engine(spec, cache_root=cache_root)
        self.config = config
        self.tokenizer = self.engine.tokenizer
        self.model = self.engine.model
        self.device = self.engine.device
        self.context_length = self.engine.context_length
        self.load_seconds = self.engine.load_seconds
        self._torch = torch
        self._version = f"transformers {transformers.__version__}, torch {torch.__version__}"
        self._weights: str | None = None
        self._weights_lock = threading.Lock()
        self._decode = functools.partial(self.tokenizer.decode, skip_special_tokens=True)
        self._eos = set(self.engine._eos_ids())
        # transformers 5 renames past_key_values to cache (the old name warns, then goes).
        import inspect

        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def _weights_id(self) -> str:
        with self._weights_lock:
            if self._weights is None:
                if self.config.source_kind == "hub":
                    commit = getattr(self.model.config, "_commit_hash", None)
                    revision = commit or self.config.revision or "main"
                    self._weights = f"{self.config.source}@{revision}"
                else:
                    name = getattr(self.model.config, "_name_or_path", "")
                    path = Path(name or self.config.source)
                    self._weights = weights_checksum(path) if path.is_dir() else str(path)
            return self._weights

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

    def render_prompt(self, *, system: str, user: str) -> str:
        return self.engine.render_prompt(system=system, user=user)

    def count_tokens(self, prompt: str) -> int:
        return len(self.engine.encode(prompt))

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
        torch = self._torch
        prompt_ids = self.engine.encode(prompt)
        if len(prompt_ids) + settings.max_new_tokens > self.context_length:
            raise PromptTooLong(
                f"The prompt has {len(prompt_ids)} tokens; with max_new_tokens="
                f"{settings.max_new_tokens} that exceeds the model's context of "
                f"{self.context_length} tokens."
            )
        sampler = RowSampler(
            seeds=seeds, settings=settings, eos_ids=sorted(self._eos), temperatures=temperatures
        )
        outputs = [CandidateOutput(index=i, seed=int(s)) for i, s in enumerate(seeds[:n])]
        decoders = [IncrementalDecoder(self._decode) for _ in outputs]
        cancelled = False
        with torch.inference_mode():
            ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
            # The prompt is the same for every candidate: prefill it once, then copy its cache.
            # Every forward pass holds the engine's lock: jobs running side by side take turns
            # step by step (none waits for another to finish), and two passes never fight
            # over the cores.
            with self.engine.lock:
                result = self.model(input_ids=ids, use_cache=True)
            past = result.past_key_values
            logits = result.logits[:, -1, :].float()
            if n > 1:
                past.batch_repeat_interleave(n)
                logits = logits.expand(n, -1)
            active = list(range(n))  # the candidate of each batch row
            for step in range(settings.max_new_tokens):
                if should_stop is not None and should_stop():
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
                    if token in self._eos:
                        out.finished, out.finish_reason, out.finished_at = True, "eos", now
                        deltas[index] = ""
                        continue
                    out.token_ids.append(token)
                    deltas[index] = decoders[index].push(token)
                    if len(out.token_ids) >= settings.max_new_tokens:
                        out.finished, out.finish_reason, out.finished_at = True, "length", now
                        continue
                    keep.append(row)
                    chosen.append(token)
                if on_delta is not None:
                    on_delta(deltas)
                if not keep:
                    break
                if len(keep) < len(active):
                    # Finished candidates leave the batch: no more compute for them.
                    past.batch_select_indices(torch.tensor(keep, device=self.device))
                    active = [active[row] for row in keep]
                step_ids = torch.tensor(chosen, dtype=torch.long, device=self.device)[:, None]
                with self.engine.lock:
                    result = self.model(
                        input_ids=step_ids, use_cache=True, **{self._cache_kw: past}
                    )
                logits = result.logits[:, -1, :].float()
        now = time.monotonic()
        for out, decoder in zip(outputs, decoders, strict=True):
            out.text = decoder.text()
            out.completion_tokens = len(out.token_ids)
            out.prompt_tokens = len(prompt_ids)
            if not out.finished:
                out.finished, out.finished_at = True, now
                out.finish_reason = "cancelled" if cancelled else "length"
        return outputs
