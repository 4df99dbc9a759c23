"""Semantic similarity: catch paraphrase of archive passages and published items.

Draft sentences are embedded with all-MiniLM-L6-v2 and looked up, sentence against sentence,
in the project's vector index; a draft is a paraphrase of a source when many of its sentences
align with that one source and restate much of it (the policy holds on both shares). The
measured choices (threshold, index precision, encoder runtime, threads) are in docs/review.md.

- :mod:`.config`: what the encoder is given (no environment is read here);
- :mod:`.encoder` and :mod:`.onnx_encoder`: the sentence encoder, torch or ONNX Runtime;
- :mod:`.vectors` and :mod:`.passages`: vector bytes, and sentence keys "<item>#<n>";
- :mod:`.index`: the in-process index; :mod:`.store`: the shared memory-mapped one;
  :mod:`.ann`: the IVF shortlist of a large segment (faiss), rescored exactly like the scan;
- :mod:`.check`: the check and the grouping of matches by source.

Nothing here touches the ORM; the public names are importable from this package.
"""

from __future__ import annotations

from review.checks.semantic.check import (
    DEFAULT_K,
    DEFAULT_THRESHOLD,
    ENGINE,
    ENGINE_VERSION,
    SemanticMatch,
    SemanticResult,
    SourceAlignment,
    TextEncoder,
    align_sources,
    check_semantic,
)
from review.checks.semantic.config import EmbeddingModelUnavailable, EncoderConfig
from review.checks.semantic.encoder import DEFAULT_MODEL_NAME, Embedder, default_model_path
from review.checks.semantic.index import IndexRegistry, VectorIndex
from review.checks.semantic.passages import (
    DEFAULT_MIN_WORDS,
    Passage,
    index_passages,
    passage_key,
    split_key,
)
from review.checks.semantic.vectors import EMBEDDING_DIM, from_bytes, to_bytes

__all__ = [
    "DEFAULT_K",
    "DEFAULT_MIN_WORDS",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_THRESHOLD",
    "EMBEDDING_DIM",
    "ENGINE",
    "ENGINE_VERSION",
    "Embedder",
    "EmbeddingModelUnavailable",
    "EncoderConfig",
    "IndexRegistry",
    "Passage",
    "SemanticMatch",
    "SemanticResult",
    "SourceAlignment",
    "TextEncoder",
    "VectorIndex",
    "align_sources",
    "check_semantic",
    "default_model_path",
    "from_bytes",
    "index_passages",
    "passage_key",
    "split_key",
    "to_bytes",
]
