"""What the sentence encoder is given, and how it says it cannot run.

The encoder reads no environment: ``contentstudio/settings.py`` reads ``CONTENTSTUDIO_EMBED_*``
and ``CONTENTSTUDIO_ONNX_CACHE`` and the services layer passes an :class:`EncoderConfig` in.
The defaults here are the settings' defaults, so code outside Django (benchmarks) gets the
same encoder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PRECISIONS = ("float", "int8")
GRAPHS = ("exported", "fused")


class EmbeddingModelUnavailable(RuntimeError):
    """The sentence-embedding model cannot be loaded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"embedding model unavailable: {reason}")


def default_onnx_cache() -> Path:
    """Where exported graphs are cached when nothing else is configured."""
    return Path(tempfile.gettempdir()) / "contentstudio-onnx"


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """How the encoder runs on a CPU (ONNX Runtime) and where it caches its graphs; hashable, so
    the process keeps one loaded model per model path, device and config."""

    # Run the model with ONNX Runtime on CPU (torch serves when off, or when the graph fails).
    onnx: bool = True
    # ONNX Runtime's intra-op threads.
    threads: int = 2
    # Whether those threads spin while they wait for work. Off: on a machine that also
    # generates, a spinning thread burns the core another process needs.
    spin: bool = False
    # "float" (the graph as exported) or "int8" (block-wise int8 MatMuls; used only if its
    # vectors pass the cosine check). Float by default: what reads the vectors (the toxicity
    # head, the paraphrase thresholds) was fitted to float vectors.
    precision: str = "float"
    # "exported" (ONNX Runtime fuses what it can on load) or "fused" (ONNX Runtime's BERT
    # optimiser first); the fused graph was no faster (docs/review.md).
    graph: str = "exported"
    cache_dir: Path = field(default_factory=default_onnx_cache)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, not {self.graph!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
