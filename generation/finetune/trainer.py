"""Fine-tuning a causal language model: data split, training loop, evaluation, saving.

No ORM here: the services hand in texts, settings and callbacks, and get a ``TrainResult``. The
loop is plain PyTorch (no ``transformers.Trainer``) so that every piece the product promises is
visible and tested: AdamW with decoupled weight decay (none on biases and norms), linear warm-up
then linear decay, gradient accumulation, labels that ignore padding (and the prompt part of
supervised pairs), validation loss and perplexity every N optimiser steps or every epoch, early
stopping with patience, the best weights kept, and the test perplexity of the base and of the
tuned model on the same seeded split. LoRA (peft) is optional; its adapter is merged before
saving, so the result is always a plain transformers directory that every backend can load or
convert.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

IGNORE_INDEX = -100


class FineTuneError(Exception):
    """A run cannot go on; ``field`` names the setting or input at fault when there is one."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Cancelled(Exception):
    pass


# --- Settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingRule:
    kind: type
    minimum: float
    maximum: float
    label: str
    min_exclusive: bool = False


# The one place that says what a fine-tuning setting may be (forms, API, command, service).
SETTING_RULES: dict[str, SettingRule] = {
    "learning_rate": SettingRule(float, 0.0, 1.0, "Learning rate", min_exclusive=True),
    "weight_decay": SettingRule(float, 0.0, 1.0, "Weight decay"),
    "batch_size": SettingRule(int, 1, 256, "Batch size"),
    "grad_accumulation": SettingRule(int, 1, 256, "Gradient accumulation steps"),
    "epochs": SettingRule(int, 1, 100, "Epochs"),
    # 0 = as many optimiser steps as the epochs give; otherwise stop after this many.
    "max_steps": SettingRule(int, 0, 1_000_000, "Max optimiser steps (0 = all epochs)"),
    "max_seq_length": SettingRule(int, 8, 8192, "Max sequence length (tokens)"),
    "warmup_steps": SettingRule(int, 0, 100_000, "Warm-up steps"),
    # 0 = evaluate once per epoch.
    "eval_every": SettingRule(int, 0, 100_000, "Evaluate every N steps (0 = each epoch)"),
    "patience": SettingRule(int, 1, 1000, "Early-stopping patience (evaluations)"),
    "max_grad_norm": SettingRule(float, 0.0, 1000.0, "Gradient clipping norm (0 = off)"),
    "lora": SettingRule(bool, 0, 1, "LoRA (peft)"),
    "lora_r": SettingRule(int, 1, 512, "LoRA rank"),
    "lora_alpha": SettingRule(int, 1, 4096, "LoRA alpha"),
    "lora_dropout": SettingRule(float, 0.0, 0.9, "LoRA dropout"),
    "seed": SettingRule(int, 0, 2**32 - 1, "Seed (split and shuffling)"),
    "val_fraction": SettingRule(float, 0.0, 0.5, "Validation share", min_exclusive=True),
    "test_fraction": SettingRule(float, 0.0, 0.5, "Test share", min_exclusive=True),
    # Cap on the texts taken from the data (0 = all), for a quick run on a slice.
    "max_texts": SettingRule(int, 0, 10_000_000, "Max texts (0 = all)"),
}


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
# model, 16 steps of 4 x 256 packed tokens. MODELS.md measured about 170 training tokens/s for
# this model on 2 idle cores (so about 100 s of training and a minute of evaluations), and a
# test perplexity ratio of 0.79 after 20 steps at half this learning rate.
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


def _coerce(name: str, value: Any, rule: SettingRule) -> Any:
    key = f"settings.{name}"
    if rule.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "on", "yes"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "off", "no", ""}:
            return False
        if value in (0, 1):
            return bool(value)
        raise FineTuneError(f"{value!r} is not true or false.", field=key)
    if isinstance(value, bool) or value is None or value == "":
        raise FineTuneError("A number is required.", field=key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FineTuneError(f"{value!r} is not a number.", field=key) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise FineTuneError("Must be a finite number.", field=key)
    if rule.kind is int:
        if number != int(number):
            raise FineTuneError("Must be a whole number.", field=key)
        number = int(number)
    too_low = number <= rule.minimum if rule.min_exclusive else number < rule.minimum
    if too_low:
        relation = "greater than" if rule.min_exclusive else "at least"
        raise FineTuneError(f"Must be {relation} {rule.minimum:g}.", field=key)
    if number > rule.maximum:
        raise FineTuneError(f"Must be at most {rule.maximum:g}.", field=key)
    return number


def parse_settings(
    overrides: dict[str, Any] | None, *, base: TrainSettings | None = None
) -> tuple[TrainSettings, dict[str, list[str]]]:
    """Settings from ``overrides`` on top of ``base`` (defaults), and errors keyed by field
    ("settings.learning_rate")."""
    values = (base or TrainSettings()).as_dict()
    errors: dict[str, list[str]] = {}
    for name, value in (overrides or {}).items():
        rule = SETTING_RULES.get(name)
        if rule is None:
            errors.setdefault(f"settings.{name}", []).append("Unknown fine-tuning setting.")
            continue
        try:
            values[name] = _coerce(name, value, rule)
        except FineTuneError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    if not errors and values["val_fraction"] + values["test_fraction"] >= 0.9:
        errors["settings.test_fraction"] = [
            "Validation and test shares together must leave at least 10% for training."
        ]
    if not errors and values["lora"] and values["lora_alpha"] < 1:
        errors["settings.lora_alpha"] = ["Must be at least 1."]
    return TrainSettings(**values), errors


# --- Data -------------------------------------------------------------------------------------


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


# --- Progress ---------------------------------------------------------------------------------


class Point(TypedDict, total=False):
    step: int
    epoch: float
    loss: float  # training loss (mean over the step's tokens)
    val_loss: float
    val_ppl: float
    lr: float
    elapsed: float


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
    # The same in CPU time of this process (all its threads): what the benchmark compares, as
    # wall time on a shared machine mostly measures the neighbours.
    train_cpu_seconds: float
    seconds: float
    history: list[Point]
    counts: dict[str, int]
    parameters: int
    trainable_parameters: int

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


# --- Estimate ---------------------------------------------------------------------------------

# Training tokens/s x parameters, measured on this kind of machine (2 CPU cores, fp32): the
# 135M default model trained at about 170 tokens/s (MODELS.md). A forward-only evaluation runs
# about 3x that; LoRA skips most weight gradients and optimiser work (about 1.5x).
CPU_TRAIN_RATE = 170.0 * 135e6
EVAL_SPEEDUP = 3.0
LORA_SPEEDUP = 1.5


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
    basis: str


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
    measured_rate: float | None = None,
) -> Estimate:
    """How long a run should take, before it starts.

    ``measured_rate`` is tokens/s x parameters of an earlier run on this installation (same
    LoRA setting); without it the machine's measured constant is used.
    """
    per_epoch, total = plan_steps(len(train.ids), settings)
    step_tokens = train.tokens / max(1, per_epoch)
    tokens = step_tokens * total
    rate = measured_rate or CPU_TRAIN_RATE * (LORA_SPEEDUP if settings.lora else 1.0)
    per_second = rate / max(parameters, 1)
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
        basis="measured on this installation" if measured_rate else "machine constant",
    )


# --- Training ---------------------------------------------------------------------------------


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


def _oom_error(settings: TrainSettings) -> FineTuneError:
    hint = "" if settings.lora else ", or turn on LoRA"
    return FineTuneError(
        f"Out of memory with batch_size={settings.batch_size} x max_seq_length="
        f"{settings.max_seq_length}: lower the batch size (and raise gradient accumulation to "
        f"keep the same effective batch) or the sequence length{hint}.",
        field="settings.batch_size",
    )


def count_parameters(model: Any) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


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
    """A fresh copy of the model in fp32 (never the generation engine's shared one: training
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
        try:
            return evaluate(model, data, batch_size=eval_batch, pad_id=pad_id, device=device)
        except FineTuneError:
            raise
        except Exception as exc:
            if _out_of_memory(exc):
                raise _oom_error(settings) from exc
            raise

    stop = should_stop or (lambda: False)
    progress("base_eval")
    base_test = run_eval(enc_test)
    if settings.lora:
        model = _apply_lora(model, settings)
    parameters, trainable = count_parameters(model)
    base_val = run_eval(enc_val)
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
    train_seconds = 0.0
    cpu_started = time.process_time()
    eval_every = settings.eval_every or per_epoch
    loop_started = time.monotonic()
    try:
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
                target_tokens = sum(int((lab[:, 1:] != IGNORE_INDEX).sum()) for _, _, lab in group)
                loss_sum = 0.0
                for ids, mask, labels in group:
                    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
                    out = model(input_ids=ids, attention_mask=mask, labels=labels)
                    # Weight each micro-batch by its share of the step's target tokens, so an
                    # accumulated step is the mean over all its tokens (as one big batch).
                    n = int((labels[:, 1:] != IGNORE_INDEX).sum())
                    (out.loss * (n / max(1, target_tokens))).backward()
                    loss_sum += float(out.loss.detach()) * n
                    train_tokens += int(mask.sum())
                if settings.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in model.parameters() if p.requires_grad], settings.max_grad_norm
                    )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
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
                history.append(point)
                spent = time.monotonic() - loop_started
                train_seconds = max(1e-9, spent - eval_seconds)
                progress(
                    "training",
                    step=step,
                    total_steps=total,
                    epoch=step / per_epoch,
                    seconds_left=round(spent / step * (total - step), 1),
                    tokens_per_second=round(train_tokens / train_seconds, 1),
                    point=point,
                )
                if bad_evals >= settings.patience:
                    stopped_early = True
                    break
            if stopped_early or step >= total:
                break
    except Cancelled:
        cancelled = True
    except FineTuneError:
        raise
    except Exception as exc:
        if _out_of_memory(exc):
            raise _oom_error(settings) from exc
        raise

    train_cpu_seconds = time.process_time() - cpu_started - eval_cpu_seconds
    # The best weights, not the last: after early stopping the last ones are worse by design.
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
        train_cpu_seconds=train_cpu_seconds,
        seconds=time.monotonic() - started,
        history=history,
        counts=counts,
        parameters=parameters,
        trainable_parameters=trainable,
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
