"""The settings of one fine-tuning run. What each may be (names, ranges, labels) is in
``finetune.rules``, checked by generation's one settings validator."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 4
    grad_accumulation: int = 1
    epochs: int = 1
    max_steps: int = 0
    max_seq_length: int = 256
    warmup_steps: int = 0
    eval_every: int = 0
    patience: int = 2
    max_grad_norm: float = 1.0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_texts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The demo run (README, benchmark, the form's preset): a slice of the demo archive (400
# paragraphs: 320 to train on, 40 to validate, 40 to test), full fine-tuning of the 135M default
# model, 16 steps of 4 x 256 packed tokens. What it takes and gives: docs/finetune.md.
DEMO_SETTINGS = TrainSettings(
    learning_rate=1e-4,
    weight_decay=0.01,
    batch_size=4,
    grad_accumulation=1,
    epochs=1,
    max_steps=16,
    max_seq_length=256,
    warmup_steps=2,
    eval_every=8,
    patience=2,
    seed=0,
    val_fraction=0.1,
    test_fraction=0.1,
    max_texts=400,
)
