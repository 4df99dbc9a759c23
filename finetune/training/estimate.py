"""Steps and time of a run before it starts, from its token count and the model's size.

The rate is tokens/s x parameters: the steady-state speed of earlier runs on this installation
when there are some (same LoRA choice and device; their warm-up steps excluded, so a 1-step run
says nothing), otherwise a constant measured on a small CPU machine (docs/finetune.md). The
estimate says which, in words, with the duration as people read it.
"""

from __future__ import annotations

import math
from typing import TypedDict

from contentstudio.durations import duration_text
from finetune.training.config import TrainSettings
from finetune.training.examples import Encoded

# Training tokens/s x parameters on 2 CPU cores in fp32 (docs/finetune.md); a forward-only
# evaluation runs about 3x that; LoRA skips most weight gradients and optimiser work (1.5x).
CPU_TRAIN_RATE = 170.0 * 135e6
EVAL_SPEEDUP = 3.0
LORA_SPEEDUP = 1.5


class MeasuredSpeed(TypedDict):
    rate: float  # median steady tokens/s x parameters of the runs
    runs: int  # how many earlier runs it comes from


class Estimate(TypedDict):
    train_texts: int
    validation_texts: int
    test_texts: int
    train_tokens: int
    eval_tokens: int
    steps: int
    evaluations: int
    parameters: int
    tokens_per_second: float
    seconds: float
    duration: str  # "about 1 h 50 min"
    basis: str  # how the speed was measured, in words


def plan_steps(n_train_windows: int, settings: TrainSettings) -> tuple[int, int]:
    """(optimiser steps per epoch, total optimiser steps)."""
    micro = math.ceil(n_train_windows / settings.batch_size)
    per_epoch = max(1, math.ceil(micro / settings.grad_accumulation))
    total = per_epoch * settings.epochs
    if settings.max_steps:
        total = min(total, settings.max_steps)
    return per_epoch, total


def estimate(
    *,
    counts: dict[str, int],
    train: Encoded,
    evaluation_tokens: int,
    parameters: int,
    settings: TrainSettings,
    measured: MeasuredSpeed | None = None,
) -> Estimate:
    """How long a run should take, before it starts.

    ``measured`` is the steady speed of earlier runs on this installation (same LoRA setting
    and device); without it the machine constant is used.
    """
    per_epoch, total = plan_steps(len(train.ids), settings)
    step_tokens = train.tokens / max(1, per_epoch)
    tokens = step_tokens * total
    if measured is not None:
        rate = measured["rate"]
    else:
        rate = CPU_TRAIN_RATE * (LORA_SPEEDUP if settings.lora else 1.0)
    per_second = rate / max(parameters, 1)
    if measured is not None:
        runs = measured["runs"]
        basis = (
            f"from {runs} earlier run{'s' if runs != 1 else ''} on this installation, "
            f"steady-state {per_second:,.0f} tokens/s (warm-up steps excluded)"
        )
    else:
        basis = (
            f"machine constant, no run yet: {per_second:,.0f} tokens/s for this model "
            "(measured for a 135M model on 2 idle CPU cores)"
        )
    evals = (
        math.ceil(total / settings.eval_every)
        if settings.eval_every
        else math.ceil(total / per_epoch)
    )
    # Validation each evaluation (+ the base model), test twice (base and tuned).
    val_tokens = evaluation_tokens
    seconds = tokens / per_second + (evals + 1) * val_tokens / (per_second * EVAL_SPEEDUP)
    seconds += 2 * counts.get("test_tokens", 0) / (per_second * EVAL_SPEEDUP)
    return Estimate(
        train_texts=counts.get("train", 0),
        validation_texts=counts.get("validation", 0),
        test_texts=counts.get("test", 0),
        train_tokens=int(tokens),
        eval_tokens=int(val_tokens),
        steps=total,
        evaluations=evals,
        parameters=parameters,
        tokens_per_second=round(per_second, 1),
        seconds=round(seconds, 1),
        duration=duration_text(round(seconds, 1)),
        basis=basis,
    )
