"""The sentence encoder run by ONNX Runtime: export, optional fusion and int8, and the check
that a graph gives the torch model's vectors before it serves.

Why: per core, the exported graph in length-sorted batches of at most 512 tokens embedded about
twice as many sentences per second as ``SentenceTransformer.encode`` (docs/review.md). A graph
serves only if its vectors have cosine >= :data:`MIN_FAST_COSINE` to the torch model's on
calibration sentences; otherwise the next best graph, or torch, serves and the reason is kept.
What to build comes from :class:`~review.checks.semantic.config.EncoderConfig`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from review.checks.semantic.config import EmbeddingModelUnavailable, EncoderConfig
from review.checks.semantic.vectors import EMBEDDING_DIM

logger = logging.getLogger(__name__)

# The fast path is used only if its vectors match the reference model's this closely.
MIN_FAST_COSINE = 0.99
# Batches are cut from texts sorted by token count, each padded to its own longest text, and
# hold at most this many tokens (rows x padded width) and rows: about 17 sentences of 30 tokens,
# 2 of 256. Small batches keep a layer's activations in cache (docs/review.md).
ONNX_BATCH_TOKENS = 512
ONNX_BATCH = 64
# Bump when the exported or optimised graph changes shape: the cache file name includes it, so
# a graph cached by an older version is rebuilt rather than reused.
ONNX_GRAPH_VERSION = "3"
# Values per scale of the int8 graph's weights and activations (see :func:`quantise_graph`).
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


class OnnxEncoder:
    """The sentence-transformers model (a BERT-like encoder, mean pooling, normalised) run by
    ONNX Runtime: texts tokenised once, sorted by token count, cut into batches of at most
    ``batch_tokens`` tokens each padded to its own longest text.

    The graph, best first: int8 weights (``config.precision``), then, when ``config.graph`` is
    "fused", the float graph with ONNX Runtime's BERT fusions (one ``Attention`` op per layer,
    ``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``), then the float graph
    as exported. Built once per model directory (export, fusion and quantisation cached in
    ``config.cache_dir``, keyed by the model's files and :data:`ONNX_GRAPH_VERSION`), and a graph
    is used only
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
    def build(cls, path: Path, model: Any, *, config: EncoderConfig) -> OnnxEncoder:
        import hashlib

        from transformers import AutoTokenizer

        modules = list(model)
        names = [type(m).__name__ for m in modules]
        pooling = modules[1] if len(modules) > 1 else None
        if names[:2] != ["Transformer", "Pooling"] or not getattr(
            pooling, "pooling_mode_mean_tokens", True
        ):
            raise EmbeddingModelUnavailable(f"no ONNX path for modules {names}")
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        digest = hashlib.sha256(f"{path.resolve()}:{ONNX_GRAPH_VERSION}".encode())
        for weight in weights:
            digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
        cache = config.cache_dir
        exported = cache / f"{digest.hexdigest()[:16]}.onnx"
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if not exported.exists():
            cache.mkdir(parents=True, exist_ok=True)
            export_graph(path, tokenizer, exported)
        max_length = int(getattr(model, "max_seq_length", 256) or 256)
        reference = model.encode(
            _CALIBRATION, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

        def checked(model_file: Path, precision: str, graph: str) -> OnnxEncoder:
            fast = cls(
                open_session(model_file, config),
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
        # The float graph: fused if asked for (config.graph) and the optimiser manages, else as
        # exported (ONNX Runtime then applies its own fusions when the session loads it).
        fast: OnnxEncoder | None = None
        if config.graph == "fused":
            fused = exported.with_suffix(".fused.onnx")
            try:
                if not fused.exists():
                    fuse_graph(exported, fused, path)
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
        if config.precision == "int8":
            assert fast.model_file is not None
            quantised = fast.model_file.with_suffix(".int8.onnx")
            try:
                if not quantised.exists():
                    quantise_graph(fast.model_file, quantised)
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


def open_session(model_file: Path, config: EncoderConfig) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if config.spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
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


def export_graph(path: Path, tokenizer: Any, target: Path) -> None:
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


def fuse_graph(source: Path, target: Path, path: Path) -> None:
    """ONNX Runtime's BERT optimiser: one ``Attention`` op per layer, and the embeddings, layer
    norms and GELU fused. Raises when the graph is not a BERT or no attention was fused (the
    exported graph then serves, and the reason is kept).

    It gives the same vectors but was not faster than the exported graph (docs/review.md), so
    it is opt-in.
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


def quantise_graph(source: Path, target: Path) -> None:
    """int8 weights in blocks of :data:`INT8_BLOCK` along each MatMul's input dimension, one
    scale per block (ONNX Runtime's ``MatMulNBits``, 8 bits, symmetric), with the activations
    quantised per block too where the CPU computes in int8 (``accuracy_level`` 4).

    Why blocks: BERT's activations have a few outlier channels; one scale per whole tensor
    (``quantize_dynamic``) lost too much of them, a scale per 32 values keeps each outlier inside
    its own block (the cosines are in docs/review.md). The word embeddings stay float (a Gather
    is not faster in int8).
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
