"""The texts of a run as the model sees them: a seeded train / validation / test split, token
windows (training packs short texts together, evaluation keeps one text per window), and padded
batches whose padding and prompts are never learned."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finetune.training.config import TrainSettings
from finetune.training.errors import FineTuneError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """A training text. ``prompt`` (may be empty) is context the loss ignores; ``text`` is what
    the model learns to write (an archive document, or an editor's final text)."""

    text: str
    prompt: str = ""
    source: str = ""


@dataclass
class Split:
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split_examples(examples: Sequence[Example], settings: TrainSettings) -> Split:
    """A train / validation / test split fixed by ``settings.seed`` (the same seed gives the
    same split, so base and tuned models, and later runs, are measured on the same texts)."""
    usable = [e for e in examples if e.text.strip()]
    if not usable:
        raise FineTuneError("There is no training text: the data selection is empty.", field="data")
    order = list(range(len(usable)))
    random.Random(settings.seed).shuffle(order)
    if settings.max_texts:
        order = order[: settings.max_texts]
    if len(order) < 3:
        raise FineTuneError(
            f"Only {len(order)} text(s) selected; a run needs at least 3 (train, validation "
            "and test each need one).",
            field="data",
        )
    n_test = max(1, round(len(order) * settings.test_fraction))
    n_val = max(1, round(len(order) * settings.val_fraction))
    if n_test + n_val >= len(order):
        n_test, n_val = 1, 1
    test = [usable[i] for i in order[:n_test]]
    val = [usable[i] for i in order[n_test : n_test + n_val]]
    train = [usable[i] for i in order[n_test + n_val :]]
    return Split(train=train, validation=val, test=test)


@dataclass
class Encoded:
    """Token windows of one split: ``ids[i]`` with ``labels[i]`` (IGNORE_INDEX on context)."""

    ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids)

    @property
    def target_tokens(self) -> int:
        return sum(sum(1 for t in lab[1:] if t != IGNORE_INDEX) for lab in self.labels)


def encode_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    max_length: int,
    chat: bool,
    pack: bool = False,
) -> Encoded:
    """Tokenise each example; a long text becomes several windows of ``max_length`` tokens.

    A supervised pair keeps its prompt (truncated from the left) in front of each window of
    the answer, with the prompt's labels ignored. The end-of-text token ends each text, so the
    model learns where a draft stops. With ``pack`` (training), texts without a prompt are
    concatenated, each ended by that token, and cut into full windows: short archive
    paragraphs would otherwise fill most of a 256-token batch with padding. Evaluation keeps
    one text per window, so a perplexity is the same whatever else was selected.
    """
    out = Encoded()
    eos = tokenizer.eos_token_id
    if pack:
        stream: list[int] = []
        rest: list[Example] = []
        for example in examples:
            if example.prompt:
                rest.append(example)
                continue
            stream.extend(tokenizer(example.text, add_special_tokens=False)["input_ids"])
            if eos is not None:
                stream.append(eos)
        for start in range(0, len(stream), max_length):
            piece = stream[start : start + max_length]
            if len(piece) >= 2:
                out.ids.append(piece)
                out.labels.append(list(piece))
        tail = encode_examples(rest, tokenizer, max_length=max_length, chat=chat)
        out.ids.extend(tail.ids)
        out.labels.extend(tail.labels)
        return out
    for example in examples:
        prompt_ids: list[int] = []
        if example.prompt:
            # A chat template already carries its special tokens (as generation does).
            prompt_ids = tokenizer(example.prompt, add_special_tokens=not chat)["input_ids"]
            prompt_ids = prompt_ids[-(max_length // 2) :]
        text_ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            text_ids = [*text_ids, eos]
        room = max_length - len(prompt_ids)
        for start in range(0, len(text_ids), room):
            piece = text_ids[start : start + room]
            if len(piece) < 2 and start > 0:
                continue
            out.ids.append(prompt_ids + piece)
            out.labels.append([IGNORE_INDEX] * len(prompt_ids) + piece)
    return out


def batches(
    data: Encoded, *, batch_size: int, pad_id: int, shuffle_seed: int | None
) -> list[tuple[Any, Any, Any]]:
    """Padded tensors (input_ids, attention_mask, labels) per batch; padding is never learned
    (its label is IGNORE_INDEX) nor attended to."""
    import torch

    order = list(range(len(data.ids)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    else:
        # Evaluation: similar lengths together pad less (MODELS.md: do not pad to the longest).
        order.sort(key=lambda i: len(data.ids[i]))
    out = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(data.ids[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for r, i in enumerate(rows):
            n = len(data.ids[i])
            ids[r, :n] = torch.tensor(data.ids[i])
            mask[r, :n] = 1
            labels[r, :n] = torch.tensor(data.labels[i])
        out.append((ids, mask, labels))
    return out
