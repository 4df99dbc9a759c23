"""The rules of fine-tuning settings: what each may be, its label on the page, and the checks
between them. The type and range checks are generation's (``generation.rules.check_settings``):
one validator for both kinds of settings."""

from __future__ import annotations

from typing import Any

from finetune.training.config import TrainSettings
from generation.rules import SettingRule, check_settings

# The one place that says what a fine-tuning setting may be (forms, API, command, service).
SETTING_RULES: dict[str, SettingRule] = {
    "learning_rate": SettingRule(float, 0.0, 1.0, min_exclusive=True, label="Learning rate"),
    "weight_decay": SettingRule(float, 0.0, 1.0, label="Weight decay"),
    "batch_size": SettingRule(int, 1, 256, label="Batch size"),
    "grad_accumulation": SettingRule(int, 1, 256, label="Gradient accumulation steps"),
    "epochs": SettingRule(int, 1, 100, label="Epochs"),
    # 0 = as many optimiser steps as the epochs give; otherwise stop after this many.
    "max_steps": SettingRule(int, 0, 1_000_000, label="Max optimiser steps (0 = all epochs)"),
    "max_seq_length": SettingRule(int, 8, 8192, label="Max sequence length (tokens)"),
    "warmup_steps": SettingRule(int, 0, 100_000, label="Warm-up steps"),
    # 0 = evaluate once per epoch.
    "eval_every": SettingRule(int, 0, 100_000, label="Evaluate every N steps (0 = each epoch)"),
    "patience": SettingRule(int, 1, 1000, label="Early-stopping patience (evaluations)"),
    "max_grad_norm": SettingRule(float, 0.0, 1000.0, label="Gradient clipping norm (0 = off)"),
    "lora": SettingRule(bool, 0, 1, label="LoRA (peft)"),
    "lora_r": SettingRule(int, 1, 512, label="LoRA rank"),
    "lora_alpha": SettingRule(int, 1, 4096, label="LoRA alpha"),
    "lora_dropout": SettingRule(float, 0.0, 0.9, label="LoRA dropout"),
    "seed": SettingRule(int, 0, 2**32 - 1, label="Seed (split and shuffling)"),
    "val_fraction": SettingRule(float, 0.0, 0.5, min_exclusive=True, label="Validation share"),
    "test_fraction": SettingRule(float, 0.0, 0.5, min_exclusive=True, label="Test share"),
    # Cap on the texts taken from the data (0 = all), for a quick run on a slice.
    "max_texts": SettingRule(int, 0, 10_000_000, label="Max texts (0 = all)"),
}


def parse_settings(
    overrides: dict[str, Any] | None, *, base: TrainSettings | None = None
) -> tuple[TrainSettings, dict[str, list[str]]]:
    """Settings from ``overrides`` on top of ``base`` (defaults), and errors keyed by field
    ("settings.learning_rate")."""
    defaults = (base or TrainSettings()).as_dict()
    values = dict(defaults)
    errors = check_settings(
        values, overrides, SETTING_RULES, unknown="Unknown fine-tuning setting."
    )
    for key in errors:
        # A refused value keeps its default, so callers still get a usable object.
        name = key.removeprefix("settings.")
        if name in defaults:
            values[name] = defaults[name]
    if not errors and values["val_fraction"] + values["test_fraction"] >= 0.9:
        errors["settings.test_fraction"] = [
            "Validation and test shares together must leave at least 10% for training."
        ]
    return TrainSettings(**values), errors
