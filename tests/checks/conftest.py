"""Fixtures for the checks' tests: a small Detoxify-format toxicity model built at test time.

No Detoxify weights can be downloaded here, so the session builds a tiny BERT (2 layers,
hidden 32) in Detoxify's checkpoint format and trains it briefly on 80% of the hand-labelled
seed fixture; the other 20% is held out. Tests load it through Detoxify's real loading path.
Building takes a few seconds, once per test session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from review.checks.toxicity import Detector, load_detector
from review.checks.toxicity_build import (
    LabelledExample,
    build_checkpoint,
    load_examples,
    split_examples,
)


@dataclass(frozen=True)
class TinyToxicityModel:
    checkpoint: str
    config_dir: str
    train: list[LabelledExample]
    held_out: list[LabelledExample]


@pytest.fixture(scope="session")
def tiny_toxicity_model(tmp_path_factory: pytest.TempPathFactory) -> TinyToxicityModel:
    """Paths of a tiny toxicity checkpoint and its config dir, trained on the seed fixture."""
    out_dir: Path = tmp_path_factory.mktemp("toxicity-model")
    train, held_out = split_examples(load_examples())
    built = build_checkpoint(out_dir, examples=train, encoder="tiny", seed=0, progress=False)
    return TinyToxicityModel(
        checkpoint=built["checkpoint"],
        config_dir=built["config_dir"],
        train=train,
        held_out=held_out,
    )


@pytest.fixture(scope="session")
def tiny_toxicity_detector(tiny_toxicity_model: TinyToxicityModel) -> Detector:
    """The tiny model loaded once for the session (through detoxify.Detoxify)."""
    return load_detector(
        model_name=None,
        checkpoint=tiny_toxicity_model.checkpoint,
        config_dir=tiny_toxicity_model.config_dir,
    )
