"""A given text's log-likelihood under a model (``Backend.score_text``): what the evaluation's
perplexity of the real document is made of. Real tiny models through the studio's backends: the
tiny GPT-2 on transformers, a tiny Llama converted to ONNX (the studio's CPU loop)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.conf import settings as django_settings

from generation.backends import get_backend
from generation.backends.base import text_ids_to_score
from generation.backends.types import SamplingSettings
from generation.model_runtime import backend_config
from generation.models import LanguageModel
from tests.test_backends import (  # noqa: F401 (fixtures)
    _fresh_backends,
    model_cache,
    onnx_model,
    tiny_llama_dir,
    transformers_model,
)

PROMPT_USER = "Write a short news report: the council approved a budget for the libraries."


def _backend(model: LanguageModel) -> Any:
    return get_backend(backend_config(model), cache_root=django_settings.MODEL_CACHE_DIR)


@pytest.mark.parametrize("model_fixture", ["transformers_model", "onnx_model"])
def test_the_score_of_a_written_text_is_the_log_probability_its_sampler_saw(
    model_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Teacher-forcing a candidate's own tokens gives back the mean log-probability recorded
    while it was sampled (from the raw logits), token for token."""
    backend = _backend(request.getfixturevalue(model_fixture))
    prompt = backend.render_prompt(system="", user=PROMPT_USER)
    settings = SamplingSettings(max_new_tokens=16, temperature=0.9, top_k=50, top_p=0.95)
    [out] = backend.generate(prompt=prompt, n=1, seeds=[3], settings=settings)
    assert out.finish_reason == "length" and out.mean_logprob is not None
    score = backend.score_ids(prompt_ids=backend.encode(prompt), ids=out.token_ids)
    assert score.tokens == len(out.token_ids)
    assert score.mean_logprob == pytest.approx(out.mean_logprob, abs=2e-3)
    assert score.perplexity == pytest.approx(math.exp(-out.mean_logprob), rel=5e-3)


@pytest.mark.parametrize("model_fixture", ["transformers_model", "onnx_model"])
def test_the_cap_truncates_and_each_token_is_scored_once_from_its_left_context(
    model_fixture: str, request: pytest.FixtureRequest
) -> None:
    backend = _backend(request.getfixturevalue(model_fixture))
    prompt = backend.render_prompt(system="", user=PROMPT_USER)
    text = (
        "The city council approved a new budget for the public libraries on Monday. "
        "Officials said the money would keep the branches open in the evenings."
    )
    whole = backend.score_text(prompt=prompt, text=text)
    assert whole.tokens > 10 and not whole.truncated and whole.logprob_sum < 0
    capped = backend.score_text(prompt=prompt, text=text, max_tokens=5)
    assert capped.tokens == 5 and capped.truncated
    ids, truncated = text_ids_to_score(
        backend.tokenizer,
        prompt_ids=backend.encode(prompt),
        text=text,
        context_length=backend.context_length,
        max_tokens=None,
    )
    assert len(ids) == whole.tokens and not truncated
    prompt_ids = backend.encode(prompt)
    # Scoring is causal: the first five tokens score the same whether or not more follow, and
    # the whole is the five plus the rest scored after them.
    five = backend.score_ids(prompt_ids=prompt_ids, ids=ids[:5])
    rest = backend.score_ids(prompt_ids=prompt_ids + ids[:5], ids=ids[5:])
    assert capped.logprob_sum == pytest.approx(five.logprob_sum, abs=1e-3)
    assert whole.logprob_sum == pytest.approx(five.logprob_sum + rest.logprob_sum, abs=2e-3)
    # A different prompt changes the score (the text is scored after the prompt).
    other = backend.render_prompt(system="", user="Describe a storm at sea.")
    assert backend.score_text(prompt=other, text=text).logprob_sum != pytest.approx(
        whole.logprob_sum, abs=1e-4
    )


def test_the_onnx_loop_and_transformers_agree_on_the_same_weights(
    onnx_model: LanguageModel,  # noqa: F811
    tiny_llama_dir: Any,  # noqa: F811
    db: None,
) -> None:
    """The ONNX conversion's teacher-forced perplexity is the source weights' (transformers),
    within what the conversion's precision changes."""
    plain = LanguageModel.objects.create(
        name="tiny-llama-torch", source_kind="local", source=str(tiny_llama_dir)
    )
    onnx, torch_backend = _backend(onnx_model), _backend(plain)
    text = "The council voted to close the harbour bridge for two years while it is repaired."
    prompt_onnx = onnx.render_prompt(system="", user=PROMPT_USER)
    prompt_torch = torch_backend.render_prompt(system="", user=PROMPT_USER)
    assert prompt_onnx == prompt_torch
    a = onnx.score_text(prompt=prompt_onnx, text=text)
    b = torch_backend.score_text(prompt=prompt_torch, text=text)
    assert a.tokens == b.tokens > 5
    precision = onnx_model.onnx_conversion.get("precision")
    assert a.perplexity == pytest.approx(b.perplexity, rel=0.02 if precision == "fp32" else 0.1)
