"""The Detoxify checkpoint layout: save a model so ``detoxify.Detoxify`` loads it offline.

Detoxify's loader has traps this layout avoids: the checkpoint's ``model_type`` is passed to
``from_pretrained`` even offline, so it is the absolute path of the config dir; ``num_labels``
is written into config.json explicitly; the tokenizer's ``model_max_length`` is capped at the
model's position limit, so long texts truncate instead of crashing. Layout under ``out_dir``::

    config/             config.json (with num_labels) + tokenizer files; Detoxify's
                        ``huggingface_config_path`` and the checkpoint's ``model_type``
    toxicity.ckpt       {"config": {...}, "state_dict": {...}} as Detoxify expects
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers

# Detoxify renames these when it loads a checkpoint (detoxify.detoxify.load_checkpoint); examples
# are labelled with the renamed names, so a checkpoint may list either spelling.
DETOXIFY_RENAMES: dict[str, str] = {
    "toxic": "toxicity",
    "severe_toxic": "severe_toxicity",
    "identity_hate": "identity_attack",
}


CHECKPOINT_NAME = "toxicity.ckpt"
CONFIG_DIR_NAME = "config"
# Written into every config directory this module creates, so a rebuild only ever replaces a
# directory it made itself and never a folder the user happened to call "config".
_MARKER = ".contentstudio-toxicity"


def save_detoxify_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    classes: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Save ``model`` + ``tokenizer`` as a Detoxify checkpoint and config dir under ``out_dir``.

    Detoxify's loader has traps this avoids: the checkpoint's ``model_type`` is passed to
    ``from_pretrained`` even offline, so it is the absolute path of the config dir; ``num_labels``
    is written into config.json explicitly; the tokenizer's ``model_max_length`` is capped at the
    model's position limit so long texts truncate instead of crashing.

    Side effects: creates ``out_dir``; replaces ``out_dir/config`` if this module made it
    (refuses a foreign non-empty one); writes ``out_dir/toxicity.ckpt`` atomically.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config_dir = out / CONFIG_DIR_NAME
    if config_dir.exists() and any(config_dir.iterdir()) and not (config_dir / _MARKER).exists():
        raise FileExistsError(f"{config_dir} exists and was not made by this studio")

    position_limit = _position_limit(model.config)
    if tokenizer.model_max_length > position_limit:
        tokenizer.model_max_length = position_limit
    model.config.num_labels = len(classes)

    # Write the config dir beside its final place, then swap it in, so a crash halfway leaves
    # the previous build intact.
    staging = Path(tempfile.mkdtemp(prefix=".config-", dir=out))
    try:
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        config_path = staging / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        # transformers 5 derives num_labels from id2label and leaves it out; older loaders and
        # Detoxify's documentation expect it spelled out.
        config["num_labels"] = len(classes)
        config["architectures"] = [type(model).__name__]
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")
        (staging / _MARKER).write_text("built by review.tools.detoxify_checkpoint\n", "utf-8")
        if config_dir.exists():
            shutil.rmtree(config_dir)
        staging.rename(config_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)

    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": str(config_dir),
                    "model_name": type(model).__name__,
                    "tokenizer_name": _tokenizer_class_name(tokenizer),
                    "num_classes": len(classes),
                }
            },
            "dataset": {"args": {"classes": list(classes)}},
            # Ignored by Detoxify; says how the file was made.
            "contentstudio": dict(metadata or {}),
        },
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    checkpoint_path = out / CHECKPOINT_NAME
    # Serialise in memory first: torch.save names the archive after the file, and a fixed name
    # keeps two builds with the same seed byte-identical.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    fd, tmp_name = tempfile.mkstemp(prefix=".toxicity-", suffix=".ckpt", dir=out)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getbuffer())
        os.replace(tmp_name, checkpoint_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return {"checkpoint": str(checkpoint_path), "config_dir": str(config_dir)}


def _position_limit(config: transformers.PretrainedConfig) -> int:
    """Longest input the model's position embeddings allow (RoBERTa reserves pad_id + 1)."""
    limit = int(getattr(config, "max_position_embeddings", 512))
    if "roberta" in str(getattr(config, "model_type", "")) or "camembert" in str(
        getattr(config, "model_type", "")
    ):
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return limit


def _tokenizer_class_name(tokenizer: transformers.PreTrainedTokenizerBase) -> str:
    # transformers 5 merged BertTokenizerFast into BertTokenizer; the "...Fast" name still
    # resolves there and means the Rust tokenizer (which is what is saved) on 4.x as well.
    name = type(tokenizer).__name__
    if not name.endswith("Fast") and hasattr(transformers, name + "Fast"):
        return name + "Fast"
    return name
