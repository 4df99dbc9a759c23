"""ONNX Runtime GenAI's C API through ctypes, so that a forward pass does not hold the GIL.

Why: the ``onnxruntime_genai`` Python module (0.18) keeps the GIL for the whole of
``get_logits`` / ``generate_next_token``, where the forward pass runs, so two calls in two worker
threads could never compute at the same time and every other thread of the worker waited for
each pass (measured: docs/generation.md). ctypes releases the GIL around every foreign call.

Only the calls the backend needs are bound: a model from a config directory (with the
session-option overlay), generator parameters, a generator, and its append / logits / next
token calls. Each object is freed by its owner; an ``OgaResult`` error becomes
``NativeError`` with ONNX Runtime GenAI's own message.
"""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "OgaCreateConfig": ([ctypes.c_char_p, ctypes.POINTER(_P)], _P),
    "OgaConfigClearProviders": ([_P], _P),
    "OgaConfigAppendProvider": ([_P, ctypes.c_char_p], _P),
    "OgaConfigOverlay": ([_P, ctypes.c_char_p], _P),
    "OgaCreateModelFromConfig": ([_P, ctypes.POINTER(_P)], _P),
    "OgaCreateGeneratorParams": ([_P, ctypes.POINTER(_P)], _P),
    "OgaGeneratorParamsSetSearchNumber": ([_P, ctypes.c_char_p, ctypes.c_double], _P),
    "OgaGeneratorParamsSetSearchBool": ([_P, ctypes.c_char_p, ctypes.c_bool], _P),
    "OgaCreateGenerator": ([_P, _P, ctypes.POINTER(_P)], _P),
    "OgaGenerator_AppendTokens": ([_P, _P, ctypes.c_size_t], _P),
    "OgaGenerator_GetLogits": ([_P, ctypes.POINTER(_P)], _P),
    "OgaGenerator_SetLogits": ([_P, _P], _P),
    "OgaGenerator_GenerateNextToken": ([_P], _P),
    "OgaCreateTensorFromBuffer": (
        [_P, _P, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(_P)],
        _P,
    ),
    "OgaTensorGetData": ([_P, ctypes.POINTER(_P)], _P),
    "OgaTensorGetShapeRank": ([_P, ctypes.POINTER(ctypes.c_size_t)], _P),
    "OgaTensorGetShape": ([_P, _P, ctypes.c_size_t], _P),
    "OgaResultGetError": ([_P], ctypes.c_char_p),
    "OgaDestroyResult": ([_P], None),
    "OgaDestroyTensor": ([_P], None),
    "OgaDestroyGenerator": ([_P], None),
    "OgaDestroyGeneratorParams": ([_P], None),
    "OgaDestroyModel": ([_P], None),
    "OgaDestroyConfig": ([_P], None),
}
_FLOAT32 = 1  # OgaElementType_float32

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class NativeError(RuntimeError):
    """An error reported by ONNX Runtime GenAI (its message), or its library is not usable."""


def library() -> ctypes.CDLL:
    """The shared library the ``onnxruntime_genai`` wheel ships, with the signatures bound.

    It is the same library the Python module links, so both see one ONNX Runtime.
    """
    global _lib
    with _lib_lock:
        if _lib is None:
            import onnxruntime_genai as og

            folder = Path(og.__file__).parent
            candidates = sorted(folder.glob("libonnxruntime-genai.so*")) + sorted(
                folder.glob("onnxruntime-genai.dll")
            )
            if not candidates:
                raise NativeError(f"no onnxruntime-genai shared library in {folder}")
            try:
                lib = ctypes.CDLL(str(candidates[0]))
                for name, (args, result) in _SIGNATURES.items():
                    function = getattr(lib, name)
                    function.argtypes = args
                    function.restype = result
            except (OSError, AttributeError) as exc:
                raise NativeError(f"onnxruntime-genai C API not usable: {exc}") from exc
            _lib = lib
        return _lib


def _check(result: int | None) -> None:
    if result:
        lib = library()
        message = lib.OgaResultGetError(result)
        lib.OgaDestroyResult(result)
        raise NativeError((message or b"unknown error").decode(errors="replace"))


class NativeModel:
    """An ``OgaModel`` (one ONNX Runtime session), shared by every generator of the backend."""

    def __init__(self, path: Path, *, session_options: dict[str, Any], cuda: bool) -> None:
        lib = library()
        self._lib = lib
        config = _P()
        _check(lib.OgaCreateConfig(str(path).encode(), ctypes.byref(config)))
        try:
            _check(lib.OgaConfigClearProviders(config))
            overlay = {"model": {"decoder": {"session_options": session_options}}}
            _check(lib.OgaConfigOverlay(config, json.dumps(overlay).encode()))
            if cuda:
                _check(lib.OgaConfigAppendProvider(config, b"cuda"))
            handle = _P()
            _check(lib.OgaCreateModelFromConfig(config, ctypes.byref(handle)))
        finally:
            lib.OgaDestroyConfig(config)
        self.handle = handle

    def generator(self, *, batch_size: int, max_length: int) -> NativeGenerator:
        return NativeGenerator(self, batch_size=batch_size, max_length=max_length)

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle:
            self._lib.OgaDestroyModel(handle)
            self.handle = None


class NativeGenerator:
    """One ``OgaGenerator``: greedy search over logits the caller may replace each step.

    The same four calls as ``onnxruntime_genai.Generator`` (append_tokens, get_logits,
    set_logits, generate_next_token), each releasing the GIL while ONNX Runtime works. Not
    thread-safe itself: one caller's thread steps it.
    """

    def __init__(self, model: NativeModel, *, batch_size: int, max_length: int) -> None:
        lib = model._lib
        self._lib = lib
        self._model = model  # keeps the session alive while this generator lives
        self.handle = None
        self._pending: np.ndarray | None = None
        params = _P()
        _check(lib.OgaCreateGeneratorParams(model.handle, ctypes.byref(params)))
        try:
            _check(lib.OgaGeneratorParamsSetSearchNumber(params, b"max_length", max_length))
            _check(lib.OgaGeneratorParamsSetSearchNumber(params, b"batch_size", batch_size))
            _check(lib.OgaGeneratorParamsSetSearchBool(params, b"do_sample", False))
            # A fixed seed for the library's own random engine, which greedy search never
            # draws from: without one, creating a generator seeds it from std::random_device,
            # which took 12-15 ms here (AMD EPYC), a quarter of a job's time to first token.
            _check(lib.OgaGeneratorParamsSetSearchNumber(params, b"random_seed", 0))
            handle = _P()
            _check(lib.OgaCreateGenerator(model.handle, params, ctypes.byref(handle)))
        finally:
            lib.OgaDestroyGeneratorParams(params)
        self.handle = handle

    def append_tokens(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        _check(self._lib.OgaGenerator_AppendTokens(self.handle, ids.ctypes.data, ids.size))

    def get_logits(self) -> np.ndarray:
        """The next-token logits, (batch, 1, vocab) float32; runs the pending forward pass."""
        lib = self._lib
        tensor = _P()
        _check(lib.OgaGenerator_GetLogits(self.handle, ctypes.byref(tensor)))
        try:
            rank = ctypes.c_size_t()
            _check(lib.OgaTensorGetShapeRank(tensor, ctypes.byref(rank)))
            dims = (ctypes.c_int64 * rank.value)()
            _check(lib.OgaTensorGetShape(tensor, dims, rank.value))
            data = _P()
            _check(lib.OgaTensorGetData(tensor, ctypes.byref(data)))
            shape = tuple(int(d) for d in dims)
            count = int(np.prod(shape))
            view = np.ctypeslib.as_array(
                ctypes.cast(data, ctypes.POINTER(ctypes.c_float)), shape=(count,)
            )
            return view.reshape(shape).copy()  # the tensor's buffer dies with it
        finally:
            lib.OgaDestroyTensor(tensor)

    def set_logits(self, logits: np.ndarray) -> None:
        lib = self._lib
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        dims = (ctypes.c_int64 * logits.ndim)(*logits.shape)
        tensor = _P()
        _check(
            lib.OgaCreateTensorFromBuffer(
                logits.ctypes.data, dims, logits.ndim, _FLOAT32, ctypes.byref(tensor)
            )
        )
        try:
            _check(lib.OgaGenerator_SetLogits(self.handle, tensor))
        finally:
            lib.OgaDestroyTensor(tensor)
        # The tensor wraps our buffer without copying it: keep the buffer until the step that
        # reads it has run, whether or not the library copied it meanwhile.
        self._pending = logits

    def generate_next_token(self) -> None:
        _check(self._lib.OgaGenerator_GenerateNextToken(self.handle))
        self._pending = None

    def close(self) -> None:
        if self.handle:
            self._lib.OgaDestroyGenerator(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()
