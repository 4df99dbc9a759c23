"""Benchmark: the studio's default CPU path against llama.cpp on the same model, side by side.

Run from the repository root: ``.venv/bin/python bench/bench_llamacpp.py``. Figures:

* ``cpu_decode_speedup_vs_llamacpp``: decode tokens/s of one greedy candidate through the
  studio's default CPU path on this host / decode tokens/s of ``llama-cpp-python`` on the
  packaged GGUF itself (Q4_1), the same prompt ids, greedy, the same number of tokens (EOS not
  honoured on either side), 2 threads each. The default path is the engine a worker serves the
  default model with here (``..._serving_engine``): ONNX Runtime on the studio's conversion, or
  the studio's llama.cpp backend on the GGUF where this host's tuning chose it
  (``generation.tuning.tune_engine``: perplexity within the conversion's bound, faster by more
  than the margin). Where nothing is recorded yet the bench measures it as a worker does at
  its start, and records it. The other engine is printed beside it
  (``..._engine_onnx`` / ``..._engine_llamacpp``). Decode rate: tokens after the first over
  the time from the first token to the last (prefill not counted). Each side runs in a process
  of its own, loaded once; the rounds rotate which goes first and no two run at once. Each
  figure is the median of the per-round ratios, with n and a 95% interval; ``..._studio_tok_s``
  / ``..._llamacpp_tok_s`` are the medians behind them (absolute rates mean little on a shared
  host). ``..._greedy_prefix_tokens``: greedy tokens both wrote alike from the start (the
  ONNX conversion is int8, so it parts from Q4_1 at some point; the studio's llama.cpp backend
  runs the same weights, so it should not).

llama-cpp-python has no binary wheel on PyPI (it builds from source in minutes on 2 cores): it
is built once into a wheel cache outside the app's environment (``~/.cache/contentstudio/wheels``,
or CONTENTSTUDIO_TOOL_CACHE), the one ``make llamacpp`` installs the studio's backend from; for
the comparison this bench installs the wheel into a venv of its own beside it.
``BENCH_LLAMACPP_BUILD=0`` skips the build when no wheel is cached; the figure then says
``skipped (reason)``, as it does when the build fails. Then, where node is installed, a
stand-in is measured and labelled as one: ``cpu_decode_speedup_vs_llamacpp_node_prebuilt``,
the same comparison against llama.cpp's prebuilt CPU binary through node-llama-cpp
(``bench/llamacpp_node.mjs``, installed with npm into the same cache), a generic build rather
than one compiled for this CPU.
Options: ``BENCH_QUICK=1`` (fewer rounds), ``BENCH_THREADS`` (default 2).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LLAMA_VERSION = "0.3.36"
CACHE = Path(os.environ.get("CONTENTSTUDIO_TOOL_CACHE") or Path.home() / ".cache/contentstudio")
WHEELS = CACHE / "wheels"
VENV = CACHE / f"llamacpp-{LLAMA_VERSION}"
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 4 if QUICK else 8
LLAMA_FIGURE = "cpu_decode_speedup_vs_llamacpp"
NODE_LLAMA_VERSION = "3.22.1"
NODE_DIR = CACHE / f"node-llama-cpp-{NODE_LLAMA_VERSION}"
N_TOKENS = 64
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
USER = "Write a short news story: a storm hit the coast on Monday and closed the harbour."
# CPU build, nothing but the library (no server, tools or tests to compile).
CMAKE_ARGS = (
    "-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF "
    "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- llama-cpp-python, outside the app's environment -----------------------------------------


def _cached_wheel() -> Path | None:
    found = sorted(WHEELS.glob(f"llama_cpp_python-{LLAMA_VERSION}-*.whl"))
    return found[-1] if found else None


def _venv_ready() -> bool:
    python = VENV / "bin/python"
    return python.exists() and (
        subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0
    )


def _build_wheel() -> str:
    """Build the wheel into the cache ("" when done, else why not)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    lock = WHEELS / ".building"
    if lock.exists():  # another run builds it: wait for that one (at most an hour)
        log(f"llama-cpp-python: a build is under way ({lock}); waiting for it")
        deadline = time.time() + 3600
        while lock.exists() and time.time() < deadline and _cached_wheel() is None:
            time.sleep(10)
        return "" if _cached_wheel() else "another build did not finish"
    log(
        f"llama-cpp-python {LLAMA_VERSION}: no binary wheel loads here; building it from source "
        f"once into {WHEELS} (about 14 minutes on 2 idle cores, longer under load)"
    )
    lock.write_text(str(os.getpid()))
    try:
        done = subprocess.run(
            [
                "nice",
                "-n",
                "19",
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                f"llama-cpp-python=={LLAMA_VERSION}",
                "-w",
                str(WHEELS),
            ],
            env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"},
            capture_output=True,
            text=True,
        )
    finally:
        lock.unlink(missing_ok=True)
    if done.returncode != 0 or _cached_wheel() is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"build failed: {tail[0][:200]}"
    return ""


def llama_python() -> tuple[Path | None, str]:
    """The Python of the separate llama.cpp venv, ready; or None and why not."""
    if _venv_ready():
        return VENV / "bin/python", ""
    if _cached_wheel() is None:
        if os.environ.get("BENCH_LLAMACPP_BUILD") == "0":
            return None, f"no wheel in {WHEELS} and BENCH_LLAMACPP_BUILD=0"
        reason = _build_wheel()
        if reason:
            return None, reason
    wheel = _cached_wheel()
    log(f"llama-cpp-python: installing {wheel} into {VENV}")
    for command in (
        [sys.executable, "-m", "venv", str(VENV)],
        [VENV / "bin/pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"install failed: {(done.stderr.strip().splitlines() or [''])[-1][:200]}"
    return (VENV / "bin/python", "") if _venv_ready() else (None, "installed but not importable")


# --- The two sides, each in its own process, loaded once --------------------------------------


def child_studio(onnx_dir: str, precision: str, engine: str) -> None:
    """The studio's CPU path on one engine (``onnx``: ONNX Runtime on the conversion;
    ``llamacpp``: llama.cpp on the GGUF), configured as a worker configures it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ["CONTENTSTUDIO_TORCH_THREADS"] = str(THREADS)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from transformers import AutoTokenizer

    from generation.backends import get_backend
    from generation.backends.base import encode_prompt
    from generation.backends.types import BackendConfig, SamplingSettings
    from generation.defaults import DEFAULT_MODEL_SOURCE
    from generation.model_runtime import worker_backend_options

    options = worker_backend_options()
    config = BackendConfig(
        backend=engine,
        source_kind="package_gguf",
        source=DEFAULT_MODEL_SOURCE,
        onnx_dir=onnx_dir,
        onnx_precision=precision,
        **options,
    )
    backend = get_backend(config, cache_root=settings.MODEL_CACHE_DIR)
    prompt = backend.render_prompt(system="", user=USER)
    ids = encode_prompt(AutoTokenizer.from_pretrained(onnx_dir), prompt)
    sampling = SamplingSettings(
        max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, temperature=0.0, top_k=0, top_p=1.0
    )

    def once() -> dict[str, Any]:
        (row,) = backend.generate(prompt=prompt, n=1, seeds=[0], settings=sampling)
        span = (row.finished_at or 0) - (row.first_token_at or 0)
        return {"tok_s": (len(row.token_ids) - 1) / span, "tokens": list(row.token_ids)}

    once()  # warm-up
    settings_used = {k: options[k] for k in ("merge_calls", "spin", "cores")}
    _serve({"prompt_ids": ids, "settings": settings_used, "engine": engine}, once)


def child_llama(gguf: str) -> None:
    """llama.cpp through llama-cpp-python (run by the separate venv's Python)."""
    from llama_cpp import Llama  # type: ignore[import-not-found]

    first = json.loads(sys.stdin.readline())
    ids = first["prompt_ids"]
    llm = Llama(
        model_path=gguf, n_threads=THREADS, n_threads_batch=THREADS, n_ctx=512, verbose=False
    )

    def once() -> dict[str, Any]:
        llm.reset()
        tokens, first_at, last_at = [], 0.0, 0.0
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            last_at = time.perf_counter()
            first_at = first_at or last_at
            tokens.append(int(token))
            if len(tokens) == N_TOKENS:
                break
        return {"tok_s": (len(tokens) - 1) / (last_at - first_at), "tokens": tokens}

    once()  # warm-up
    import llama_cpp  # type: ignore[import-not-found]

    _serve({"version": llama_cpp.__version__}, once)


def _serve(ready: dict[str, Any], once: Any) -> None:
    print(json.dumps({"ready": ready}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(json.dumps(once()), flush=True)


class Side:
    def __init__(self, command: list[str], first_line: dict[str, Any] | None = None) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        if first_line is not None:
            self._send(json.dumps(first_line))
        self.ready = self._read()["ready"]

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.process.args[:3]} ended: exit {self.process.wait()}")
        return json.loads(line)

    def run(self) -> dict[str, Any]:
        self._send("run")
        return self._read()

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def interval95(values: list[float]) -> tuple[float, float]:
    """A t interval of the mean (small n)."""
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    mean, sd = statistics.mean(values), statistics.stdev(values)
    half = t.get(len(values), 2.0) * sd / len(values) ** 0.5
    return mean - half, mean + half


def node_llama() -> tuple[list[str] | None, str]:
    """The command prefix of the node-llama-cpp stand-in (its prebuilt CPU binary, installed
    into the cache with npm on first use), or None and why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node/npm not installed"
    if not (NODE_DIR / "node_modules/node-llama-cpp/package.json").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        (NODE_DIR / "package.json").write_text('{"name": "cs-llama-bench", "private": true}')
        log(f"node-llama-cpp {NODE_LLAMA_VERSION}: installing its prebuilt binary into {NODE_DIR}")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"node-llama-cpp@{NODE_LLAMA_VERSION}"],
            cwd=NODE_DIR,
            env={**os.environ, "NODE_LLAMA_CPP_SKIP_DOWNLOAD": "true"},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return None, f"npm install failed: {(done.stderr.strip().splitlines() or [''])[-1]}"
    script = str(Path(__file__).resolve().with_name("llamacpp_node.mjs"))
    return [node, script, str(NODE_DIR)], ""


def compare(studios: dict[str, Side], other: Side, name: str, serving: str) -> None:
    """Interleaved rounds, every side taking its turn (never two at once, the order rotating);
    prints per studio engine its ratio to llama.cpp in the same round, and the figure itself
    for the engine this host serves with (``serving``)."""
    sides = [*studios.values(), other]
    ratios: dict[str, list[float]] = {engine: [] for engine in studios}
    rates: dict[str, list[float]] = {engine: [] for engine in [*studios, "llamacpp_python"]}
    prefix: dict[str, int] = {}
    for index in range(ROUNDS):
        shift = index % len(sides)
        order = sides[shift:] + sides[:shift]
        got = {id(side): side.run() for side in order}
        theirs = got[id(other)]
        rates["llamacpp_python"].append(theirs["tok_s"])
        line = []
        for engine, side in studios.items():
            ours = got[id(side)]
            rates[engine].append(ours["tok_s"])
            ratios[engine].append(ours["tok_s"] / theirs["tok_s"])
            prefix[engine] = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(ours["tokens"], theirs["tokens"], strict=False))
                    if a != b
                ),
                min(len(ours["tokens"]), len(theirs["tokens"])),
            )
            line.append(f"studio {engine} {ours['tok_s']:.1f}")
        log(
            f"{name} round {index + 1}: {', '.join(line)}, llama-cpp-python "
            f"{theirs['tok_s']:.1f} tok/s, load {os.getloadavg()[0]:.1f}"
        )
    for engine in studios:
        figure = name if engine == serving else f"{name}_engine_{engine}"
        low, high = interval95(ratios[engine])
        print(f"{figure}: {statistics.median(ratios[engine]):.3f}")
        print(f"{figure}_n: {len(ratios[engine])}")
        print(f"{figure}_ci95: {low:.3f}-{high:.3f}")
        print(f"{figure}_studio_tok_s: {statistics.median(rates[engine]):.1f}")
        print(f"{figure}_greedy_prefix_tokens: {prefix[engine]}")
    print(f"{name}_serving_engine: {serving}")
    print(f"{name}_llamacpp_tok_s: {statistics.median(rates['llamacpp_python']):.1f}")


def serving_engine(onnx_dir: Path, precision: str) -> str:
    """The engine a worker serves the default model with on this host: the recorded choice
    (``manage.py studio_tune``), measured here as a worker measures at its start where nothing
    is recorded yet (``generation.tuning.tune_engine``, quick: perplexity checked, interleaved
    rounds); ``onnx`` where llama-cpp-python is not in the app's environment."""
    from django.conf import settings

    from generation import tuning
    from generation.backends import forget_backends
    from generation.backends.llamacpp import available
    from generation.backends.types import BackendConfig
    from generation.defaults import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE
    from generation.model_runtime import worker_backend_options

    if available():
        log(f"studio engine: onnx ({available()})")
        return "onnx"
    chosen = tuning.applied_engine(settings.DATA_DIR, DEFAULT_MODEL_NAME)
    if chosen:
        where = tuning.record_path(settings.DATA_DIR)
        log(f"studio engine: {chosen}, as recorded for this host ({where})")
        return chosen
    log("studio engine: nothing recorded for this host; measuring as a worker does at start")
    config = BackendConfig(
        backend="onnx",
        source_kind="package_gguf",
        source=DEFAULT_MODEL_SOURCE,
        onnx_dir=str(onnx_dir),
        onnx_precision=precision,
        model_name=DEFAULT_MODEL_NAME,
        **worker_backend_options(),
    )
    result = tuning.tune_engine(config, cache_root=Path(settings.MODEL_CACHE_DIR), quick=True)
    tuning.write_record(settings.DATA_DIR, "engine", result)
    forget_backends()
    for trial in result["trials"]:
        log(f"  {trial['setting']}: best {trial['best_s']} s {trial['error']}")
    return str(result["chosen"]["engine"])


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from generation.backends.convert import convert_to_onnx, target_dir
    from generation.backends.gguf import convert_packaged_gguf, package_dir
    from generation.backends.llamacpp import available
    from generation.defaults import DEFAULT_MODEL_SOURCE

    python, reason = llama_python()
    node, node_reason = (None, "llama-cpp-python serves") if python else node_llama()
    if python is None:
        print(f"cpu_decode_speedup_vs_llamacpp: skipped ({reason})")
        if node is None:
            print(f"cpu_decode_speedup_vs_llamacpp_node_prebuilt: skipped ({node_reason})")
            return
    package, _, filename = DEFAULT_MODEL_SOURCE.partition(":")
    gguf = package_dir(package) / filename
    cache = Path(settings.MODEL_CACHE_DIR)
    source = convert_packaged_gguf(DEFAULT_MODEL_SOURCE, cache, progress=log)
    onnx_dir = target_dir(cache, source, "auto")
    meta = convert_to_onnx(source, onnx_dir, precision="auto", progress=log, threads=THREADS)
    serving = serving_engine(onnx_dir, meta["precision"])
    me = str(Path(__file__).resolve())
    engines = ["onnx"] if available() else ["onnx", "llamacpp"]
    studios = {
        engine: Side([sys.executable, me, "--studio", str(onnx_dir), meta["precision"], engine])
        for engine in engines
    }
    first = {"prompt_ids": studios["onnx"].ready["prompt_ids"]}
    if python is not None:
        other, name = Side([str(python), me, "--llama", str(gguf)], first), LLAMA_FIGURE
    else:  # the stand-in: llama.cpp's own prebuilt CPU binary, labelled as such
        command = [*(node or []), str(gguf), str(N_TOKENS), str(THREADS)]
        other, name = Side(command, first), f"{LLAMA_FIGURE}_node_prebuilt"
    log(
        f"bench_llamacpp: {len(first['prompt_ids'])}-token prompt, {N_TOKENS} tokens, "
        f"{THREADS} threads each; studio engines {engines} (ONNX {meta['precision']}, "
        f"{studios['onnx'].ready['settings']}), serving {serving}; "
        f"{other.ready['version']} on {gguf.name}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    try:
        compare(studios, other, name, serving)
    finally:
        for side in [*studios.values(), other]:
            side.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--studio":
        child_studio(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--llama":
        child_llama(sys.argv[2])
    else:
        main()
