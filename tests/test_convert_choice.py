"""How a conversion's precision is chosen from its measurements (generation/backends/convert.py)."""

from __future__ import annotations

import hashlib
import math

import pytest

from generation.backends import convert


def _build(precision: str, ratio: float, speed: float) -> dict:
    return {"precision": precision, "ratio": ratio, "tokens_per_second": speed}


def test_a_build_only_a_little_faster_loses_to_the_more_faithful_one() -> None:
    # given int4 and int8 both within bounds, int4 under 10% faster (measured 63.1 vs 62.6)
    chosen = convert._choose([_build("int4", 1.0445, 63.1), _build("int8", 1.0048, 62.6)])
    # then the more faithful int8 is kept
    assert chosen is not None and chosen["precision"] == "int8"


def test_a_clearly_faster_build_within_bounds_is_kept() -> None:
    chosen = convert._choose([_build("int4", 1.04, 180.0), _build("int8", 1.005, 117.0)])
    assert chosen is not None and chosen["precision"] == "int4"


def test_nothing_within_bounds_chooses_nothing() -> None:
    assert convert._choose([]) is None


def test_pooled_perplexity_weights_each_window_by_the_tokens_it_predicts() -> None:
    windows = [[1] * 11, [2] * 3]  # predicts 10 and 2 tokens
    perplexities = {1: 20.0, 2: 40.0}
    pooled = convert.pooled_perplexity(lambda w: perplexities[w[0]], windows)
    assert pooled == pytest.approx(math.exp((10 * math.log(20.0) + 2 * math.log(40.0)) / 12))


def test_the_check_is_part_of_the_conversion_directory(tmp_path) -> None:
    # a conversion checked another way is never picked up as this one's
    source = tmp_path / "model"
    path = convert.target_dir(tmp_path / "cache", source, "auto")
    assert path.parent == tmp_path / "cache" / "onnx" and path.name.startswith("model-")
    old_key = str(source.resolve()).encode()
    assert hashlib.sha256(old_key).hexdigest()[:10] not in path.name
