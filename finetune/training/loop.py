"""The training loop: fine-tune a causal language model and save the best weights.

Plain PyTorch (no ``transformers.Trainer``) so that every piece the product promises is visible
and tested: AdamW with decoupled weight decay (none on biases and norms), linear warm-up then
linear decay, gradient accumulation, validation every N optimiser steps or every epoch, early
stopping with patience, the best weights kept, and the test perplexity of the base and of the
tuned model on the same seeded split. LoRA (peft) is optional; its adapter is merged before
saving, so the result is always a plain transformers directory every backend can load.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from finetune.training.config import TrainSettings
from finetune.training.errors import Cancelled, FineTuneError, out_of_memory_named
from finetune.training.estimate import plan_steps
from finetune.training.evaluation import evaluate, perplexity
from finetune.training.examples import IGNORE_INDEX, Encoded, Split, batches, encode_examples


class Point(TypedDict, total=False):
    step: int
    epoch: float
    loss: float  # training loss (mean over the step's tokens)
    val_loss: float
    val_ppl: float
    lr: float
    elapsed: float


# Steps left out of the measured speed: the first optimiser steps allocate the gradients and
# AdamW's state and run on cold caches, so a short run's average speaks of its start-up, not of
# its speed (a 1-step run once made the next estimate 50x too long). docs/finetune.md.
SPEED_SKIP_STEPS = 2


class Progress(TypedDict):
    phase: str  # loading | tokenising | base_eval | training | evaluating | test | saving
    step: int
    total_steps: int
    epoch: float
    epochs: int
    seconds_left: float | None
    tokens_per_second: float | None
    point: Point | None


@dataclass
class TrainResult:
    output_dir: Path
    base_test_loss: float
    base_test_ppl: float
    test_loss: float
    test_ppl: float
    best_val_loss: float
    best_val_ppl: float
    best_step: int
    steps: int
    total_steps: int
    stopped_early: bool
    cancelled: bool
    train_tokens: int  # tokens the training steps processed (padding excluded)
    train_seconds: float  # the training loop's wall time, evaluations excluded
    # The same over the steps after the first SPEED_SKIP_STEPS (0 when the run had no more):
    # the steady speed estimates are made from.
    steady_tokens: int
    steady_seconds: float
    # The same in CPU time of this process (all its threads): what the benchmark compares, as
    # wall time on a shared machine mostly measures the neighbours.
    train_cpu_seconds: float
    seconds: float
    history: list[Point]
    counts: dict[str, int]
    parameters: int
    trainable_parameters: int
    base_val_loss: float

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def steady_tokens_per_second(self) -> float | None:
        """Training speed after the warm-up steps; None when the run stopped before any."""
        return self.steady_tokens / self.steady_seconds if self.steady_seconds > 0 else None

    @property
    def base_val_ppl(self) -> float:
        return perplexity(self.base_val_loss)

    @property
    def improved(self) -> bool:
        """A checkpoint beat the base model on the validation texts (the best one is kept)."""
        return self.best_step > 0 and self.best_val_loss < self.base_val_loss


def time_left(
    *,
    steps_left: int,
    steady_steps: int,
    steady_seconds: float,
    steps_done: int,
    train_seconds: float,
    evaluations: int,
    per_evaluation: float,
    test_seconds: float,
) -> float:
    """Seconds a run still needs: the steps left at the steady step time (the average so far
    while no step past the warm-up has been timed: the warm-up's average would say hours for a
    run of minutes), the evaluations still due at what one takes here, and the test pass."""
    per_step = steady_seconds / steady_steps if steady_steps else train_seconds / max(1, steps_done)
    return per_step * steps_left + per_evaluation * evaluations + test_seconds


def evaluations_left(step: int, total: int, eval_every: int) -> int:
    """Evaluations still to come after ``step``: every ``eval_every`` steps and at the end."""
    if step >= total:
        return 0
    due = total // eval_every - step // eval_every
    return due + (1 if total % eval_every else 0)


def count_parameters(model: Any) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    # Decoupled weight decay on weight matrices only: biases and norm gains are not shrunk
    # towards zero (the usual AdamW practice; decaying them only hurts).
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to zero at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total - warmup)
    return max(0.0, (total - step) / remaining)


def load_for_training(path: str, *, device: str, revision: str = "") -> tuple[Any, Any]:
    """A fresh copy of the model in fp32 (never the shared one generation loads: training
    changes the weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    return model, tokenizer


def _apply_lora(model: Any, settings: TrainSettings) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise FineTuneError("LoRA needs the peft package.", field="settings.lora") from exc
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        # GPT-2's projections are Conv1D layers that store weights transposed.
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise FineTuneError(f"LoRA cannot wrap this model: {exc}", field="settings.lora") from exc


def _trainable_state(model: Any) -> dict[str, Any]:
    # The best weights so far, kept in memory (copying is far cheaper than writing 0.5 GB to
    # disk at every improvement); only trainable tensors change, so only they are copied.
    return {
        name: param.detach().to("cpu", copy=True)
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def _restore(model: Any, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def train(
    *,
    model: Any,
    tokenizer: Any,
    split: Split,
    settings: TrainSettings,
    output_dir: Path,
    device: str = "cpu",
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on ``split`` and save the best weights to ``output_dir``.

    Side effects: changes ``model`` in place (the caller loaded a private copy) and writes a
    transformers directory (model, tokenizer, generation config). ``should_stop`` is polled
    every micro-batch; when it returns True the run stops, restores the best weights so far
    and still measures and saves them (``cancelled`` in the result). Raises FineTuneError
    (with the field at fault) for bad data and out-of-memory.
    """
    import torch

    started = time.monotonic()
    say = on_progress or (lambda progress: None)
    chat = bool(getattr(tokenizer, "chat_template", None))
    torch.manual_seed(settings.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def progress(phase: str, **extra: Any) -> None:
        say(
            Progress(
                phase=phase,
                step=extra.get("step", 0),
                total_steps=extra.get("total_steps", 0),
                epoch=extra.get("epoch", 0.0),
                epochs=settings.epochs,
                seconds_left=extra.get("seconds_left"),
                tokens_per_second=extra.get("tokens_per_second"),
                point=extra.get("point"),
            )
        )

    progress("tokenising")
    enc_train = encode_examples(
        split.train, tokenizer, max_length=settings.max_seq_length, chat=chat, pack=True
    )
    enc_val = encode_examples(
        split.validation, tokenizer, max_length=settings.max_seq_length, chat=chat
    )
    enc_test = encode_examples(split.test, tokenizer, max_length=settings.max_seq_length, chat=chat)
    for name, enc in (("training", enc_train), ("validation", enc_val), ("test", enc_test)):
        if enc.target_tokens == 0:
            raise FineTuneError(
                f"The {name} split has no tokens to learn from (are the texts empty?).",
                field="data",
            )
    counts = {**split.counts(), "train_tokens": enc_train.tokens, "test_tokens": enc_test.tokens}
    eval_batch = max(1, settings.batch_size)

    def run_eval(data: Encoded) -> float:
        with out_of_memory_named(settings):
            return evaluate(model, data, batch_size=eval_batch, pad_id=pad_id, device=device)

    stop = should_stop or (lambda: False)
    progress("base_eval")
    timed = time.monotonic()
    base_test = run_eval(enc_test)
    test_eval_seconds = time.monotonic() - timed
    if settings.lora:
        model = _apply_lora(model, settings)
    parameters, trainable = count_parameters(model)
    timed = time.monotonic()
    base_val = run_eval(enc_val)
    val_eval_seconds = time.monotonic() - timed
    history: list[Point] = [
        Point(
            step=0, epoch=0.0, val_loss=round(base_val, 5), val_ppl=round(perplexity(base_val), 4)
        )
    ]
    best_val, best_step, best_state = base_val, 0, _trainable_state(model)
    progress("training", point=history[0])

    per_epoch, total = plan_steps(len(enc_train.ids), settings)
    optimizer = torch.optim.AdamW(
        _param_groups(model, settings.weight_decay),
        lr=settings.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=settings.warmup_steps, total=total)
    )
    model.train()
    step = 0
    bad_evals = 0
    stopped_early = cancelled = False
    train_tokens = 0
    # Training time is the loop's wall time less the evaluations: progress reports, cancel
    # polls and batch building count as training (the benchmark compares this to a bare loop).
    eval_seconds = eval_cpu_seconds = 0.0
    evaluations = 0
    train_seconds = 0.0
    steady_tokens, steady_seconds, steady_steps = 0, 0.0, 0
    cpu_started = time.process_time()
    eval_every = settings.eval_every or per_epoch
    loop_started = time.monotonic()
    try:
        with out_of_memory_named(settings):
            for epoch in range(settings.epochs):
                epoch_batches = batches(
                    enc_train,
                    batch_size=settings.batch_size,
                    pad_id=pad_id,
                    shuffle_seed=settings.seed * 1000 + epoch,
                )
                groups = [
                    epoch_batches[i : i + settings.grad_accumulation]
                    for i in range(0, len(epoch_batches), settings.grad_accumulation)
                ]
                for group in groups:
                    if step >= total:
                        break
                    if stop():
                        raise Cancelled
                    step_started, step_tokens = time.monotonic(), 0
                    target_tokens = sum(
                        int((lab[:, 1:] != IGNORE_INDEX).sum()) for _, _, lab in group
                    )
                    loss_sum = 0.0
                    for ids, mask, labels in group:
                        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
                        out = model(input_ids=ids, attention_mask=mask, labels=labels)
                        # Weight each micro-batch by its share of the step's target tokens, so an
                        # accumulated step is the mean over all its tokens (as one big batch).
                        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
                        (out.loss * (n / max(1, target_tokens))).backward()
                        loss_sum += float(out.loss.detach()) * n
                        step_tokens += int(mask.sum())
                    train_tokens += step_tokens
                    if settings.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(
                            [p for p in model.parameters() if p.requires_grad],
                            settings.max_grad_norm,
                        )
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    if step > SPEED_SKIP_STEPS:
                        steady_tokens += step_tokens
                        steady_seconds += time.monotonic() - step_started
                        steady_steps += 1
                    loss = loss_sum / max(1, target_tokens)
                    if not math.isfinite(loss):
                        raise FineTuneError(
                            f"The training loss became {loss} at step {step}: the learning rate "
                            f"({settings.learning_rate:g}) is too high for this model.",
                            field="settings.learning_rate",
                        )
                    point = Point(
                        step=step,
                        epoch=round(step / per_epoch, 3),
                        loss=round(loss, 5),
                        lr=optimizer.param_groups[0]["lr"],
                        elapsed=round(time.monotonic() - started, 2),
                    )
                    if step % eval_every == 0 or step == total:
                        eval_started = time.monotonic()
                        eval_cpu_started = time.process_time()
                        progress("evaluating", step=step, total_steps=total, epoch=step / per_epoch)
                        val = run_eval(enc_val)
                        point["val_loss"] = round(val, 5)
                        point["val_ppl"] = round(perplexity(val), 4)
                        if val < best_val:
                            best_val, best_step, best_state = val, step, _trainable_state(model)
                            bad_evals = 0
                        else:
                            bad_evals += 1
                        eval_seconds += time.monotonic() - eval_started
                        eval_cpu_seconds += time.process_time() - eval_cpu_started
                        evaluations += 1
                    history.append(point)
                    spent = time.monotonic() - loop_started
                    train_seconds = max(1e-9, spent - eval_seconds)
                    left = time_left(
                        steps_left=total - step,
                        steady_steps=steady_steps,
                        steady_seconds=steady_seconds,
                        steps_done=step,
                        train_seconds=train_seconds,
                        evaluations=evaluations_left(step, total, eval_every),
                        per_evaluation=(
                            eval_seconds / evaluations if evaluations else val_eval_seconds
                        ),
                        test_seconds=test_eval_seconds,
                    )
                    progress(
                        "training",
                        step=step,
                        total_steps=total,
                        epoch=step / per_epoch,
                        seconds_left=round(left, 1),
                        tokens_per_second=round(
                            steady_tokens / steady_seconds
                            if steady_seconds
                            else train_tokens / train_seconds,
                            1,
                        ),
                        point=point,
                    )
                    if bad_evals >= settings.patience:
                        stopped_early = True
                        break
                if stopped_early or step >= total:
                    break
    except Cancelled:
        cancelled = True

    train_cpu_seconds = time.process_time() - cpu_started - eval_cpu_seconds
    if best_step == 0:
        # No checkpoint beat the base on validation: the result is the base itself, so there
        # is nothing to measure again or to save (the run registers no model, runner).
        tuned_test = base_test
    else:
        # The best weights, not the last: after early stopping the last ones are worse.
        _restore(model, best_state)
        progress("test", step=step, total_steps=total)
        tuned_test = run_eval(enc_test)
        progress("saving", step=step, total_steps=total)
        save_model(model, tokenizer, output_dir)
    return TrainResult(
        output_dir=output_dir,
        base_test_loss=base_test,
        base_test_ppl=perplexity(base_test),
        test_loss=tuned_test,
        test_ppl=perplexity(tuned_test),
        best_val_loss=best_val,
        best_val_ppl=perplexity(best_val),
        best_step=best_step,
        steps=step,
        total_steps=total,
        stopped_early=stopped_early,
        cancelled=cancelled,
        train_tokens=train_tokens,
        train_seconds=train_seconds,
        steady_tokens=steady_tokens,
        steady_seconds=steady_seconds,
        train_cpu_seconds=train_cpu_seconds,
        seconds=time.monotonic() - started,
        history=history,
        counts=counts,
        parameters=parameters,
        trainable_parameters=trainable,
        base_val_loss=base_val,
    )


def save_model(model: Any, tokenizer: Any, output_dir: Path) -> None:
    """A plain transformers directory (LoRA merged into the weights), written to a temporary
    folder and renamed, so a crash never leaves a directory that looks complete."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    tmp.replace(output_dir)


def remove_output(output_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(output_dir)
