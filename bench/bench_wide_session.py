"""The ONNX backend's wide session (every core, for a job alone) against its narrow one, with
jobs not merged into one batch (CONTENTSTUDIO_GENERATION_MERGE_JOBS off; merged, every job runs
on one session with every core).

Run from the repo root: ``.venv/bin/python bench/bench_wide_session.py [reps]`` (default 5).
One process, one loaded backend (the default model's converted ONNX directory), jobs of one and
of eight 64-token candidates through ``generate``, alternating wide and narrow in every
repetition (and which goes first), so a change of load on a shared machine falls on both sides.
Prints per batch size the median tokens/s of each side, their ratio, and whether both wrote the
same tokens (they must: the logits do not depend on the thread count). Needs more cores than
``cores // GENERATION_CONCURRENCY`` (on 2 cores: 2 threads wide, 1 narrow).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Write a short news report about a storm that hit the coast of Maine on Monday."
TOKENS = 64


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    from django.conf import settings

    from generation.backends.convert import target_dir
    from generation.backends.gguf import convert_packaged_gguf
    from generation.backends.onnx_genai import OnnxGenAIBackend
    from generation.backends.types import BackendConfig, SamplingSettings
    from generation.defaults import DEFAULT_MODEL_SOURCE
    from generation.model_runtime import worker_backend_options

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    # The two sessions exist where jobs do not share one batch (merged jobs run on one session
    # with every core).
    settings.GENERATION_MERGE_JOBS = False
    cache = Path(settings.MODEL_CACHE_DIR)
    source = convert_packaged_gguf(DEFAULT_MODEL_SOURCE, cache)
    onnx_dir = target_dir(cache, source, "auto")
    backend = OnnxGenAIBackend(
        BackendConfig(backend="onnx", onnx_dir=str(onnx_dir), **worker_backend_options()),
        cache_root=cache,
    )
    wide = backend.wide
    if wide is None:
        raise SystemExit("no wide session here (GENERATION_WIDE_SESSION off, or too few cores)")
    print(
        f"wide {backend.wide_threads} threads, narrow {backend.threads}; load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
        file=sys.stderr,
    )
    prompt = backend.render_prompt(system="", user=PROMPT)
    sampling = SamplingSettings(
        max_new_tokens=TOKENS,
        min_new_tokens=TOKENS,
        temperature=0.7,
        top_p=0.9,
        top_k=50,
        repetition_penalty=1.1,
    )

    def run(n: int, use_wide: bool) -> tuple[float, list[list[int]]]:
        backend.wide = wide if use_wide else None  # None: the job takes the narrow session
        started = time.perf_counter()
        out = backend.generate(prompt=prompt, n=n, seeds=list(range(n)), settings=sampling)
        return n * TOKENS / (time.perf_counter() - started), [o.token_ids for o in out]

    run(1, True)
    run(1, False)
    for n in (1, 8):
        speeds: dict[bool, list[float]] = {True: [], False: []}
        tokens: dict[bool, list[list[int]]] = {}
        for rep in range(reps):
            for use_wide in (True, False) if rep % 2 == 0 else (False, True):
                tps, tokens[use_wide] = run(n, use_wide)
                speeds[use_wide].append(tps)
        w, s = statistics.median(speeds[True]), statistics.median(speeds[False])
        print(
            f"n={n}: wide {w:.1f} tokens/s, narrow {s:.1f} (medians of {reps}), ratio "
            f"{w / s:.2f}; same tokens: {tokens[True] == tokens[False]}; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
    backend.wide = wide


if __name__ == "__main__":
    main()
