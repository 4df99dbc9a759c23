"""The ONNX backend: a model converted once by ``convert`` (ONNX Runtime GenAI's builder); the
default on CPU.

On CPU the studio steps the converted graph with its own loop on ONNX Runtime (``ort_loop``: the
prompt prefilled once per call, a finished candidate dropped from the batch); on CUDA, or for a
graph the loop does not know (``loop_reason`` says why), ONNX Runtime GenAI's generator runs,
through its C API (``oga_native``: no GIL held during a pass). Sampling is ours either way
(``RowSampler``): each candidate draws from its own seeded stream, which ONNX Runtime GenAI's
sampler (one seed per generator) cannot give.

Calls side by side: with ``merge_calls`` (the default) every call on a model steps in one batch
on every core (``ort_batch.SharedBatch``); a row's logits do not depend on the other rows, so a
call writes the same candidates alone or beside others. Without it, a call that starts while no
other runs or is reserved (``reservations``) takes a second, "wide" session with every core, one
beside another the narrow session (its share of the cores), and keeps its session to the end
(moving would change its logits). The every-core session's pool threads block instead of
spin-waiting unless ``spin`` says the worker has its cores to itself. Figures: docs/generation.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from generation.backends.base import (
    Call,
    LocalBackend,
    step_candidates,
)
from generation.backends.convert import CONVERSION_FILE
from generation.backends.oga_native import NativeError, NativeGenerator, NativeModel
from generation.backends.ort_batch import BatchMember, SharedBatch
from generation.backends.ort_loop import LoopGenerator, LoopModel, LoopUnsupported
from generation.backends.reservations import reserved
from generation.backends.sampling import SAMPLER_VERSION
from generation.backends.types import (
    BackendConfig,
    BackendError,
    ModelLoadError,
    Provenance,
    TextScore,
)

logger = logging.getLogger(__name__)

# Stands for the user's text when the preamble is rendered (never in a real prompt).
_USER_MARK = "\x00studio-user-text\x00"


def _cores(config: BackendConfig) -> int:
    return int(config.cores or os.cpu_count() or 1)


def ort_threads(config: BackendConfig) -> int:
    """Intra-op threads of the narrow session: the worker's cores (``cores``, else every core)
    split between the calls it may run at once (``concurrency``), so that calls running side by
    side never ask for more threads than there are cores."""
    return max(1, _cores(config) // max(1, config.concurrency))


def wide_threads(config: BackendConfig) -> int | None:
    """Intra-op threads of the wide session (every core), for a call that runs alone; None when
    there is none: ``wide_session`` off, or the narrow session has every core already."""
    cores = _cores(config)
    if not config.wide_session or cores <= ort_threads(config):
        return None
    return cores


def wide_session_options(*, spin: bool) -> dict[str, str]:
    """Session config entries of the every-core session (the shared batch's or the wide one):
    its pool threads block instead of spin-waiting (a descheduled spinning thread stalls the
    whole pass), unless ``spin`` says the worker has its cores to itself."""
    return {"session.intra_op.allow_spinning": "1" if spin else "0"}


# ONNX calls generating in this process now, whichever model: they share the cores.
_calls_running = 0
_calls_lock = threading.Lock()


def _call_ended() -> None:
    global _calls_running
    with _calls_lock:
        _calls_running -= 1


def _native_model(
    path: Path, *, threads: int, cuda: bool, options: dict[str, str] | None = None
) -> NativeModel | None:
    """The model through the C API, or None where the C API cannot be bound (then the Python
    module serves, one forward pass at a time). A model that fails to load fails here.
    ``options``: further session config entries (ONNX Runtime's "session.*" keys)."""
    try:
        from generation.backends.oga_native import library

        library()
    except NativeError as exc:
        logger.warning("ONNX Runtime GenAI C API unavailable (%s); calls take turns", exc)
        return None
    session_options: dict[str, Any] = {"intra_op_num_threads": threads, **(options or {})}
    return NativeModel(path, session_options=session_options, cuda=cuda)


class OnnxGenAIBackend(LocalBackend):
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
                            "decoder": {
                                "session_options": {"intra_op_num_threads": ort_threads(config)}
                            }
                        }
                    }
                )
            )
            if want_cuda:
                og_config.append_provider("cuda")
            self.device = "cuda" if want_cuda else "cpu"
            self.threads = ort_threads(config)
            every_core = wide_session_options(spin=config.spin)
            # On CPU the studio's own loop (``ort_loop``): prefill once per call, drop finished
            # rows. Elsewhere, or for a graph it does not know, ONNX Runtime GenAI's generator.
            self.loop_reason = "CUDA: ONNX Runtime GenAI's generator" if want_cuda else ""
            self.native: LoopModel | NativeModel | None = None
            # Every call in one batch on every core (``merge_calls``), loop only.
            self.shared: SharedBatch | None = None
            if not want_cuda:
                try:
                    if config.merge_calls:
                        cores = _cores(config)
                        self.native = LoopModel(path, threads=cores, options=every_core)
                        self.shared, self.threads = SharedBatch(self.native), cores
                    else:
                        self.native = LoopModel(path, threads=self.threads)
                except LoopUnsupported as exc:
                    self.loop_reason = f"ONNX Runtime GenAI's generator: {exc}"
                    logger.warning("ONNX model %s: %s", path, self.loop_reason)
            if self.native is None:
                self.native = _native_model(path, threads=self.threads, cuda=want_cuda)
            # The wide session: the same weights loaded again with every core, for a call that
            # finds no other call running here (CPU only; without the C API calls take turns).
            wide = (
                wide_threads(config)
                if self.native is not None and not want_cuda and self.shared is None
                else None
            )
            self.wide_threads = wide
            self.wide: LoopModel | NativeModel | None = None
            if wide and isinstance(self.native, LoopModel):
                self.wide = LoopModel(path, threads=wide, options=every_core)
            elif wide:
                self.wide = _native_model(path, threads=wide, cuda=False, options=every_core)
            # Without the C API (another platform's wheel), the Python module's generators;
            # they hold the GIL while they compute, so calls then take turns step by step.
            self.model = None if self.native is not None else og.Model(og_config)
            # The builder writes the tokenizer (and chat template) beside the model.
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
        self._og = og
        if isinstance(self.native, LoopModel):
            import onnxruntime as ort

            self.version = (
                f"onnxruntime {ort.__version__} (studio loop; converted by onnxruntime-genai "
                f"{og.__version__})"
            )
        else:
            self.version = f"onnxruntime-genai {og.__version__}"
        genai = json.loads((path / "genai_config.json").read_text())
        self.context_length = int(genai["model"].get("context_length") or 2048)
        eos = genai["model"].get("eos_token_id")
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.tokenizer.eos_token_id is not None:
            self._eos.add(int(self.tokenizer.eos_token_id))
        # Only for the Python module's generators (see above); native ones need no lock.
        self._step_lock = threading.Lock() if self.native is None else contextlib.nullcontext()
        self.load_seconds = time.monotonic() - started

    def _session_for_call(self) -> tuple[LoopModel | NativeModel | None, int]:
        """The session a starting call steps on, and its threads: the wide one when no other
        call of any ONNX model is running in this process, else the narrow one. Counts the call
        as running until ``_call_ended``. A call keeps its session to the end: moving it to the
        other one would mean prefilling its tokens again, which changed the logits here."""
        global _calls_running
        with _calls_lock:
            # Alone: no other call generating here, and none reserved that is about to (the
            # runner reserves from a job's claim, this call's included; other callers none).
            alone = _calls_running == 0 and reserved() <= 1
            _calls_running += 1
        if alone and self.native is not None and self.wide is not None and self.wide_threads:
            return self.wide, self.wide_threads
        return self.native, self.threads

    def provenance(self) -> Provenance:
        return {
            "backend": self.name,
            "version": self.version,
            "weights": str(self.meta.get("weights_checksum") or self.path),
            "precision": str(self.meta.get("precision") or "unknown"),
            "device": self.device,
            "sampler": SAMPLER_VERSION,
            "threads": self.threads,
        }

    def preamble(self, *, system: str) -> str:
        """The chat template's system turn (or the system text) up to the user's text: the
        studio's loop prefills it once per model and system text (``ort_loop.PrefixCache``)."""
        if not isinstance(self.native, LoopModel):
            return ""
        rendered = self.render_prompt(system=system, user=_USER_MARK)
        head, found, _ = rendered.partition(_USER_MARK)
        return head if found else ""

    def _preamble_tokens(self, preamble: str, prompt_ids: list[int]) -> int:
        """How many of the prompt's first tokens are the preamble's: the longest common start
        of the two tokenisations, one token short of the prompt (its last position's logits
        come from the second pass). 0 without a preamble."""
        if not preamble or not isinstance(self.native, LoopModel):
            return 0
        head = self.encode(preamble)
        limit = min(len(head), len(prompt_ids) - 1)
        count = 0
        while count < limit and head[count] == prompt_ids[count]:
            count += 1
        return count

    def score_ids(self, *, prompt_ids: list[int], ids: list[int]) -> TextScore:
        """Teacher-forced through the same session and loop that generation steps (one row:
        prefill the prompt, then each of the text's tokens is forced as the next one), so the
        log-probabilities are those the sampler sees for this converted model."""
        og = self._og
        if not ids or not prompt_ids:
            return TextScore(logprob_sum=0.0, tokens=0)
        total = 0.0
        generator = None
        native, _threads = self._session_for_call()
        try:
            max_length = len(prompt_ids) + len(ids)
            if native is not None:
                generator = native.generator(batch_size=1, max_length=max_length)
            else:
                params = og.GeneratorParams(self.model)
                params.set_search_options(max_length=max_length, do_sample=False, batch_size=1)
                generator = og.Generator(self.model, params)
            loop = isinstance(generator, LoopGenerator)
            with self._step_lock:
                generator.append_tokens(np.array([prompt_ids], dtype=np.int32))
            for position, token in enumerate(ids):
                with self._step_lock:
                    logits = np.asarray(generator.get_logits())[0, -1].astype(np.float64)
                top = logits.max()
                total += float(logits[token] - top - np.log(np.exp(logits - top).sum()))
                if position + 1 == len(ids):
                    break
                if loop:
                    generator.set_next_tokens([token])
                else:
                    forced = np.full((1, 1, logits.shape[-1]), -np.inf, dtype=np.float32)
                    forced[0, 0, token] = 0.0
                    generator.set_logits(forced)
                    generator.generate_next_token()
        except RuntimeError as exc:  # NativeError too
            raise BackendError(f"ONNX Runtime: {exc}") from exc
        finally:
            if isinstance(generator, NativeGenerator | LoopGenerator):
                generator.close()
            _call_ended()
        return TextScore(logprob_sum=total, tokens=len(ids))

    def decode_call(self, call: Call) -> bool:
        og = self._og
        n = len(call.outputs)
        generator = None
        native, threads = self._session_for_call()
        for out in call.outputs:
            out.threads = threads
        try:
            max_length = len(call.prompt_ids) + call.settings.max_new_tokens
            if self.shared is not None:
                generator = self.shared.member(batch_size=n, max_length=max_length)
            elif native is not None:
                generator = native.generator(batch_size=n, max_length=max_length)
            else:
                # Greedy over our one-hot rows: the generator takes exactly the token we chose.
                params = og.GeneratorParams(self.model)
                params.set_search_options(
                    max_length=max_length, do_sample=False, batch_size=n, random_seed=0
                )
                generator = og.Generator(self.model, params)
            # The studio's loop drops a row when its candidate ends; ONNX Runtime GenAI's
            # generator computes it to the end (its row then takes end-of-text).
            drops_rows = isinstance(generator, LoopGenerator | BatchMember)
            return step_candidates(
                generator,
                call,
                eos=self._eos,
                drops_rows=drops_rows,
                # The loop: the preamble's KV from the model's prefix cache, then the rest.
                prefix=self._preamble_tokens(call.preamble, call.prompt_ids) if drops_rows else 0,
                step_lock=self._step_lock,
            )
        except RuntimeError as exc:  # NativeError too
            raise BackendError(f"ONNX Runtime: {exc}") from exc
        finally:
            if isinstance(generator, NativeGenerator | LoopGenerator | BatchMember):
                generator.close()  # its KV cache now (a shared batch: it leaves the batch)
            _call_ended()
