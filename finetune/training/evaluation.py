"""How well a model predicts a split: the exact mean negative log-likelihood per target token,
and its perplexity. The same function measures the base model, every validation and the tuned
model, on the same windows."""

from __future__ import annotations

import math
from typing import Any

from finetune.training.errors import FineTuneError
from finetune.training.examples import IGNORE_INDEX, Encoded, batches


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def evaluate(model: Any, data: Encoded, *, batch_size: int, pad_id: int, device: str) -> float:
    """Mean negative log-likelihood per target token (exact: summed over all tokens of the
    split, not a mean of batch means)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, mask, labels in batches(
            data, batch_size=batch_size, pad_id=pad_id, shuffle_seed=None
        ):
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
            target = labels[:, 1:]
            total += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(),
                    target.reshape(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
            )
            count += int((target != IGNORE_INDEX).sum())
    if was_training:
        model.train()
    if count == 0:
        raise FineTuneError("The evaluation split has no tokens to predict.", field="data")
    return total / count
