"""The ONNX Runtime GenAI backend: the default on CPU (its CUDA build is an option on a GPU).

It runs a model converted once by ``generation.backends.convert`` (int4/int8 weight-only
quantisation, fused attention). Sampling is ours (``RowSampler``): every step the generator's
logits are read, each candidate picks its token from its own seeded stream, and a one-hot logits
row makes the generator (greedy) take exactly that token. So every candidate is reproducible
from its seed, which ONNX Runtime GenAI's own sampler (one seed per generator) cannot give.

The ``og.Model`` is shared; every ``generate`` call has its own ``og.Generator``, so two jobs run
side by side in two worker threads, taking turns step by step (one forward pass at a time, so a
long job never holds up a short one and two thread pools never fight over the cores). Batches
are not merged across jobs: rows of different prompts would need left padding, which changed
the logits of the padded row by up to 2.8 here and so each candidate's text. A candidate that
has finished is forced to end-of-text; the generator still computes its row until the batch ends
(ONNX Runtime GenAI cannot drop a row).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from generation.backends.base import (
    Backend,
    BackendConfig,
    BackendError,
    CandidateOutput,
    IncrementalDecoder,
    ModelLoadError,
    OnDelta,
    PromptTooLong,
    Provenance,
    SamplingSettings,
    ShouldStop,
)
from generation.backends.convert import CONVERSION_FILE
from generation.backends.sampling import SAMPLER_VERSION, RowSampler


def ort_threads() -> int:
    """Intra-op threads of the session: TORCH_THREADS (as for torch), else every core."""
    from django.conf import settings

    return int(getattr(settings, "TORCH_THREADS", 0) or os.cpu_count() or 1)


class OnnxGenAIBackend(Backend):
    name = "onnx"

    def __init__(self, config: BackendConfig, *, cache_root: Path) -> None:
        import onnxruntime_genai as og
        from transformers import AutoTokenizer

        started = time.monotonic()
        if not config.onnx_dir:
            raise ModelLoadError(
                "This model has not been converted to ONNX yet: run `manage.py studio_setup` (the "
                "default model) or the admin's 'Convert to ONNX' action."
            )
        path = Path(config.onnx_dir)
        if not (path / "genai_config.json").exists():
            raise ModelLoadError(
                f"No converted ONNX model at {path}. Run `manage.py studio_setup` or the admin's "
                "'Convert to ONNX' action for this model first."
            )
        self.path = path
        self.meta = (
            json.loads((path / CONVERSION_FILE).read_text())
            if (path / CONVERSION_FILE).exists()
            else {}
        )
        try:
            og_config = og.Config(str(path))
            want_cuda = config.device == "cuda" or (
                config.device == "auto" and og.is_cuda_available()
            )
            og_config.clear_providers()
            og_config.overlay(
                json.dumps(
                    {
                        "model": {
                            "decoder": {"session_options": {"intra_op_num_threads": ort_threads()}}
                        }
                    }
                )
            )
            if want_cuda:
                og_config.append_provider("cuda")
            self.device = "cuda" if want_cuda else "cpu"
            self.model = og.Model(og_config)
            # The builder writes the tokenizer (and chat template) beside the model.
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
        self._og = og
        self.version = f"onnxruntime-genai {og.__version__}"
        genai = json.loads((path / "genai_config.json").read_text())
        self.context_length = int(genai["model"].get("context_length") or 2048)
        eos = genai["model"].get("eos_token_id")
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.tokenizer.eos_token_id is not None:
            self._eos.add(int(self.tokenizer.eos_token_id))
        # One forward pass at a time: jobs side by side take turns step by step instead of
        # running two thread pools over the same cores (measured: no faster, only noisier).
        self._step_lock = threading.Lock()
        self.load_seconds = time.monotonic() - started
        self._decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)

    def provenance(self) -> Provenance:
        return {
            "backend": self.name,
            "version": self.version,
            "weights": str(self.meta.get("weights_checksum") or self.path),
            "precision": str(self.meta.get("precision") or "unknown"),
            "device": self.device,
            "sampler": SAMPLER_VERSION,
            "threads": ort_threads(),
        }

    def render_prompt(self, *, system: str, user: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = []
            if system.strip():
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        parts = [p.strip() for p in (system, user) if p.strip()]
        return "\n\n".join(parts) + "\n\n"

    def encode(self, prompt: str) -> list[int]:
        add_special = not getattr(self.tokenizer, "chat_template", None)
        return self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]

    def count_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

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
    ) -> list[CandidateOutput]:
        og = self._og
        prompt_ids = self.encode(prompt)
        if len(prompt_ids) + settings.max_new_tokens > self.context_length:
            raise PromptTooLong(
                f"The prompt has {len(prompt_ids)} tokens; with max_new_tokens="
                f"{settings.max_new_tokens} that exceeds the model's context of "
                f"{self.context_length} tokens."
            )
        sampler = RowSampler(
            seeds=seeds, settings=settings, eos_ids=sorted(self._eos), temperatures=temperatures
        )
        eos_token = min(self._eos) if self._eos else 0
        outputs = [CandidateOutput(index=i, seed=int(s)) for i, s in enumerate(seeds[:n])]
        decoders = [IncrementalDecoder(self._decode) for _ in outputs]
        params = og.GeneratorParams(self.model)
        # Greedy over our one-hot rows: the generator takes exactly the token we chose.
        params.set_search_options(
            max_length=len(prompt_ids) + settings.max_new_tokens,
            do_sample=False,
            batch_size=n,
        )
        cancelled = False
        try:
            generator = og.Generator(self.model, params)
            with self._step_lock:
                generator.append_tokens(np.array([prompt_ids] * n, dtype=np.int32))
            for step in range(settings.max_new_tokens):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                with self._step_lock:  # the forward pass runs here (lazily)
                    logits = generator.get_logits()  # (n, 1, vocab)
                forced = np.full_like(logits, -np.inf)
                now = time.monotonic()
                deltas: list[str | None] = [None] * n
                for index, out in enumerate(outputs):
                    if out.finished:
                        forced[index, -1, eos_token] = 0.0
                        continue
                    if out.first_token_at is None:
                        out.first_token_at = now
                    history = prompt_ids + out.token_ids
                    token = sampler.choose(index, logits[index, -1], history, step)
                    forced[index, -1, token] = 0.0
                    if token in self._eos:
                        out.finished, out.finish_reason, out.finished_at = True, "eos", now
                        deltas[index] = ""
                        continue
                    out.token_ids.append(token)
                    deltas[index] = decoders[index].push(token)
                    if len(out.token_ids) >= settings.max_new_tokens:
                        out.finished, out.finish_reason, out.finished_at = True, "length", now
                if on_delta is not None:
                    on_delta(deltas)
                if all(out.finished for out in outputs):
                    break
                generator.set_logits(forced)
                generator.generate_next_token()
        except (PromptTooLong, BackendError):
            raise
        except RuntimeError as exc:
            raise BackendError(f"ONNX Runtime GenAI: {exc}") from exc
        now = time.monotonic()
        for out, decoder in zip(outputs, decoders, strict=True):
            out.text = decoder.text()
            out.completion_tokens = len(out.token_ids)
            out.prompt_tokens = len(prompt_ids)
            if not out.finished:
                out.finished, out.finished_at = True, now
                out.finish_reason = "cancelled" if cancelled else "length"
        return outputs
