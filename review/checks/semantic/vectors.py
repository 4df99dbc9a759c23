"""Sentence vectors as bytes for a database column, and the row normalisation every index uses.

Vectors are stored little-endian, float32 or float16; the length tells which, so rows written
either way read back alike.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# all-MiniLM-L6-v2's vector size; an encoder reports its own (``Embedder.dim``).
EMBEDDING_DIM = 384


def to_bytes(vector: np.ndarray, *, dtype: Literal["float32", "float16"] = "float32") -> bytes:
    """One vector as little-endian bytes for a database column (float16 halves the size and
    changes cosines by under 1e-3)."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    return array.astype("<f4" if dtype == "float32" else "<f2").tobytes()


def from_bytes(data: bytes | bytearray | memoryview, *, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """The float32 vector stored by :func:`to_bytes`; the length tells float32 from float16."""
    size = len(data)
    if size == dim * 4:
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    if size == dim * 2:
        return np.frombuffer(data, dtype="<f2").astype(np.float32)
    raise ValueError(f"{size} bytes is not a {dim}-dimensional float32 or float16 vector")


def normalise_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as a 2-d float32 array of unit rows; raises ValueError for a wrong shape or a
    non-finite value."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    # A zero vector stays zero (scores 0 against everything) instead of dividing by zero.
    return array / np.where(norms > 0, norms, 1.0)
