"""The toxicity check: Detoxify loading, length-sorted scoring, per-sentence results, failures.

The model is the tiny Detoxify-format checkpoint built by the ``tiny_toxicity_model`` fixture
(tests/checks/conftest.py), trained on 80% of review/tools/data/toxicity_seed.jsonl.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from review.checks.text import sentences
from review.checks.toxicity import (
    ToxicityConfig,
    ToxicityModelUnavailable,
    check_toxicity,
    clear_detector_cache,
    detoxify_model,
    get_detector,
    load_detector,
    not_run_result,
    run_toxicity_check,
)
from review.checks.toxicity.detoxify_model import JIGSAW_UNBIASED_CLASSES
from review.tools.toxicity_build import auc, build_checkpoint, category_auc, load_examples

BENIGN = "The city council approved the new budget on Monday after a long debate."
TOXIC = "You are a fucking idiot and everyone hates you."


@pytest.fixture
def fresh_cache():
    clear_detector_cache()
    yield
    clear_detector_cache()


def _copy_model(model, tmp_path: Path) -> tuple[str, str]:
    """A private copy of the tiny model whose checkpoint points at the copied config dir."""
    config_dir = tmp_path / "config"
    shutil.copytree(model.config_dir, config_dir)
    loaded = torch.load(model.checkpoint, weights_only=False)
    loaded["config"]["arch"]["args"]["model_type"] = str(config_dir)
    checkpoint = tmp_path / "toxicity.ckpt"
    torch.save(loaded, checkpoint)
    return str(checkpoint), str(config_dir)


# --- loading ---------------------------------------------------------------------------------


def test_detector_reports_the_seven_jigsaw_categories_by_detoxify_names(tiny_toxicity_detector):
    assert tiny_toxicity_detector.categories == JIGSAW_UNBIASED_CLASSES


def test_detector_scores_like_detoxify_predict(tiny_toxicity_detector, tiny_toxicity_model):
    # given the same checkpoint loaded by Detoxify itself
    from detoxify import Detoxify

    reference = Detoxify(
        checkpoint=tiny_toxicity_model.checkpoint,
        huggingface_config_path=tiny_toxicity_model.config_dir,
    )
    # when both score the same text
    ours = tiny_toxicity_detector.score_texts([TOXIC])[0]
    theirs = reference.predict(TOXIC)
    # then the scores agree
    assert set(ours) == set(theirs)
    for category, score in ours.items():
        assert score == pytest.approx(theirs[category], abs=1e-5)


def test_missing_checkpoint_is_unavailable_with_the_path_in_the_reason(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=str(missing), config_dir=str(tmp_path))
    assert caught.value.reason == f"toxicity checkpoint {missing} does not exist"


def test_corrupt_checkpoint_is_unavailable(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"this is not a torch file")
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=str(broken), config_dir=str(tmp_path))
    assert "is not a readable torch checkpoint" in caught.value.reason
    assert str(broken) in caught.value.reason


def test_checkpoint_without_detoxify_config_is_unavailable(tmp_path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=str(plain), config_dir=str(tmp_path))
    assert "not in Detoxify's format" in caught.value.reason


def test_config_dir_with_wrong_label_count_is_unavailable(tiny_toxicity_model, tmp_path):
    checkpoint, config_dir = _copy_model(tiny_toxicity_model, tmp_path)
    config_path = Path(config_dir) / "config.json"
    config = json.loads(config_path.read_text())
    config["num_labels"] = 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=checkpoint, config_dir=config_dir)
    assert "declares num_labels=2 but the checkpoint has 7 outputs" in caught.value.reason


def test_missing_config_dir_is_unavailable(tiny_toxicity_model, tmp_path):
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(
            model_name=None,
            checkpoint=tiny_toxicity_model.checkpoint,
            config_dir=str(tmp_path / "absent"),
        )
    assert caught.value.reason == f"toxicity config dir {tmp_path / 'absent'} does not exist"


def test_checkpoint_lacking_weights_is_refused_rather_than_run_with_random_ones(
    tiny_toxicity_model, tmp_path
):
    checkpoint, config_dir = _copy_model(tiny_toxicity_model, tmp_path)
    loaded = torch.load(checkpoint, weights_only=False)
    del loaded["state_dict"]["classifier.weight"]
    torch.save(loaded, checkpoint)
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=checkpoint, config_dir=config_dir)
    assert "lacks weights" in caught.value.reason
    assert "classifier.weight" in caught.value.reason


def test_unknown_model_name_is_unavailable_without_a_download():
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name="toxic-xl", checkpoint=None, config_dir=None)
    assert caught.value.reason.startswith("unknown Detoxify model name 'toxic-xl'")
    assert "unbiased" in caught.value.reason


def test_no_configured_model_is_unavailable():
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(model_name=None, checkpoint=None, config_dir=None)
    assert caught.value.reason.startswith("no toxicity model configured")


def test_tokenizer_allowing_more_than_the_positions_truncates_instead_of_crashing(
    tiny_toxicity_model, tmp_path
):
    # given a config dir whose tokenizer claims a far longer limit than the model's positions
    checkpoint, config_dir = _copy_model(tiny_toxicity_model, tmp_path)
    positions = json.loads((Path(config_dir) / "config.json").read_text())[
        "max_position_embeddings"
    ]
    tokenizer_config = Path(config_dir) / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    settings["model_max_length"] = 100_000
    tokenizer_config.write_text(json.dumps(settings))
    detector = load_detector(model_name=None, checkpoint=checkpoint, config_dir=config_dir)
    # when a text far longer than that is checked
    long_text = "You are an idiot " * 400 + "."
    result = check_toxicity(long_text, detector)
    # then it is scored, truncated at the position limit
    assert detector.max_length == positions < 100_000
    assert result["whole_text_truncated"] is True
    assert 0.0 <= result["overall"]["toxicity"] <= 1.0


# --- scores ----------------------------------------------------------------------------------


def test_scores_separate_toxic_from_benign_training_sentences(
    tiny_toxicity_detector, tiny_toxicity_model
):
    examples = tiny_toxicity_model.train
    scores = tiny_toxicity_detector.score_texts([ex["text"] for ex in examples])
    toxic = [
        s["toxicity"] for s, ex in zip(scores, examples, strict=True) if ex["labels"]["toxicity"]
    ]
    benign = [
        s["toxicity"]
        for s, ex in zip(scores, examples, strict=True)
        if not ex["labels"]["toxicity"]
    ]
    assert sum(toxic) / len(toxic) - sum(benign) / len(benign) > 0.5
    assert auc(toxic, benign) > 0.97


def test_every_category_ranks_its_own_training_sentences_higher(
    tiny_toxicity_detector, tiny_toxicity_model
):
    aucs = category_auc(tiny_toxicity_detector, tiny_toxicity_model.train)
    assert set(aucs) == set(JIGSAW_UNBIASED_CLASSES)
    for category, (value, positives) in aucs.items():
        assert positives > 0
        assert value > 0.8, category


def test_scores_separate_held_out_toxic_sentences(tiny_toxicity_detector, tiny_toxicity_model):
    value, positives = category_auc(tiny_toxicity_detector, tiny_toxicity_model.held_out)[
        "toxicity"
    ]
    assert positives >= 10
    assert value > 0.75


def test_length_sorted_batches_score_like_one_text_at_a_time(tiny_toxicity_detector):
    # given texts of very different lengths in no particular order
    seed_texts = [ex["text"] for ex in load_examples()[::7]]
    texts = [" ".join(seed_texts[i : i + 1 + (i * 5) % 9]) for i in range(len(seed_texts))] + [
        "",
        "Idiot.",
    ]
    # when scored in sorted batches of 4 and one by one
    batched = tiny_toxicity_detector.score_texts(texts, batch_size=4)
    single = [tiny_toxicity_detector.score_texts([t], batch_size=1)[0] for t in texts]
    # then each text gets the same scores, in the order given
    assert len(batched) == len(texts)
    for together, alone in zip(batched, single, strict=True):
        for category in tiny_toxicity_detector.categories:
            assert together[category] == pytest.approx(alone[category], abs=1e-5)


def test_score_texts_of_nothing_is_nothing(tiny_toxicity_detector):
    assert tiny_toxicity_detector.score_texts([]) == []


def test_score_texts_rejects_a_zero_batch(tiny_toxicity_detector):
    with pytest.raises(ValueError):
        tiny_toxicity_detector.score_texts(["a"], batch_size=0)


def test_scoring_from_several_threads_gives_the_same_scores(tiny_toxicity_detector):
    texts = [BENIGN, TOXIC] * 8
    expected = tiny_toxicity_detector.score_texts(texts)
    results: list[list[dict[str, float]]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(tiny_toxicity_detector.score_texts(texts, batch_size=3))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 4
    for result in results:
        assert [r["toxicity"] for r in result] == pytest.approx(
            [e["toxicity"] for e in expected], abs=1e-5
        )


# --- the check -------------------------------------------------------------------------------


def test_check_scores_each_sentence_at_its_span(tiny_toxicity_detector):
    text = f"{BENIGN}  {TOXIC}\n\nTickets for the concert go on sale Friday."
    result = check_toxicity(text, tiny_toxicity_detector)
    spans = [(s["start"], s["end"]) for s in result["sentences"]]
    assert spans == [(s.start, s.end) for s in sentences(text)]
    assert [text[a:b] for a, b in spans] == [
        BENIGN,
        TOXIC,
        "Tickets for the concert go on sale Friday.",
    ]
    by_toxicity = [s["scores"]["toxicity"] for s in result["sentences"]]
    assert by_toxicity[1] > 0.5
    assert by_toxicity[1] > 5 * max(by_toxicity[0], by_toxicity[2])


def test_overall_is_the_maximum_of_the_whole_text_and_its_sentences(tiny_toxicity_detector):
    text = f"{BENIGN} {TOXIC} {BENIGN}"
    result = check_toxicity(text, tiny_toxicity_detector)
    assert result["status"] == "ok"
    assert result["categories"] == list(JIGSAW_UNBIASED_CLASSES)
    for category in result["categories"]:
        expected = max(
            [result["whole_text"][category]] + [s["scores"][category] for s in result["sentences"]]
        )
        assert result["overall"][category] == expected
    assert result["overall"]["toxicity"] >= result["sentences"][1]["scores"]["toxicity"]


def test_single_sentence_whole_text_score_is_its_sentence_score(tiny_toxicity_detector):
    result = check_toxicity(f"  {TOXIC}\n", tiny_toxicity_detector)
    assert len(result["sentences"]) == 1
    assert result["whole_text"] == result["sentences"][0]["scores"]
    assert result["sentences"][0]["start"] == 2


def test_empty_text_has_no_sentences_and_scores_zero(tiny_toxicity_detector):
    for text in ("", "  \n\n "):
        result = check_toxicity(text, tiny_toxicity_detector)
        assert result["status"] == "ok"
        assert result["sentences"] == []
        assert result["overall"] == dict.fromkeys(JIGSAW_UNBIASED_CLASSES, 0.0)
        assert result["whole_text_truncated"] is False


def test_check_result_survives_json(tiny_toxicity_detector):
    result = check_toxicity(f"{BENIGN} {TOXIC}", tiny_toxicity_detector)
    assert json.loads(json.dumps(result)) == result
    assert result["engine"] == "detoxify"
    assert result["engine_version"].startswith(importlib.metadata.version("detoxify") + " sha256:")
    assert result["model"].startswith("checkpoint toxicity.ckpt sha256:")
    assert set(result["timings"]) == {"segment_ms", "score_ms", "total_ms"}


def test_not_run_result_carries_the_reason_and_no_scores():
    result = not_run_result("toxicity checkpoint /x does not exist")
    assert result["status"] == "not_run"
    assert result["reason"] == "toxicity checkpoint /x does not exist"
    assert result["overall"] == {}
    assert result["sentences"] == []
    assert result["categories"] == []
    assert json.loads(json.dumps(result)) == result


# --- the process cache -----------------------------------------------------------------------


def test_get_detector_loads_once_for_concurrent_callers(
    tiny_toxicity_model, fresh_cache, monkeypatch
):
    # given a counting loader
    calls: list[str | None] = []
    real_load = detoxify_model.load_detector

    def counting_load(**kwargs):
        calls.append(kwargs["checkpoint"])
        return real_load(**kwargs)

    monkeypatch.setattr(detoxify_model, "load_detector", counting_load)
    config = ToxicityConfig(
        checkpoint=tiny_toxicity_model.checkpoint, config_dir=tiny_toxicity_model.config_dir
    )
    # when eight threads ask for the detector at once
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(get_detector(config))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then it was loaded once and all got the same one
    assert len(calls) == 1
    assert len(got) == 8
    assert all(d is got[0] for d in got)


def test_get_detector_remembers_a_failure_until_it_is_time_to_retry(
    tmp_path, fresh_cache, monkeypatch
):
    calls: list[str | None] = []
    real_load = detoxify_model.load_detector

    def counting_load(**kwargs):
        calls.append(kwargs["checkpoint"])
        return real_load(**kwargs)

    monkeypatch.setattr(detoxify_model, "load_detector", counting_load)
    config = ToxicityConfig(checkpoint=str(tmp_path / "missing.ckpt"), config_dir=str(tmp_path))
    reasons = []
    for _ in range(3):
        with pytest.raises(ToxicityModelUnavailable) as caught:
            get_detector(config)
        reasons.append(caught.value.reason)
    assert len(calls) == 1
    assert len(set(reasons)) == 1 and "does not exist" in reasons[0]
    # once the retry delay has passed, the next call tries again
    monkeypatch.setattr(detoxify_model, "LOAD_RETRY_AFTER_S", 0.0)
    with pytest.raises(ToxicityModelUnavailable):
        get_detector(config)
    assert len(calls) == 2


def test_get_detector_reloads_when_the_config_changes(tiny_toxicity_model, fresh_cache, tmp_path):
    good = ToxicityConfig(
        checkpoint=tiny_toxicity_model.checkpoint, config_dir=tiny_toxicity_model.config_dir
    )
    bad = ToxicityConfig(checkpoint=str(tmp_path / "missing.ckpt"), config_dir=str(tmp_path))
    with pytest.raises(ToxicityModelUnavailable):
        get_detector(bad)
    first = get_detector(good)
    assert get_detector(good) is first


def test_run_toxicity_check_is_not_run_with_the_reason_when_no_model_loads(fresh_cache):
    result = run_toxicity_check(BENIGN, config=ToxicityConfig())
    assert result["status"] == "not_run"
    assert result["reason"].startswith("no toxicity model configured")


def test_run_toxicity_check_scores_with_a_loadable_model(tiny_toxicity_model, fresh_cache):
    config = ToxicityConfig(
        checkpoint=tiny_toxicity_model.checkpoint, config_dir=tiny_toxicity_model.config_dir
    )
    result = run_toxicity_check(TOXIC, config=config)
    assert result["status"] == "ok"
    assert result["overall"]["toxicity"] > 0.5


# --- the builder -----------------------------------------------------------------------------


def test_build_is_deterministic_for_a_seed(tmp_path):
    examples = load_examples()[::4]
    first = build_checkpoint(
        tmp_path / "a", examples=examples, encoder="tiny", epochs=2, seed=7, progress=False
    )
    second = build_checkpoint(
        tmp_path / "b", examples=examples, encoder="tiny", epochs=2, seed=7, progress=False
    )
    one = torch.load(first["checkpoint"], weights_only=False)["state_dict"]
    two = torch.load(second["checkpoint"], weights_only=False)["state_dict"]
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)
    tokenizers = [Path(b["config_dir"], "tokenizer.json").read_text() for b in (first, second)]
    assert tokenizers[0] == tokenizers[1]


def test_build_writes_the_files_detoxify_needs(tiny_toxicity_model):
    config = json.loads((Path(tiny_toxicity_model.config_dir) / "config.json").read_text())
    tokenizer = json.loads(
        (Path(tiny_toxicity_model.config_dir) / "tokenizer_config.json").read_text()
    )
    checkpoint = torch.load(tiny_toxicity_model.checkpoint, weights_only=False)
    assert config["num_labels"] == 7
    assert tokenizer["model_max_length"] <= config["max_position_embeddings"]
    args = checkpoint["config"]["arch"]["args"]
    assert args["model_type"] == tiny_toxicity_model.config_dir
    assert args["num_classes"] == 7
    assert checkpoint["config"]["dataset"]["args"]["classes"] == list(JIGSAW_UNBIASED_CLASSES)


def test_build_refuses_to_replace_a_config_dir_it_did_not_make(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_checkpoint(
            tmp_path, examples=load_examples()[:20], encoder="tiny", epochs=1, progress=False
        )
    assert (tmp_path / "config" / "precious.txt").read_text() == "keep me"


def test_build_requires_every_class_label(tmp_path):
    examples = [{"text": "hello", "labels": {"toxicity": 0}}]
    with pytest.raises(ValueError, match="no label for"):
        build_checkpoint(tmp_path, examples=examples, encoder="tiny", epochs=1, progress=False)


def test_checkpoint_moved_away_from_its_config_dir_is_unavailable(tiny_toxicity_model, tmp_path):
    # given a checkpoint whose model_type names a config dir that has since been removed
    checkpoint, config_dir = _copy_model(tiny_toxicity_model, tmp_path)
    shutil.rmtree(config_dir)
    with pytest.raises(ToxicityModelUnavailable) as caught:
        load_detector(
            model_name=None, checkpoint=checkpoint, config_dir=tiny_toxicity_model.config_dir
        )
    assert f"points at model_type {config_dir}, which does not exist" in caught.value.reason
