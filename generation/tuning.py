"""The per-host choice of the settings whose best value depends on the host: measured here, kept
only where a candidate gives the same outputs, recorded per host, applied by the runtime.

Which of job merging or per-job threads, and spinning or sleeping pool threads, is faster
depends on the CPU and on what else runs beside the worker (docs/generation.md): so the studio
measures them on the host (``manage.py studio_tune``, or a quick run at a worker's start when
nothing is recorded for the host) instead of shipping one default. A candidate is kept only when
its outputs are the same as the reference's (greedy tokens identical; embeddings within a cosine
tolerance): a faster setting that writes other text is refused, whatever its speed.

The record is a JSON file under ``DATA_DIR/tuning/``, one per host fingerprint (CPU model, core
count, library versions): a new CPU or a new ONNX Runtime measures again. The runtime reads it
(``recorded_choice``) unless ``CONTENTSTUDIO_TUNING=0``; the admin's model page shows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LIBRARIES = ("onnxruntime", "onnxruntime-genai", "numpy", "torch", "llama-cpp-python")
# The generation settings that may be chosen, the reference (the settings' defaults) first.
GENERATION_CANDIDATES: tuple[dict[str, bool], ...] = (
    {"merge_calls": True, "spin": False},
    {"merge_calls": True, "spin": True},
    {"merge_calls": False, "spin": False},
    {"merge_calls": False, "spin": True},
)
GENERATION_KEYS = ("merge_calls", "spin")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def host_fingerprint() -> dict[str, Any]:
    """What a measurement is valid for: the CPU, its cores, the libraries that run the models."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES if _version(name)},
    }


def fingerprint_key(fingerprint: dict[str, Any] | None = None) -> str:
    data = json.dumps(fingerprint or host_fingerprint(), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def record_path(data_dir: Path, key: str | None = None) -> Path:
    return Path(data_dir) / "tuning" / f"host-{key or fingerprint_key()}.json"


def read_record(data_dir: Path) -> dict[str, Any] | None:
    """This host's record, or None (nothing measured here, or an unreadable file)."""
    path = record_path(data_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("unreadable tuning record %s: measuring again is the fix", path)
        return None


def write_record(data_dir: Path, section: str, result: dict[str, Any]) -> Path:
    """Set one section (``generation``, ``embedding``) of this host's record, atomically."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = read_record(data_dir) or {"fingerprint": host_fingerprint(), "key": fingerprint_key()}
    record[section] = result
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
_cache_lock = threading.Lock()


def recorded_choice(data_dir: Path, section: str) -> dict[str, Any]:
    """The chosen settings of ``section`` on this host ({} when none): re-read when the file
    changes, so a worker picks up a new measurement at its next job."""
    return dict(recorded_section(data_dir, section).get("chosen") or {})


def recorded_section(data_dir: Path, section: str) -> dict[str, Any]:
    """The record of ``section`` on this host ({} when none), cached until the file changes."""
    path = record_path(data_dir)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    with _cache_lock:
        cached = _cache.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_record(data_dir))
            _cache[str(path)] = cached
    record = cached[1] or {}
    return dict(record.get(section) or {})


# --- Measuring -------------------------------------------------------------------------------


@dataclass
class Trial:
    """One candidate setting: its seconds per round and whether its outputs matched."""

    setting: dict[str, Any]
    seconds: list[float] = field(default_factory=list)
    same_outputs: bool | None = None
    difference: str = ""
    error: str = ""

    @property
    def best(self) -> float | None:
        return min(self.seconds) if self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "seconds": [round(s, 4) for s in self.seconds],
            "best_s": round(self.best, 4) if self.best is not None else None,
            "median_s": round(statistics.median(self.seconds), 4) if self.seconds else None,
            "same_outputs": self.same_outputs,
            "difference": self.difference,
            "error": self.error,
        }


# A candidate's runner: does the workload once, returns its outputs (compared with the
# reference's by ``same``, which returns "" when they are the same or what differs).
Runner = Callable[[], Any]


def choose(
    candidates: Sequence[dict[str, Any]],
    *,
    make_runner: Callable[[dict[str, Any]], Runner],
    same: Callable[[Any, Any], str],
    rounds: int = 3,
    margin: float = 0.05,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Measure ``candidates`` (the first is the reference) in interleaved rounds, and choose the
    fastest whose outputs are the same as the reference's, where it beats the reference by more
    than ``margin`` (else the reference).

    Each candidate runs once untimed (warm-up; its outputs compared), then once per round, the
    candidates taking turns, so a change of load on the host falls on all of them alike. A
    candidate that fails or differs is refused and not timed further. Returns the record
    section: ``chosen`` (the reference when nothing else qualifies), the trials, the rounds.
    """
    trials = [Trial(setting=dict(c)) for c in candidates]
    runners: list[Runner | None] = []
    steps, step = len(trials) * (rounds + 1), 0

    def tick(label: str) -> None:
        nonlocal step
        step += 1
        if progress:
            progress(step, steps, label)

    reference: Any = None
    for index, trial in enumerate(trials):
        try:
            runner = make_runner(trial.setting)
            outputs = runner()
        except Exception as exc:  # a setting this host cannot run is refused, not fatal
            if index == 0:
                raise
            trial.error = f"{type(exc).__name__}: {exc}"
            runners.append(None)
            tick(f"{trial.setting} failed")
            continue
        if index == 0:
            reference, trial.same_outputs = outputs, True
        else:
            trial.difference = same(reference, outputs)
            trial.same_outputs = not trial.difference
        runners.append(runner if trial.same_outputs else None)
        tick(f"{trial.setting} warm-up")
    for _ in range(rounds):
        for trial, runner in zip(trials, runners, strict=True):
            if runner is None:
                tick(f"{trial.setting} skipped")
                continue
            started = time.perf_counter()
            outputs = runner()
            trial.seconds.append(time.perf_counter() - started)
            difference = same(reference, outputs)
            if difference:  # outputs that change between runs are not the same outputs
                trial.same_outputs, trial.difference = False, difference
            tick(f"{trial.setting} {trial.seconds[-1]:.3f} s")
    eligible = [t for t in trials if t.same_outputs and t.best is not None]
    winner = min(eligible, key=lambda t: t.best or 0.0) if eligible else trials[0]
    # Leave the settings' values only for a clear gain: a few percent is within the noise of a
    # shared host, and a flip-flop between workers' measurements helps nobody.
    base = trials[0].best
    if winner is not trials[0] and base and (winner.best or 0) > base * (1 - margin):
        winner = trials[0]
    return {
        "chosen": winner.setting,
        "reference": trials[0].setting,
        "speedup_vs_reference": (
            round((trials[0].best or 0) / winner.best, 3) if winner.best and trials[0].best else 1
        ),
        "rounds": rounds,
        "margin": margin,
        "trials": [t.as_dict() for t in trials],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
    }


# --- Generation ------------------------------------------------------------------------------


def same_tokens(reference: list[list[int]], outputs: list[list[int]]) -> str:
    """ "" when every candidate's greedy tokens are identical, else where they first differ."""
    if len(reference) != len(outputs):
        return f"{len(outputs)} candidates against {len(reference)}"
    for row, (a, b) in enumerate(zip(reference, outputs, strict=True)):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            at = min(len(a), len(b)) if at is None else at
            return f"candidate {row}: tokens differ from position {at}"
    return ""


def generation_runner(
    config: Any, *, cache_root: Path, prompt: str, tokens: int, quick: bool
) -> Runner:
    """The workload of one generation setting: a lone one-candidate job, then two four-candidate
    jobs at once (what job merging and per-job threads are about), greedy, ``tokens`` each.
    Returns every candidate's token ids."""
    from generation.backends import load_backend
    from generation.backends.types import SamplingSettings

    backend = load_backend(config, cache_root=cache_root)
    settings = SamplingSettings(
        max_new_tokens=tokens, min_new_tokens=tokens, temperature=0.0, top_p=1.0, top_k=0
    )
    pair = 2 if quick else 4

    def job(n: int, out: list[list[int]], offset: int) -> None:
        rows = backend.generate(prompt=prompt, n=n, seeds=list(range(n)), settings=settings)
        for row in rows:
            out[offset + row.index] = list(row.token_ids)

    def run() -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(1 + 2 * pair)]
        job(1, out, 0)
        errors: list[BaseException] = []

        def side(offset: int) -> None:
            try:
                job(pair, out, offset)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=side, args=(1 + i * pair,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return out

    return run


def tune_generation(
    config: Any,
    *,
    cache_root: Path,
    candidates: Sequence[dict[str, Any]] = GENERATION_CANDIDATES,
    quick: bool = False,
    prompt: str = "The city council met on Monday to discuss the new budget. The mayor said",
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Measure the generation candidates on ``config`` (a ``BackendConfig`` of an ONNX model on
    CPU; each candidate replaces some of its fields) and return the record section."""
    tokens = 16 if quick else 48

    def make_runner(setting: dict[str, Any]) -> Runner:
        return generation_runner(
            replace(config, **setting),
            cache_root=cache_root,
            prompt=prompt,
            tokens=tokens,
            quick=quick,
        )

    result = choose(
        candidates,
        make_runner=make_runner,
        same=same_tokens,
        rounds=2 if quick else 4,
        progress=progress,
    )
    result["chosen"] = {k: v for k, v in result["chosen"].items() if k in GENERATION_KEYS}
    result.update(model=config.model_name, tokens=tokens, quick=quick)
    return result


def applied_generation_options(data_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (the worker's backend options from the settings) with this host's recorded
    generation choice applied."""
    chosen = recorded_choice(data_dir, "generation")
    return {**options, **{k: bool(v) for k, v in chosen.items() if k in GENERATION_KEYS}}


# --- Engine (ONNX Runtime on the conversion, or llama.cpp on the GGUF itself) ------------------

ENGINE_CANDIDATES: tuple[dict[str, str], ...] = ({"engine": "onnx"}, {"engine": "llamacpp"})


def gguf_perplexity_ratio(config: Any, *, cache_root: Path) -> tuple[float, float]:
    """The llama.cpp backend's perplexity on the conversion's held-out windows, and its ratio to
    the fp32 reference the ONNX conversion recorded (the same windows, the same tokenizer)."""
    from generation.backends import load_backend
    from generation.backends.convert import (
        HELD_OUT_TOKENS,
        held_out_windows,
        pooled_perplexity,
        read_meta,
    )

    meta = read_meta(Path(config.onnx_dir)) or {}
    reference = meta.get("perplexity_fp32")
    if not reference:
        raise ValueError("the ONNX conversion recorded no fp32 perplexity to compare with")
    backend = load_backend(replace(config, backend="llamacpp"), cache_root=cache_root)
    windows = held_out_windows(backend.tokenizer, HELD_OUT_TOKENS)

    def perplexity(window: list[int]) -> float:
        score = backend.score_ids(prompt_ids=window[:1], ids=window[1:])
        return float(score.perplexity or 0.0)

    measured = pooled_perplexity(perplexity, windows)
    return measured, measured / float(reference)


def tune_engine(
    config: Any,
    *,
    cache_root: Path,
    quick: bool = False,
    prompt: str = "The city council met on Monday to discuss the new budget. The mayor said",
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """ONNX Runtime on the studio's conversion (the reference) against llama.cpp on the GGUF the
    model was converted from, on the generation workload (``generation_runner``).

    The two engines run different quantisations of one model, so their tokens differ and the
    same-outputs rule cannot judge them: llama.cpp is admitted only when its perplexity on the
    conversion's held-out windows is within ``convert.MAX_PERPLEXITY_RATIO`` of the fp32
    reference, the rule every ONNX precision passes; then the faster one is kept (by more
    than the margin). ``config``: the ONNX model's ``BackendConfig`` with this host's
    generation choice applied."""
    from generation.backends.convert import MAX_PERPLEXITY_RATIO

    tokens = 16 if quick else 48
    checked: dict[str, float] = {}

    def make_runner(setting: dict[str, Any]) -> Runner:
        candidate = replace(config, backend=setting["engine"])
        if setting["engine"] == "llamacpp":
            from generation.backends.llamacpp import available

            reason = available()
            if reason:
                raise RuntimeError(reason)
            perplexity, ratio = gguf_perplexity_ratio(config, cache_root=cache_root)
            checked.update(perplexity=round(perplexity, 4), perplexity_ratio=round(ratio, 4))
            if ratio > MAX_PERPLEXITY_RATIO:
                raise ValueError(
                    f"perplexity {ratio:.3f}x the fp32 reference, over {MAX_PERPLEXITY_RATIO}"
                )
        return generation_runner(
            candidate, cache_root=cache_root, prompt=prompt, tokens=tokens, quick=quick
        )

    result = choose(
        ENGINE_CANDIDATES,
        make_runner=make_runner,
        same=lambda reference, outputs: "",  # judged by perplexity instead (above)
        rounds=2 if quick else 4,
        progress=progress,
    )
    result.update(model=config.model_name, tokens=tokens, quick=quick, llamacpp=checked)
    return result


def applied_engine(data_dir: Path, model_name: str) -> str:
    """The engine this host chose for ``model_name`` ("" when none was measured for it)."""
    section = recorded_section(data_dir, "engine")
    if section.get("model") != model_name:
        return ""
    return str((section.get("chosen") or {}).get("engine") or "")
