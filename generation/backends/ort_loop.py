"""The ONNX backend's own decoding loop on CPU: ONNX Runtime stepping the graph that ONNX Runtime
GenAI's builder wrote, with the KV cache held here.

Why not ONNX Runtime GenAI's generator: its 0.18 API cannot copy one row's cache into others or
drop a row, so a call of n candidates prefilled its prompt n times and computed a finished
candidate until the last one ended. Holding the cache here, a call prefills its prompt once,
copies that cache into its n rows, and drops a row when its candidate ends; the logits were
bit-identical to the generator's, so no candidate changed (figures: docs/generation.md).

The graph (the builder's decoder, CPU): ``input_ids`` and ``attention_mask`` (int64),
``past_key_values.<i>.key/value`` in, ``logits`` and ``present.<i>.key/value`` out, one
``GroupQueryAttention`` per layer that derives each row's length from the attention mask and
applies the rotary embedding itself. As ONNX Runtime GenAI does on CPU
(``past_present_share_buffer``), each layer's past and present are one buffer of
``max_length`` positions, bound as both input and output, which the attention writes in place.
Calls that share one batch are in ``ort_batch``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class LoopUnsupported(RuntimeError):
    """The converted graph does not have the inputs and outputs this loop steps."""


_ELEMENT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _last_position_graph(graph_file: Path, logits: str) -> bytes | None:
    """The builder's graph with the output head fed the last position only, serialised; None
    where the graph is not the expected shape (then the whole graph runs as it is).

    The loop reads only the last position's logits, but the builder's graph computes the head
    for every position of a pass (a prefill's many rows of logits, of which one is used). A
    ``Slice`` of the last position before the head gives the same logits for less prefill time
    (docs/generation.md). Decoding passes have one position and do not change."""
    try:
        import onnx
        from onnx import TensorProto, helper

        model = onnx.load(str(graph_file), load_external_data=False)
        graph = model.graph
        heads = [n for n in graph.node if logits in n.output]
        if len(heads) != 1 or not heads[0].input:
            return None
        head = heads[0]
        graph.initializer.extend(
            [
                helper.make_tensor("studio_last_start", TensorProto.INT64, [1], [-1]),
                helper.make_tensor("studio_last_end", TensorProto.INT64, [1], [2**62]),
                helper.make_tensor("studio_last_axis", TensorProto.INT64, [1], [1]),
            ]
        )
        sliced = "studio_last_position"
        node = helper.make_node(
            "Slice",
            [head.input[0], "studio_last_start", "studio_last_end", "studio_last_axis"],
            [sliced],
            name="/studio/last_position",
        )
        graph.node.insert(list(graph.node).index(head), node)
        head.input[0] = sliced
        return model.SerializeToString()
    except Exception:  # an unexpected graph: run it unedited
        logger.warning("could not feed the output head the last position only", exc_info=True)
        return None


class PrefixCache:
    """The KV cache of prompt preambles, per model: a template's system text and the chat
    template's opening, which every prompt of that template (or every prompt without a system
    text) starts with. A call prefills its preamble and the rest of its prompt in two passes,
    always, whether the preamble's KV comes from here or is computed now: so a candidate's logits
    do not depend on what ran before (the two passes gave logits bit-identical to one pass over
    the whole prompt here, and the tests check that a call writes the same candidates either
    way).

    Bounded: at most ``max_entries`` preambles and ``max_bytes`` of cache (least recently used
    go first).
    """

    def __init__(
        self, model: LoopModel, *, max_entries: int = 32, max_bytes: int = 128 * 2**20
    ) -> None:
        self.model = model
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], list[np.ndarray]] = OrderedDict()
        self._bytes = 0  # held by the entries
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def kv(self, ids: Sequence[int]) -> list[np.ndarray]:
        """Per cache buffer, the preamble's (1, kv heads, len(ids), head size) KV."""
        key = tuple(int(t) for t in ids)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        model = self.model
        shape = (1, model.kv_heads, len(key), model.head_size)
        buffers = [np.zeros(shape, dtype=model.cache_dtype) for _ in model.cache_names]
        BoundCache(model, buffers).run(np.asarray([key]), np.ones((1, len(key)), dtype=np.int64))
        for buffer in buffers:
            buffer.setflags(write=False)  # shared by every call that starts with it
        size = sum(b.nbytes for b in buffers)
        with self._lock:
            if size <= self.max_bytes and key not in self._entries:
                self._entries[key] = buffers
                self._bytes += size
                while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                    _, dropped = self._entries.popitem(last=False)
                    self._bytes -= sum(b.nbytes for b in dropped)
        return buffers


class LoopModel:
    """One ONNX Runtime session of a converted model (CPU), shared by every call's state."""

    def __init__(self, path: Path, *, threads: int, options: dict[str, str] | None = None) -> None:
        import onnxruntime as ort

        config = json.loads((path / "genai_config.json").read_text())["model"]
        decoder = config["decoder"]
        inputs, outputs = decoder.get("inputs", {}), decoder.get("outputs", {})
        self.layers = int(decoder["num_hidden_layers"])
        self.kv_heads = int(decoder["num_key_value_heads"])
        self.head_size = int(decoder["head_size"])
        self.input_ids = inputs.get("input_ids", "input_ids")
        self.attention_mask = inputs.get("attention_mask", "attention_mask")
        self.logits = outputs.get("logits", "logits")
        past_key = inputs.get("past_key_names", "past_key_values.%d.key")
        past_value = inputs.get("past_value_names", "past_key_values.%d.value")
        present_key = outputs.get("present_key_names", "present.%d.key")
        present_value = outputs.get("present_value_names", "present.%d.value")
        self.cache_names = [
            (past % layer, present % layer)
            for layer in range(self.layers)
            for past, present in ((past_key, present_key), (past_value, present_value))
        ]
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        for key, value in (options or {}).items():
            session_options.add_session_config_entry(key, value)
        graph_file = path / decoder.get("filename", "model.onnx")
        graph = _last_position_graph(graph_file, self.logits)
        self.session = None
        if graph is not None:
            # The edited graph from memory, its weights from the converted directory.
            session_options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(path)
            )
            try:
                self.session = ort.InferenceSession(
                    graph, session_options, providers=["CPUExecutionProvider"]
                )
            except Exception:  # the edit did not load: the graph as the builder wrote it
                logger.warning("the edited graph of %s did not load", path, exc_info=True)
        # True: the logits are the last position's only, (rows, 1, vocab), whatever the pass.
        self.last_only = self.session is not None
        if self.session is None:
            self.session = ort.InferenceSession(
                str(graph_file), session_options, providers=["CPUExecutionProvider"]
            )
        self.prefixes = PrefixCache(self)
        self.threads = threads
        declared = {i.name: i for i in self.session.get_inputs()}
        expected = {self.input_ids, self.attention_mask} | {p for p, _ in self.cache_names}
        if set(declared) != expected:
            extra = sorted(set(declared) - expected)
            missing = sorted(expected - set(declared))
            raise LoopUnsupported(f"graph inputs differ: extra {extra}, missing {missing}")
        cache_type = declared[self.cache_names[0][0]].type
        if cache_type not in _ELEMENT_TYPES:
            raise LoopUnsupported(f"KV cache of type {cache_type}")
        self.cache_dtype = _ELEMENT_TYPES[cache_type]
        logits = {o.name: o for o in self.session.get_outputs()}[self.logits]
        vocab = logits.shape[-1]
        if not isinstance(vocab, int) or logits.type not in _ELEMENT_TYPES:
            raise LoopUnsupported(f"logits of shape {logits.shape} and type {logits.type}")
        self.vocab_size = vocab
        self.logits_dtype = _ELEMENT_TYPES[logits.type]
        self.id_dtype = np.int64 if declared[self.input_ids].type == "tensor(int64)" else np.int32
        self.mask_dtype = (
            np.int64 if declared[self.attention_mask].type == "tensor(int64)" else np.int32
        )

    def generator(self, *, batch_size: int, max_length: int) -> LoopGenerator:
        return LoopGenerator(self, batch_size=batch_size, max_length=max_length)


class BoundCache:
    """Cache buffers bound to the session for the passes to come: each layer's past and present
    are one buffer (the attention writes the new position in place); a pass then binds only its
    tokens and mask, and the logits go into a buffer of ours (reading them back through
    ``get_outputs`` wrapped every output, the cache's too, each step)."""

    def __init__(self, model: LoopModel, buffers: list[np.ndarray]) -> None:
        from onnxruntime import OrtValue

        self.model = model
        self.buffers = buffers
        # An OrtValue from a numpy array wraps its memory: the attention writes into ours.
        self._values = [OrtValue.ortvalue_from_numpy(b) for b in buffers]
        self._binding = model.session.io_binding()
        for (past, present), value in zip(model.cache_names, self._values, strict=True):
            self._binding.bind_ortvalue_input(past, value)
            self._binding.bind_ortvalue_output(present, value)
        self._logits: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self.buffers[0].shape[0] if self.buffers else 0

    @property
    def capacity(self) -> int:
        return self.buffers[0].shape[2] if self.buffers else 0

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One pass: ``ids`` (rows, tokens), ``mask`` (rows, total); the last position's
        logits, (rows, vocab) float32."""
        from onnxruntime import OrtValue

        model, binding = self.model, self._binding
        binding.bind_cpu_input(model.input_ids, np.ascontiguousarray(ids, dtype=model.id_dtype))
        binding.bind_cpu_input(
            model.attention_mask, np.ascontiguousarray(mask, dtype=model.mask_dtype)
        )
        shape = (ids.shape[0], 1 if model.last_only else ids.shape[1], model.vocab_size)
        if self._logits is None or self._logits.shape != shape:
            self._logits = np.empty(shape, dtype=model.logits_dtype)
            binding.bind_ortvalue_output(model.logits, OrtValue.ortvalue_from_numpy(self._logits))
        model.session.run_with_iobinding(binding)  # releases the GIL while it computes
        return np.array(self._logits[:, -1, :], dtype=np.float32)


class LoopGenerator:
    """One call's cache and position: prefill once, step, drop rows. One thread steps it.

    The same calls as ONNX Runtime GenAI's generator where the backend needs them
    (``append_tokens``, ``get_logits``), plus ``set_next_tokens`` (the token each row takes,
    instead of a one-hot logits row) and ``keep_rows``.
    """

    def __init__(self, model: LoopModel, *, batch_size: int, max_length: int) -> None:
        self.model = model
        self.rows = batch_size
        self.max_length = max_length
        self.length = 0  # positions filled in the cache
        self._cache: BoundCache | None = None
        self._pending: np.ndarray | None = None  # (rows, tokens) to run at the next get_logits
        self._logits: np.ndarray | None = None
        self.passes = 0  # forward passes run (a prefill counts once)
        self.rows_computed = 0  # rows summed over the passes

    @property
    def buffers(self) -> list[np.ndarray]:
        return self._cache.buffers if self._cache is not None else []

    def append_tokens(self, ids: np.ndarray, *, prefix: int = 0) -> None:
        """The prompt (rows, tokens). Identical rows, the backend's case, are prefilled once
        and the cache copied into every row. ``prefix``: the prompt's first ``prefix`` tokens
        are a preamble whose KV comes from the model's :class:`PrefixCache` (computed there
        on its first use); the rest of the prompt is a second pass."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[0] != self.rows or self.length:
            raise ValueError("append_tokens takes the prompt once, one row per candidate")
        shared = bool((ids == ids[0]).all())
        batch = 1 if shared else self.rows
        shape = (batch, self.model.kv_heads, self.max_length, self.model.head_size)
        buffers = [np.zeros(shape, dtype=self.model.cache_dtype) for _ in self.model.cache_names]
        start = prefix if shared and 0 < prefix < ids.shape[1] else 0
        if start:
            for buffer, part in zip(buffers, self.model.prefixes.kv(ids[0, :start]), strict=True):
                buffer[:, :, :start] = part
        self._cache = BoundCache(self.model, buffers)
        logits = self._run(ids[:1, start:] if shared else ids, ids.shape[1])
        if shared and self.rows > 1:
            first = np.zeros(self.rows, dtype=np.intp)  # row 0, once per candidate
            self._cache = BoundCache(
                self.model, [self._copy_rows(b, first, ids.shape[1]) for b in self.buffers]
            )
            logits = np.repeat(logits, self.rows, axis=0)
        self.length = ids.shape[1]
        self._logits = logits

    def _run(self, ids: np.ndarray, total: int) -> np.ndarray:
        assert self._cache is not None
        logits = self._cache.run(ids, np.ones((ids.shape[0], total), dtype=np.int64))
        self.passes += 1
        self.rows_computed += ids.shape[0]
        return logits

    def get_logits(self) -> np.ndarray:
        """Next-token logits, (rows, 1, vocab) float32; runs the pending step."""
        if self._pending is not None:
            if self.length >= self.max_length:
                raise ValueError(f"the cache holds {self.max_length} positions")
            self._logits = self._run(self._pending, self.length + 1)
            self.length += 1
            self._pending = None
        if self._logits is None:
            raise ValueError("no prompt appended")
        return self._logits[:, None, :]

    def set_next_tokens(self, tokens: Sequence[int]) -> None:
        if len(tokens) != self.rows:
            raise ValueError(f"{len(tokens)} tokens for {self.rows} rows")
        self._pending = np.asarray(tokens, dtype=np.int64)[:, None]

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only these rows (positions in the current batch, in order); the others' cache
        is freed and they are not computed again."""
        rows = list(rows)
        if not rows or rows == list(range(self.rows)):
            return
        index = np.asarray(rows, dtype=np.intp)
        self._cache = BoundCache(
            self.model, [self._copy_rows(b, index, self.length) for b in self.buffers]
        )
        if self._pending is not None:
            self._pending = self._pending[index]
        if self._logits is not None:
            self._logits = self._logits[index]
        self.rows = len(rows)

    @staticmethod
    def _copy_rows(buffer: np.ndarray, index: np.ndarray, used: int) -> np.ndarray:
        """A new cache buffer holding ``buffer``'s rows ``index`` (repeats allowed): only the
        ``used`` positions are copied, the rest is fresh zeroed memory (the cache is sized for
        the whole call, most of it not written yet)."""
        out = np.zeros((len(index), *buffer.shape[1:]), dtype=buffer.dtype)
        out[:, :, :used] = buffer[index, :, :used]
        return out

    def close(self) -> None:
        self._cache = None
