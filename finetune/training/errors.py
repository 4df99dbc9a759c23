"""What stops a run: ``FineTuneError`` names the setting or input at fault, so pages and the
command show it beside that field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune.training.config import TrainSettings


class FineTuneError(Exception):
    """A run cannot go on; ``field`` names the setting or input at fault when there is one."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Cancelled(Exception):
    """Raised inside the loop when a person asked the run to stop."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the allocator running out (CUDA's error, or the CPU allocator's)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


def out_of_memory_error(settings: TrainSettings) -> FineTuneError:
    hint = "" if settings.lora else ", or turn on LoRA"
    return FineTuneError(
        f"Out of memory with batch_size={settings.batch_size} x max_seq_length="
        f"{settings.max_seq_length}: lower the batch size (and raise gradient accumulation to "
        f"keep the same effective batch) or the sequence length{hint}.",
        field="settings.batch_size",
    )


@contextmanager
def out_of_memory_named(settings: TrainSettings) -> Iterator[None]:
    """Inside it, the allocator running out becomes a FineTuneError naming the batch size."""
    try:
        yield
    except Exception as exc:
        if out_of_memory(exc):
            raise out_of_memory_error(settings) from exc
        raise
