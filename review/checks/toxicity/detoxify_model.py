"""Detoxify models: load a model by name or a local checkpoint, once per process, and score texts.

The model is loaded by ``detoxify.Detoxify`` itself, so a checkpoint that works here works with
Detoxify and vice versa (``review.tools.toxicity_build`` makes small ones offline). The files
are checked first, so a failure names its real cause; a failed load is remembered for a while
so a worker does not re-read a broken checkpoint for every draft.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ENGINE = "detoxify"
# The seven Jigsaw "unintended bias" categories, named as Detoxify reports them, in the order of
# Detoxify's "unbiased" model (the checkpoints built by review.tools list theirs the same way).
JIGSAW_UNBIASED_CLASSES: tuple[str, ...] = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
)
# After a failed load, get_detector answers with the remembered reason for this long before it
# tries again, so a worker does not re-read a broken checkpoint for every draft.
LOAD_RETRY_AFTER_S = 60.0
DEFAULT_BATCH_SIZE = 32
# The languages each of Detoxify's own models was trained on (its README): the original and
# unbiased models read English; the multilingual one (XLM-R) these seven.
DETOXIFY_LANGUAGES: dict[str, tuple[str, ...]] = {
    "original": ("en",),
    "unbiased": ("en",),
    "original-small": ("en",),
    "unbiased-small": ("en",),
    "multilingual": ("en", "fr", "es", "it", "pt", "tr", "ru"),
}


class ToxicityModelUnavailable(Exception):
    """No toxicity model could be loaded; ``reason`` says exactly why, for the CheckResult."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ToxicityConfig:
    """Where the model comes from; hashable so the process cache can notice a change."""

    model_name: str | None = None
    checkpoint: str | None = None
    config_dir: str | None = None
    device: str = "cpu"
    # The languages the model reads, as its admin declared them (None: from the model name;
    # English for a checkpoint, whose training languages nothing here can tell).
    languages: tuple[str, ...] | None = None

    def model_languages(self) -> tuple[str, ...]:
        """The languages this model reads: declared, or known from Detoxify's model name."""
        if self.languages:
            return self.languages
        if self.model_name and not self.checkpoint:
            return DETOXIFY_LANGUAGES.get(self.model_name, ("en",))
        return ("en",)


class Detector:
    """A loaded Detoxify model that scores many texts in length-sorted batches.

    Scoring is safe from several threads: the tokenizer (whose Rust object refuses concurrent
    use) is behind a lock, the forward pass is not.
    """

    def __init__(self, *, detoxify: Any, description: str, load_seconds: float) -> None:
        self.model = detoxify.model
        self.tokenizer = detoxify.tokenizer
        self.device = torch.device(detoxify.device)
        self.categories: tuple[str, ...] = tuple(detoxify.class_names)
        self.description = description
        self.engine = ENGINE
        # Names the weights, not only the package: "0.5.4 sha256:1a2b3c4d5e6f".
        self.version = f"{detoxify_version() or 'unknown'} {description.rpartition(' ')[2]}"
        self.stand_in = False
        self.metrics: dict[str, Any] = {}
        self.load_seconds = load_seconds
        # The tokenizer config may allow more tokens than the position embeddings hold (a known
        # Detoxify trap that crashes on long texts); truncate at whichever is smaller.
        self.max_length = min(int(self.tokenizer.model_max_length), _position_limit(self.model))
        self._tokenizer_lock = threading.Lock()
        self.model.eval()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text after truncation at ``max_length``."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                list(texts), truncation=True, max_length=self.max_length, padding=False
            )
        return [len(ids) for ids in encoded["input_ids"]]

    def score_texts(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[dict[str, float]]:
        """Scores for each text, in the order given: ``{category: probability}``.

        Texts are tokenised once, sorted by token length, cut into batches of ``batch_size``
        and each batch is padded only to its own longest text, so short sentences do not pay
        for the longest one; results are put back in input order. Texts longer than the model
        allows are truncated.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not texts:
            return []
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                list(texts), truncation=True, max_length=self.max_length, padding=False
            )
        names = list(encoded.keys())
        features = [{k: encoded[k][i] for k in names} for i in range(len(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(features[i]["input_ids"]))
        width = len(self.categories)
        results: list[dict[str, float]] = [{} for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                with self._tokenizer_lock:
                    batch = self.tokenizer.pad([features[i] for i in chunk], return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = self.model(**batch)[0]
                # A checkpoint may have more outputs than named classes (Detoxify's "unbiased"
                # model also predicts identity subgroups); like Detoxify, report the named ones.
                probabilities = torch.sigmoid(logits[:, :width].float()).cpu().tolist()
                for index, row in zip(chunk, probabilities, strict=True):
                    results[index] = dict(zip(self.categories, row, strict=True))
        return results


def load_detector(
    *,
    model_name: str | None,
    checkpoint: str | None,
    config_dir: str | None,
    device: str = "cpu",
) -> Detector:
    """Load a toxicity model through ``detoxify.Detoxify`` and wrap it as a Detector.

    Give ``checkpoint`` (and, to stay offline, ``config_dir``) or a Detoxify ``model_name``;
    a checkpoint wins if both are given. Raises ToxicityModelUnavailable with the exact reason
    when nothing loads. Side effects: reads the files (the checkpoint is unpickled, twice: once
    here to validate it, once by Detoxify; load only trusted files); with a model name,
    Detoxify downloads the weights and caches them under torch's hub directory.
    """
    started = time.perf_counter()
    try:
        from detoxify import Detoxify
        from detoxify.detoxify import MODEL_URLS
    except ImportError as exc:
        raise ToxicityModelUnavailable(f"the detoxify package is not installed ({exc})") from exc

    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ToxicityModelUnavailable(f"invalid device {device!r}: {exc}") from exc

    if checkpoint:
        weight_names, model_type = _validate_checkpoint(checkpoint, config_dir)
        try:
            detoxify = Detoxify(
                checkpoint=checkpoint, device=device, huggingface_config_path=config_dir
            )
        except Exception as exc:
            hint = ""
            if not Path(model_type).is_dir():
                hint = (
                    f" (the checkpoint's model_type {model_type!r} is not a local directory;"
                    " Detoxify passes it to from_pretrained even with a config dir, so offline"
                    " it must be a local directory or in the Hugging Face cache)"
                )
            raise ToxicityModelUnavailable(
                f"Detoxify could not load checkpoint {checkpoint}"
                + (f" with config dir {config_dir}" if config_dir else "")
                + f": {_describe(exc)}{hint}"
            ) from exc
        _check_all_weights_loaded(detoxify.model, checkpoint, weight_names)
        description = f"checkpoint {Path(checkpoint).name} sha256:{_file_checksum(checkpoint)}"
    elif model_name:
        if model_name not in MODEL_URLS:
            known = ", ".join(sorted(MODEL_URLS))
            raise ToxicityModelUnavailable(
                f"unknown Detoxify model name {model_name!r} (known: {known})"
            )
        try:
            detoxify = Detoxify(model_type=model_name, device=device)
        except Exception as exc:
            raise ToxicityModelUnavailable(
                f"Detoxify could not load model {model_name!r} (it is downloaded on first use; "
                f"is there a network?): {_describe(exc)}"
            ) from exc
        description = model_name
    else:
        raise ToxicityModelUnavailable(
            "no toxicity model configured: set a Detoxify model name or a checkpoint and "
            "config directory"
        )
    return Detector(
        detoxify=detoxify, description=description, load_seconds=time.perf_counter() - started
    )


# --- the per-process cache -------------------------------------------------------------------


@dataclass(slots=True)
class _CacheEntry:
    config: ToxicityConfig
    detector: Detector | None
    reason: str | None
    failed_at: float


_cache_lock = threading.Lock()
_cache: _CacheEntry | None = None


def _reset_cache_after_fork() -> None:
    # A prefork worker inherits the parent's lock, possibly held mid-load; give it a fresh one.
    # A detector loaded in the parent stays usable in the child (copy-on-write memory).
    global _cache_lock
    _cache_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_cache_after_fork)


def get_detector(config: ToxicityConfig) -> Detector:
    """The process's detector for ``config``, loading it on first use; thread-safe.

    Loads at most once per process and config: concurrent callers wait for the one load. A
    failed load is remembered: for LOAD_RETRY_AFTER_S seconds, or until the config changes,
    callers get ToxicityModelUnavailable with the same reason without another attempt.
    Side effects: may load a model (seconds, hundreds of MB); replaces a detector loaded for a
    different config.
    """
    global _cache
    with _cache_lock:
        entry = _cache
        if entry is not None and entry.config == config:
            if entry.detector is not None:
                return entry.detector
            if time.monotonic() - entry.failed_at < LOAD_RETRY_AFTER_S:
                raise ToxicityModelUnavailable(entry.reason or "model failed to load")
        try:
            detector = load_detector(
                model_name=config.model_name,
                checkpoint=config.checkpoint,
                config_dir=config.config_dir,
                device=config.device,
            )
        except ToxicityModelUnavailable as exc:
            _cache = _CacheEntry(
                config=config, detector=None, reason=exc.reason, failed_at=time.monotonic()
            )
            raise
        _cache = _CacheEntry(config=config, detector=detector, reason=None, failed_at=0.0)
        return detector


def clear_detector_cache() -> None:
    """Forget the cached detector or failure (tests; settings reloaded)."""
    global _cache
    with _cache_lock:
        _cache = None


# --- helpers ---------------------------------------------------------------------------------


def detoxify_version() -> str | None:
    try:
        return importlib.metadata.version("detoxify")
    except importlib.metadata.PackageNotFoundError:
        return None


def _file_checksum(path: str) -> str:
    """The first 12 hex digits of the file's SHA-256: which weights scored, not only which
    package (read in 1 MB blocks, about a second for a 400 MB Detoxify checkpoint)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}".rstrip(": ")


def _position_limit(model: Any) -> int:
    config = model.config
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    model_type = str(getattr(config, "model_type", ""))
    # RoBERTa-style position ids start after the padding index.
    if "roberta" in model_type or "camembert" in model_type:
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return limit


def _validate_checkpoint(checkpoint: str, config_dir: str | None) -> tuple[frozenset[str], str]:
    """Check the files before Detoxify sees them, so a failure names its real cause.

    Returns the names of the weights in the checkpoint's state dict and its model_type.
    """
    import json

    path = Path(checkpoint)
    if not path.exists():
        raise ToxicityModelUnavailable(f"toxicity checkpoint {checkpoint} does not exist")
    if not path.is_file():
        raise ToxicityModelUnavailable(f"toxicity checkpoint {checkpoint} is not a file")
    try:
        # mmap: the tensors stay on disk; this only reads the pickled config.
        loaded = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:
        raise ToxicityModelUnavailable(
            f"toxicity checkpoint {checkpoint} is not a readable torch checkpoint: {_describe(exc)}"
        ) from exc
    try:
        args = loaded["config"]["arch"]["args"]
        classes = loaded["config"]["dataset"]["args"]["classes"]
        num_classes = int(args["num_classes"])
        model_type = str(args["model_type"])
        weight_names = frozenset(loaded["state_dict"].keys())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ToxicityModelUnavailable(
            f"toxicity checkpoint {checkpoint} is not in Detoxify's format (needs config.arch.args"
            f" with model_type/model_name/tokenizer_name/num_classes, config.dataset.args.classes"
            f" and state_dict): missing {exc}"
        ) from exc
    if not classes or len(classes) > num_classes:
        raise ToxicityModelUnavailable(
            f"toxicity checkpoint {checkpoint} names {len(classes)} classes for a model with "
            f"{num_classes} outputs"
        )
    # Detoxify passes model_type to from_pretrained even when a config dir is given. A hub id
    # ("bert-base-uncased") may still resolve from the local cache, but an absolute path that is
    # gone means the checkpoint was moved away from the config dir it was built with.
    if Path(model_type).is_absolute() and not Path(model_type).is_dir():
        raise ToxicityModelUnavailable(
            f"toxicity checkpoint {checkpoint} points at model_type {model_type}, which does not"
            " exist (Detoxify reads it even with a config dir); rebuild the checkpoint where it"
            " is used"
        )
    if config_dir is not None:
        config_json = Path(config_dir) / "config.json"
        if not Path(config_dir).is_dir():
            raise ToxicityModelUnavailable(f"toxicity config dir {config_dir} does not exist")
        if not config_json.is_file():
            raise ToxicityModelUnavailable(f"toxicity config dir {config_dir} has no config.json")
        try:
            hf_config = json.loads(config_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ToxicityModelUnavailable(f"cannot read {config_json}: {_describe(exc)}") from exc
        # transformers takes the label count from num_labels, else from id2label, else 2.
        labels = hf_config.get("num_labels", len(hf_config.get("id2label") or {}) or 2)
        if labels != num_classes:
            raise ToxicityModelUnavailable(
                f"{config_json} declares num_labels={labels} but the checkpoint has "
                f"{num_classes} outputs"
            )
    return weight_names, model_type


def _check_all_weights_loaded(
    model: torch.nn.Module, checkpoint: str, weight_names: frozenset[str]
) -> None:
    """from_pretrained quietly initialises weights the state dict lacks; refuse such a model."""
    expected = {name for name, _ in model.named_parameters()}
    missing = sorted(expected - weight_names)
    if missing:
        raise ToxicityModelUnavailable(
            f"toxicity checkpoint {checkpoint} lacks weights for {len(missing)} parameters "
            f"(e.g. {missing[0]}); the model would score with random weights"
        )
