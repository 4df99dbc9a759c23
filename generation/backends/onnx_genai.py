"""The ONNX backend: the default on CPU (ONNX Runtime GenAI's CUDA build is an option on a GPU).

It runs a model converted once by ``generation.backends.convert`` (ONNX Runtime GenAI's builder:
int4/int8 weight-only quantisation, fused attention). On CPU the studio steps that graph with its
own loop on ONNX Runtime (``ort_loop``): a job prefills its prompt once and copies the cache into
its candidates' rows, and a candidate that has ended is dropped from the batch, where ONNX
Runtime GenAI's generator (0.18) prefilled the prompt once per candidate and computed every row
to the end. Its logits were bit-identical to the generator's, so the candidates did not change.
On CUDA, or for a graph the loop does not know (``loop_reason`` says why), ONNX Runtime GenAI's
generator runs, through its C API (``oga_native``). Sampling is ours (``RowSampler``) either
way: every step the logits are read, each candidate picks its token from its own seeded stream,
and the loop takes exactly that token (the generator: a one-hot logits row, greedy). So every
candidate is reproducible from its seed, which ONNX Runtime GenAI's own sampler (one seed per
generator) cannot give.

Concurrent jobs, merged (GENERATION_MERGE_JOBS, the default on CPU): every job on a model steps
in one batch on every core (``ort_loop.SharedBatch``, continuous batching). A job's rows join
between two passes (its prompt prefilled once), are stepped with every other job's rows, and
leave when its candidates end; each job samples, streams and saves in its own worker thread
while the batch's thread runs the passes. A row's logits do not depend on the other rows, so a
job writes the same candidates alone or beside others (the tests check it through the job
path). One batch on two threads beat two jobs on one thread each here: see the figures below.

Concurrent jobs, not merged: every ``generate`` call has its own generator and steps it in its own
worker thread, with no lock: ONNX Runtime's ``run_with_iobinding`` (and the C API's calls) release
the GIL, so two jobs compute on two cores at the same time, and each is sampled, streamed and saved
while the other computes. A long job never holds a short one back: both step side by side and the
operating system shares the cores between their threads; jobs beyond the worker's slots wait in the
queue in order.

Two sessions of one model. The narrow session splits the worker's cores between the jobs it may run
at once (``ort_threads``: one thread on 2 cores with 2 job slots), so jobs side by side never ask
for more threads than there are cores. The wide session (``wide_threads``, every core; the setting
GENERATION_WIDE_SESSION, on by default, loaded only where that is more than the narrow share, CPU
only) is the same weights loaded a second time: +181 MB RSS and +0.65 s of load for SmolLM2-135M
int8. A job that starts while no other ONNX job runs in the process, and no other job is claimed
by it (``base.local_jobs``: the runner counts a job from its claim), takes the wide session; one
that starts beside another takes the narrow one; the draft records which (``threads``). Counting
claims matters for jobs submitted together: the first reached ``generate`` milliseconds before
the second, took the wide session and then shared the two cores with the second (three threads).
Measured on a quiet machine (AMD EPYC with AVX-512 VNNI, load 0.5-1.4), two 4-candidate jobs of
64 tokens: one after another on the wide session 1.72-1.81 s; together, the first wide and the
second narrow, 1.46-1.62 s; together, both narrow, 1.31 s (``bench_engines``'
``concurrent_jobs_speedup`` 1.18 before, 1.34 after); one batch of eight on the wide session
1.36-1.39 s, which is what merging the two jobs would give at best. Spinning pool threads made a
lone job faster there (0.41 s against 0.53 s for one candidate) but two jobs together slower
(1.74 s), so they stay off. A job keeps
its session to the end: moving it would mean appending its tokens so far to a new generator, and
the logits of that prefill differed from the step-by-step ones by up to 0.68 here (a pass over many
positions is not bit-identical to one position at a time), which can change a sampled token. So a
job B that starts while A runs on the wide session makes three threads on two cores until A ends;
that is why the wide session's pool threads block instead of spin-waiting
(``session.intra_op.allow_spinning`` = 0, unless GENERATION_ONNX_SPIN says the worker has its
cores to itself): a spinning pool thread that the kernel deschedules
stalls the whole pass. Measured on this shared 2-core machine with load 6-8 from other work, wide /
narrow tokens/s within one run, one candidate and eight: spinning 0.40 and 0.60, spinning at most
100 us 0.59 and 0.67, not spinning 0.90 and 0.88; two 4-candidate jobs together took as long with A
on the wide session (not spinning) as with both on the narrow one (9.8-10.4 s against 9.4-11.3 s).
Through ``generate``, wide and narrow alternating (``bench/bench_wide_session.py``, two runs at
load 4-5): 0.89 and 0.88 for one candidate, 1.10 and 0.85 for eight, the same tokens. So under such
load the wide session gains nothing and may lose a little (the other work holds the second core,
and a blocking pool thread wakes later than a spinning one); it is for a worker whose cores are
free, where ONNX Runtime GenAI int8 ran 116-118 tokens/s on 2 threads (the issue's measurement,
quiet machine) and the 1-thread job path 3.7x transformers on 2 threads. ``bench/bench_engines.py``
at load 5.5-6.5, wide on: decode 3.44x transformers, eight candidates 1.80x, two jobs together
1.14x; the same with CONTENTSTUDIO_GENERATION_WIDE_SESSION=0 at load 3.6-5.2: 4.13x, 1.86x, 1.04x
(the spread between runs is the load's). On a quiet machine (load 1.3-2.1), wide on: decode
4.88x, eight candidates 3.36x, two jobs together 1.22x; the narrow session alone measured 3.69x,
2.40x and 1.67x on a quiet machine in the previous round. Two jobs side by side can only beat
one after another by what 2 threads lose against 1 on one job (here 84 against 63 tokens/s
bare, batch 1), so a faster lone job lowers that ratio; it stays on by default because a lone
job is the common case of a small newsroom.

The figures above were measured on ONNX Runtime GenAI's generator, before the loop. With the
loop (same quiet machine, ``bench/bench_engines.py``): one candidate 118 tokens/s (decode 5.04x
transformers), eight 493 tokens/s (4.69x; 355-397 on the generator), two 4-candidate jobs one
after another 1.55-1.80 s and together 1.16-1.21 s (1.37x); memory after loading both sessions
and one 8-candidate job +504 MB RSS against +552 MB for the generator.

Prompt prefill: once per job in the loop, in two passes where the prompt has a preamble (the
chat template's system turn, ``preamble``): the preamble's KV comes from the model's prefix cache
(``ort_loop.PrefixCache``: computed by the first job of a system text, kept for the next ones),
the rest of the prompt is the second pass. The two passes run whether the preamble was cached
or not, so a job's candidates do not depend on what ran before; they were bit-identical to one
pass over the whole prompt here. The output head sees the last position only
(``ort_loop._last_position_graph``). On an Intel Xeon with AVX-512 (2 threads, noisy), the
47-token prompt of the benchmarks (24 of them the default system turn): one pass 91 ms, with the
head on the last position 78 ms, the rest after a cached preamble about 50 ms; time to the first
frame 0.79-0.89x ONNX Runtime GenAI's own one-token generate, 1.26-1.38x with the preamble not
cached.
Earlier (AMD EPYC): 0.035 s on 2 threads for the whole prompt, against once per candidate in
ONNX Runtime GenAI's generator, which has no call that
copies one row's KV cache into the others (``RewindTo`` crops, ``SnapshotState`` keeps only
recurrent state, ``SetModelInput`` is for the inputs it does not handle itself) and whose
Engine's prompt cache samples inside the library: about 0.127 s at batch 4 there.

Why not one merged batch of several jobs: through ONNX Runtime GenAI, rows of different prompts
need left padding, which changed the logits of the padded row by up to 2.8 here (so each
candidate's text); the loop could hold rows of different lengths (the attention takes each row's
length from its mask: a 47-token and a 20-token prompt stepped as two rows of one batch gave
logits bit-identical to each alone for 10 steps here), so the loop merges jobs. On the generator
a merged batch would not have beaten two jobs side by side on one thread each: one batch of
eight on the wide session 1.36-1.39 s against 1.31 s for two jobs of four together; with the
loop, 0.98-1.02 s against 1.13 s. And the continuous-batching
``Engine``/``Request`` API of ONNX Runtime GenAI 0.18 samples inside the library (one seed per
request, no logits hook), so our per-candidate sampler and its reproducibility record could not
run there. Reproducibility across the ways to run: the logits of a row depend neither on the
thread count (1 and 2 threads, spinning or not, gave bit-identical logits for 64 steps of the
default int8 model at batch 1, 4 and 8) nor on what runs beside it, which the tests check
through the job path (a job alone on the wide session, the same job beside another on the
narrow one). A candidate that has finished leaves the loop's batch; on ONNX Runtime GenAI's
generator it is forced to end-of-text and its row computed until the batch ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    local_jobs,
)
from generation.backends.convert import CONVERSION_FILE
from generation.backends.oga_native import NativeError, NativeGenerator, NativeModel
from generation.backends.ort_loop import (
    LoopGenerator,
    LoopModel,
    LoopUnsupported,
    SharedBatch,
    _Member,
)
from generation.backends.sampling import SAMPLER_VERSION, RowSampler


def _cores_and_slots() -> tuple[int, int]:
    from django.conf import settings

    cores = int(getattr(settings, "TORCH_THREADS", 0) or os.cpu_count() or 1)
    slots = max(1, int(getattr(settings, "GENERATION_CONCURRENCY", 1) or 1))
    return cores, slots


def ort_threads() -> int:
    """Intra-op threads of the narrow session: the worker's cores (TORCH_THREADS, else every
    core) split between the generation jobs it may run at once (GENERATION_CONCURRENCY), so
    that jobs running side by side never ask for more threads than there are cores."""
    cores, slots = _cores_and_slots()
    return max(1, cores // slots)


def merge_jobs() -> bool:
    """Whether every job on a model steps in one shared batch (GENERATION_MERGE_JOBS)."""
    from django.conf import settings

    return bool(getattr(settings, "GENERATION_MERGE_JOBS", True))


def wide_threads() -> int | None:
    """Intra-op threads of the wide session (every core), for a job that runs alone; None when
    there is none: GENERATION_WIDE_SESSION off, or the narrow session has every core already."""
    from django.conf import settings

    cores, _ = _cores_and_slots()
    if not getattr(settings, "GENERATION_WIDE_SESSION", True) or cores <= ort_threads():
        return None
    return cores


logger = logging.getLogger(__name__)

# Stands for the user's text when the preamble is rendered (never in a real prompt).
_USER_MARK = "\x00studio-user-text\x00"


def wide_session_options() -> dict[str, str]:
    """Session config entries of the every-core session (the shared batch's or the wide one):
    its pool threads block instead of spin-waiting (see the module docstring for why), unless
    GENERATION_ONNX_SPIN says the worker has its cores to itself."""
    from django.conf import settings

    spin = bool(getattr(settings, "GENERATION_ONNX_SPIN", False))
    return {"session.intra_op.allow_spinning": "1" if spin else "0"}


# ONNX Runtime GenAI jobs generating in this process now, whichever model: they share the cores.
_jobs_running = 0
_jobs_lock = threading.Lock()


def _job_ended() -> None:
    global _jobs_running
    with _jobs_lock:
        _jobs_running -= 1


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
        logger.warning("ONNX Runtime GenAI C API unavailable (%s); jobs take turns", exc)
        return None
    session_options: dict[str, Any] = {"intra_op_num_threads": threads, **(options or {})}
    return NativeModel(path, session_options=session_options, cuda=cuda)


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
            self.threads = ort_threads()
            # On CPU the studio's own loop (``ort_loop``): prefill once per job, drop finished
            # rows. Elsewhere, or for a graph it does not know, ONNX Runtime GenAI's generator.
            self.loop_reason = "CUDA: ONNX Runtime GenAI's generator" if want_cuda else ""
            self.native: LoopModel | NativeModel | None = None
            # Every job in one batch on every core (GENERATION_MERGE_JOBS), loop only.
            self.shared: SharedBatch | None = None
            if not want_cuda:
                try:
                    if merge_jobs():
                        cores, _ = _cores_and_slots()
                        self.native = LoopModel(path, threads=cores, options=wide_session_options())
                        self.shared, self.threads = SharedBatch(self.native), cores
                    else:
                        self.native = LoopModel(path, threads=self.threads)
                except LoopUnsupported as exc:
                    self.loop_reason = f"ONNX Runtime GenAI's generator: {exc}"
                    logger.warning("ONNX model %s: %s", path, self.loop_reason)
            if self.native is None:
                self.native = _native_model(path, threads=self.threads, cuda=want_cuda)
            # The wide session: the same weights loaded again with every core, for a job that
            # finds no other job running here (CPU only; without the C API jobs take turns).
            wide = (
                wide_threads()
                if self.native is not None and not want_cuda and self.shared is None
                else None
            )
            self.wide_threads = wide
            self.wide: LoopModel | NativeModel | None = None
            if wide and isinstance(self.native, LoopModel):
                self.wide = LoopModel(path, threads=wide, options=wide_session_options())
            elif wide:
                self.wide = _native_model(
                    path, threads=wide, cuda=False, options=wide_session_options()
                )
            # Without the C API (another platform's wheel), the Python module's generators;
            # they hold the GIL while they compute, so jobs then take turns step by step.
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
        self._decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)

    def _session_for_job(self) -> tuple[LoopModel | NativeModel | None, int]:
        """The session a starting job steps on, and its threads: the wide one when no other
        job of any ONNX model is running in this process, else the narrow one. Counts the job
        as running until ``_job_ended``. A job keeps its session to the end: moving it to the
        other one would mean prefilling its tokens again, which changed the logits here."""
        global _jobs_running
        with _jobs_lock:
            # Alone: no other job generating here, and none claimed that is about to (the
            # runner counts claimed jobs, this one included; other callers count none).
            alone = _jobs_running == 0 and local_jobs() <= 1
            _jobs_running += 1
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
        preamble: str = "",
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
        cancelled = False
        generator = None
        native, threads = self._session_for_job()
        for out in outputs:
            out.threads = threads
        try:
            max_length = len(prompt_ids) + settings.max_new_tokens
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
            # The candidate of each row of the generator: the studio's loop drops a row when
            # its candidate ends; ONNX Runtime GenAI's generator computes it to the end (its
            # row then takes end-of-text).
            rows = list(range(n))
            drops_rows = isinstance(generator, LoopGenerator | _Member)
            ids = np.array([prompt_ids] * n, dtype=np.int32)
            with self._step_lock:
                if drops_rows:
                    # The loop: the preamble's KV from the model's prefix cache, then the rest.
                    generator.append_tokens(ids, prefix=self._preamble_tokens(preamble, prompt_ids))
                else:
                    generator.append_tokens(ids)
            for step in range(settings.max_new_tokens):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                with self._step_lock:  # the forward pass runs here (lazily)
                    logits = generator.get_logits()  # (rows, 1, vocab)
                now = time.monotonic()
                deltas: list[str | None] = [None] * n
                tokens = [eos_token] * len(rows)
                for position, index in enumerate(rows):
                    out = outputs[index]
                    if out.finished:
                        continue
                    if out.first_token_at is None:
                        out.first_token_at = now
                    history = prompt_ids + out.token_ids
                    token = sampler.choose(index, logits[position, -1], history, step)
                    tokens[position] = token
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
                if drops_rows:
                    keep = [p for p, index in enumerate(rows) if not outputs[index].finished]
                    generator.keep_rows(keep)
                    rows = [rows[p] for p in keep]
                    generator.set_next_tokens([tokens[p] for p in keep])
                else:
                    forced = np.full_like(logits, -np.inf)
                    forced[np.arange(len(rows)), -1, tokens] = 0.0
                    generator.set_logits(forced)
                    generator.generate_next_token()
        except (PromptTooLong, BackendError):
            raise
        except RuntimeError as exc:  # NativeError too
            raise BackendError(f"ONNX Runtime: {exc}") from exc
        finally:
            if isinstance(generator, NativeGenerator | LoopGenerator | _Member):
                generator.close()  # its KV cache now (a shared batch: it leaves the batch)
            _job_ended()
        now = time.monotonic()
        for out, decoder in zip(outputs, decoders, strict=True):
            out.text = decoder.text()
            out.completion_tokens = len(out.token_ids)
            out.prompt_tokens = len(prompt_ids)
            if not out.finished:
                out.finished, out.finished_at = True, now
                out.finish_reason = "cancelled" if cancelled else "length"
        return outputs
