"""The per-host choice (generation/tuning.py, manage.py studio_tune): measured on the tiny ONNX
model end to end with real forward passes, recorded, refused where outputs differ, applied by
the runtime, shown on the admin's model page."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
from django.core.management import call_command
from django.test import Client
from onnx import helper

from generation import tuning
from generation.backends import forget_backends, get_backend
from generation.model_runtime import backend_config, worker_backend_options
from generation.models import LanguageModel
from tests import test_backends

# The ONNX model fixtures of the backend tests (a tiny Llama converted by the studio).
tiny_llama_dir = test_backends.tiny_llama_dir
model_cache = test_backends.model_cache
onnx_model = test_backends.onnx_model


@pytest.fixture
def tuned_settings(settings: Any, tmp_path: Path) -> Any:
    settings.DATA_DIR = tmp_path / "data"
    settings.TUNING = True
    settings.TORCH_THREADS = 2
    yield settings
    forget_backends()


def test_studio_tune_measures_records_and_shows_the_choice(
    tuned_settings: Any, onnx_model: LanguageModel, admin_user: Any
) -> None:
    out = io.StringIO()
    call_command("studio_tune", "--quick", "--only", "generation", stdout=out)
    text = out.getvalue()
    record = json.loads(tuning.record_path(tuned_settings.DATA_DIR).read_text())
    result = record["generation"]
    assert record["fingerprint"]["cores"] >= 1 and record["fingerprint"]["cpu"]
    assert result["model"] == onnx_model.name
    # Job merging and spinning change where the work runs, not the tokens: every candidate ran
    # and wrote the reference's greedy tokens, and the chosen one is among them.
    settings_tried = [t["setting"] for t in result["trials"]]
    assert settings_tried == [dict(c) for c in tuning.GENERATION_CANDIDATES]
    assert all(
        t["same_outputs"] and len(t["seconds"]) == result["rounds"] for t in result["trials"]
    )
    assert result["chosen"] in settings_tried
    assert f"chosen: {result['chosen']}" in text

    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/admin/generation/languagemodel/{onnx_model.pk}/change/").content.decode()
    assert "This host&#x27;s measured settings" in page or "This host's measured settings" in page
    assert f"chosen {result['chosen']}".replace("'", "&#x27;") in page


def _negated_logits_copy(source: Path, target: Path) -> Path:
    """The converted model with its logits negated (a Neg node after the head): a graph whose
    greedy tokens are the least likely ones, so its outputs differ from the original's."""
    shutil.copytree(source, target)
    path = target / "model.onnx"
    model = onnx.load(str(path), load_external_data=False)
    head = next(n for n in model.graph.node if "logits" in n.output)
    head.output[list(head.output).index("logits")] = "logits_before_neg"
    model.graph.node.append(helper.make_node("Neg", ["logits_before_neg"], ["logits"]))
    onnx.save(model, str(path))
    return target


def test_a_faster_setting_that_writes_other_tokens_is_refused(
    tuned_settings: Any, onnx_model: LanguageModel, tmp_path: Path
) -> None:
    other = _negated_logits_copy(Path(onnx_model.onnx_dir), tmp_path / "negated")
    config = backend_config(onnx_model)
    candidates = [{"merge_calls": True, "spin": False}, {"onnx_dir": str(other)}]
    result = tuning.tune_generation(
        config, cache_root=tuned_settings.MODEL_CACHE_DIR, candidates=candidates, quick=True
    )
    refused = result["trials"][1]
    assert refused["same_outputs"] is False
    assert "tokens differ from position 0" in refused["difference"]
    assert refused["seconds"] == []  # never timed, so never chosen, however fast
    assert result["chosen"] == {"merge_calls": True, "spin": False}
    assert result["trials"][0]["same_outputs"] is True


def test_the_runtime_applies_the_recorded_choice(
    tuned_settings: Any, onnx_model: LanguageModel
) -> None:
    tuned_settings.GENERATION_MERGE_JOBS = True
    tuned_settings.GENERATION_ONNX_SPIN = False
    assert worker_backend_options()["merge_calls"] is True
    merged = get_backend(backend_config(onnx_model), cache_root=tuned_settings.MODEL_CACHE_DIR)
    assert merged.shared is not None  # every job in one batch

    tuning.write_record(
        tuned_settings.DATA_DIR,
        "generation",
        {"chosen": {"merge_calls": False, "spin": True}, "trials": []},
    )
    options = worker_backend_options()
    assert options["merge_calls"] is False and options["spin"] is True
    per_job = get_backend(backend_config(onnx_model), cache_root=tuned_settings.MODEL_CACHE_DIR)
    assert per_job.shared is None and per_job is not merged  # per-job threads, as recorded

    tuned_settings.TUNING = False  # CONTENTSTUDIO_TUNING=0: the settings serve as they are
    assert worker_backend_options()["merge_calls"] is True


def test_the_encoder_config_applies_the_recorded_embedding_choice(tuned_settings: Any) -> None:
    from review.services.embedding import encoder_config

    tuned_settings.EMBED_GRAPH = "exported"
    assert encoder_config().graph == "exported"
    tuning.write_record(
        tuned_settings.DATA_DIR,
        "embedding",
        {"chosen": {"graph": "fused", "precision": "float", "spin": True}, "trials": []},
    )
    config = encoder_config()
    assert (config.graph, config.precision, config.spin) == ("fused", "float", True)


def test_same_vectors_refuses_vectors_outside_the_tolerance() -> None:
    import numpy as np

    from review.services.embed_tuning import same_vectors

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4, 8)).astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert same_vectors(reference, reference.copy()) == ""
    moved = reference.copy()
    moved[2] = reference[3]
    assert "min cosine" in same_vectors(reference, moved)


def test_a_worker_measures_a_new_host_once_at_start(
    transactional_db: None, tuned_settings: Any, onnx_model: LanguageModel
) -> None:
    # transactional_db: the measuring thread reads the default model on its own connection.
    from review.management.commands.studio_tune import tune_at_start

    tuned_settings.TUNE_AT_START = False
    assert tune_at_start(("generation",)) is None  # skipped by the setting
    tuned_settings.TUNE_AT_START = True
    thread = tune_at_start(("generation",))
    assert thread is not None
    assert tune_at_start(("generation",)) is None  # one measurement at a time (the lock)
    thread.join(timeout=600)
    record = tuning.read_record(tuned_settings.DATA_DIR)
    assert record["generation"]["quick"] is True and record["generation"]["chosen"]
    assert tune_at_start(("generation",)) is None  # recorded for this host: nothing to do


def test_a_setting_the_host_cannot_run_is_refused_with_its_error() -> None:
    def make_runner(setting: dict[str, Any]) -> Any:
        if setting["kind"] == "broken":
            raise RuntimeError("no such kernel on this CPU")
        return lambda: [[1, 2, 3]]

    steps: list[tuple[int, int]] = []
    result = tuning.choose(
        [{"kind": "reference"}, {"kind": "broken"}],
        make_runner=make_runner,
        same=tuning.same_tokens,
        rounds=2,
        progress=lambda step, steps_, label: steps.append((step, steps_)),
    )
    broken = result["trials"][1]
    assert broken["error"] == "RuntimeError: no such kernel on this CPU"
    assert broken["seconds"] == [] and result["chosen"] == {"kind": "reference"}
    assert steps[-1] == (6, 6)  # the progress bar reaches its end
    assert (
        tuning.same_tokens([[1, 2, 3]], [[1, 2, 4]]) == "candidate 0: tokens differ from position 2"
    )
