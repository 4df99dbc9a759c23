"""The labelled sets, end to end: each kind of draft is held or passed as it should be.

Sets (kept apart from any training data): ``bench/data/plagiarism_set.jsonl`` (copies at 100%,
10% edited, reordered and ~30% partial, unrelated texts; ``bench/make_plagiarism_set.py``),
``bench/data/paraphrases.jsonl`` (written by the default model; ``bench/make_paraphrases.py``),
``tests/data/toxicity_heldout.jsonl`` and ``tests/data/benign_package_summaries.jsonl``.
The benchmark runs the whole sets against a large archive; this runs a slice through the real
pipeline (database, indexes, MiniLM, the toxicity stand-in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generation.models import Draft
from review import tasks
from review.checks import toxicity_eval, toxicity_head
from review.lifecycle import DraftStatus
from review.policy import DEFAULT_TOXICITY_THRESHOLDS
from review.services import pipeline
from tests.factories import make_draft

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "data"
TESTS = ROOT / "tests" / "data"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _check(draft: Draft, held: list) -> Draft:
    pipeline.draft_checks_start(draft=draft)
    while held:
        item = held.pop(0)
        if isinstance(item, tuple) and len(item) == 2:
            tasks.draft_check(*item)
    draft.refresh_from_db()
    return draft


def _reasons(draft: Draft) -> list[str]:
    event = draft.events.filter(action__in=["hold", "pass"]).order_by("-pk").first()
    return (event.data or {}).get("reasons", []) if event else []


def test_copies_paraphrases_and_unrelated_texts_are_held_or_passed_as_labelled(
    cast: dict, hold_queue: list, settings: Any
) -> None:
    from review.services import embedding, imports
    from review.setup import sotu_rows

    # given: the default toxicity model (the stand-in; the suite's tiny one is a toy) and an
    # archive holding the sources of a slice of the set, and unrelated paragraphs
    settings.TOXICITY_CHECKPOINT = settings.TOXICITY_CONFIG_DIR = settings.TOXICITY_MODEL = ""
    cases = _lines(BENCH / "plagiarism_set.jsonl")
    copies = cases[:8]  # the kinds alternate: two each of copy, edited, reordered, partial
    assert sorted({c["kind"] for c in copies}) == ["copy", "edited", "partial", "reordered"]
    # (the 135M default model often drifts from its source; the first two are faithful; the
    # fourth restates its source loosely: no sentence reaches 0.8, three align at 0.7 or more)
    paraphrases = [_lines(BENCH / "paraphrases.jsonl")[i] for i in (0, 1, 3)]
    unrelated = [c for c in cases if c["kind"] == "unrelated"][:4]
    by_title = {r.fields["title"]: r for r in sotu_rows()}
    wanted = {c["source_title"] for c in copies} | {p["source_title"] for p in paraphrases}
    others = [r for t, r in by_title.items() if t not in wanted][:: len(by_title) // 20][:20]
    # paragraphs of other addresses, not imported: the same voice and topics, not paraphrase
    same_genre = [
        r.fields["text"]
        for t, r in list(by_title.items())[7 :: len(by_title) // 40]
        if t not in wanted and len(r.fields["text"].split()) >= 40
    ][:3]
    rows = [by_title[t] for t in sorted(wanted)] + others
    project = cast["newsroom"]
    imports.import_rows_direct(project=project, rows=rows, source_name="labelled slice")
    while embedding.passages_embed(project_id=project.pk):
        pass
    bob = cast["bob"]
    # when / then: every copy is held for plagiarism, naming its true source first
    for case in copies:
        draft = _check(make_draft(project, bob, case["text"]), hold_queue)
        lexical = draft.checks.get(kind="lexical")
        assert draft.status == DraftStatus.HELD, (case["kind"], _reasons(draft))
        assert any(r.startswith("Plagiarism") for r in _reasons(draft)), case["kind"]
        assert lexical.scores["best_source"] == case["source_title"], case["kind"]
        if case["kind"] == "partial":
            assert 0.2 <= lexical.scores["draft_share"] <= 0.5
            [first, *_] = lexical.details["matches"]
            assert first["draft_spans"] and first["source_spans"]  # aligned side by side
    # the default model's paraphrases are held (for copying or for paraphrase)
    for case in paraphrases:
        draft = _check(make_draft(project, bob, case["paraphrase"]), hold_queue)
        assert any(r.startswith(("Plagiarism", "Paraphrase")) for r in _reasons(draft)), case
        semantic_check = draft.checks.get(kind="semantic")
        if any(r.startswith("Paraphrase") for r in _reasons(draft)):
            # judged per source: the true source leads, its aligned pairs are shown
            assert semantic_check.scores["best_source"] == case["source_title"]
            assert semantic_check.scores["source_share"] >= 0.25
            assert semantic_check.details["sources"][0]["title"] == case["source_title"]
            assert any(
                m["counts"] and m["source"].get("sentence")
                for m in semantic_check.details["matches"]
            )
    # ...but paragraphs of other addresses on the same topics pass
    for text in same_genre:
        draft = _check(make_draft(project, bob, text), hold_queue)
        assert draft.status == DraftStatus.AWAITING_REVIEW, _reasons(draft)
    # unrelated texts pass
    for case in unrelated:
        draft = _check(make_draft(project, bob, case["text"]), hold_queue)
        assert draft.status == DraftStatus.AWAITING_REVIEW, _reasons(draft)


def test_the_toxicity_stand_in_on_the_held_out_sets() -> None:
    # given: the committed stand-in and the held-out labelled sentences
    thresholds = DEFAULT_TOXICITY_THRESHOLDS
    detector = toxicity_head.get_head_detector()
    toxic_and_news = toxicity_eval.read_labelled(
        TESTS / "toxicity_heldout.jsonl", known=toxicity_head.CATEGORIES
    )
    packages = toxicity_eval.read_labelled(
        TESTS / "benign_package_summaries.jsonl", known=toxicity_head.CATEGORIES
    )
    # when: scored at the default thresholds
    hard = toxicity_eval.evaluate(
        toxicity_eval.score_rows(detector, toxic_and_news),
        toxic_and_news,
        DEFAULT_TOXICITY_THRESHOLDS,
    )
    benign = toxicity_eval.evaluate(
        toxicity_eval.score_rows(detector, packages), packages, thresholds
    )
    # then: threats, insults, obscenity and identity attacks are caught; news passes
    assert hard["recall"] >= 0.9
    for category in ("threat", "insult", "obscene", "identity_attack"):
        assert hard["categories"][category]["recall"] >= 0.85, category
    assert hard["false_hold_rate"] <= 0.1
    assert benign["false_hold_rate"] <= 0.01
    scores = detector.score_texts(["Police said the attack killed three people."])[0]
    assert all(v < DEFAULT_TOXICITY_THRESHOLDS[c] for c, v in scores.items())


def test_toxicity_eval_prints_figures_per_category_and_names_a_bad_field(
    db: None, tmp_path: Path, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.TOXICITY_CHECKPOINT = settings.TOXICITY_CONFIG_DIR = settings.TOXICITY_MODEL = ""
    # given: an admin's own labelled file
    good = tmp_path / "mine.jsonl"
    good.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"text": "I will kill you and your family tonight.", "label": "threat"},
                {"text": "You are a worthless idiot.", "label": "insult"},
                {"text": "Police said the attack killed three people.", "label": "none"},
                {"text": "Fresh bread delivered to your door.", "label": "not toxic"},
            ]
        )
    )
    # when: evaluated at the default thresholds
    out = StringIO()
    call_command("toxicity_eval", str(good), stdout=out)
    text = out.getvalue()
    # then: the model (a stand-in, said so), overall and per-category figures
    assert "contentstudio-toxicity-head sha256:" in text and "(stand-in)" in text
    assert "overall: precision 1.000  recall 1.000  false-hold rate 0.000" in text
    assert any(line.startswith("threat ") and "1.000" in line for line in text.splitlines())
    # and a bad label is refused naming the line and the field
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hello", "label": "rude"}\n')
    with pytest.raises(CommandError, match='line 1: field "label"'):
        call_command("toxicity_eval", str(bad), stdout=StringIO())


def test_the_toxicity_stand_in_passes_the_default_models_drafts_of_the_starter_templates() -> None:
    from review.checks import toxicity

    # given: the drafts the default model wrote from the starter templates (never trained on),
    # news about shootings, fighting and a murder charge among them
    drafts = _lines(BENCH / "template_drafts.jsonl")
    assert {d["template"] for d in drafts} == {"news_report", "ad_copy", "article"}
    detector = toxicity_head.get_head_detector()
    # when: each is checked as the pipeline checks a draft (whole text and every sentence)
    held = [
        d
        for d in drafts
        if any(
            score >= DEFAULT_TOXICITY_THRESHOLDS[category]
            for category, score in toxicity.check_toxicity(d["text"], detector)["overall"].items()
        )
    ]
    # then: at most the 6 of 84 held when the committed head was measured. The goal
    # (at most 1% of harmless texts held) is NOT met by the stand-in yet: this bound guards
    # against a head that does worse, it does not say the drafts pass as they should.
    assert len(held) <= 6, [d["text"][:80] for d in held]
    # ...and most news drafts about shootings, fighting and a murder charge do pass
    news = [d for d in drafts if d["template"] == "news_report"]
    assert sum(d in held for d in news) <= 3


def test_the_stand_in_refuses_to_train_on_a_held_out_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a training file that contains a sentence of the starter-template drafts
    leaked = toxicity_eval.read_labelled(
        BENCH / "template_drafts.jsonl", known=toxicity_head.CATEGORIES
    )[0]["text"]
    train = tmp_path / "train.jsonl"
    labels = dict.fromkeys(toxicity_head.CATEGORIES, 0)
    train.write_text(json.dumps({"text": leaked, "labels": labels}) + "\n", encoding="utf-8")
    monkeypatch.setattr(toxicity_head, "TRAIN_FILES", (train,))
    # when / then: training stops before it reads anything else, naming the text
    with pytest.raises(ValueError, match="held-out set"):
        toxicity_head.training_texts()


def test_the_default_thresholds_are_the_ones_calibrate_chooses() -> None:
    # given: the committed stand-in and its calibration set (neither trained nor evaluated on)
    detector = toxicity_head.get_head_detector()
    # when: thresholds are chosen on the calibration set
    chosen = toxicity_head.calibrate(detector)
    # then: they are the policy's defaults, and none of its harmless texts is held by them
    assert chosen["thresholds"] == DEFAULT_TOXICITY_THRESHOLDS
    assert chosen["false_hold_rate"] == 0.0 and chosen["recall"] >= 0.9


def test_training_keeps_the_calibration_and_template_draft_sets_apart() -> None:
    held_out = toxicity_head.held_out_texts()
    for path in toxicity_head.CALIBRATION_FILES:
        first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["text"]
        assert first in held_out, path.name
    texts, labels, _ = toxicity_head.training_texts(negatives=50, short_negatives=10, docstrings=10)
    assert not set(texts) & held_out
    # the training drafts (other template inputs) and their sentences are harmless examples
    drafts = toxicity_eval.read_labelled(
        toxicity_head.DATA_DIR / "toxicity_train_drafts.jsonl", known=toxicity_head.CATEGORIES
    )
    row = texts.index(drafts[0]["text"])
    assert not labels[row].any()
