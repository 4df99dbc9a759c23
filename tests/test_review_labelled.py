"""The labelled sets, end to end: each kind of draft is held or passed as it should be.

Sets (kept apart from any training data): ``bench/data/plagiarism_set.jsonl`` (copies at 100%,
10% edited, reordered and ~30% partial, unrelated texts; ``bench/make_plagiarism_set.py``),
``bench/data/paraphrases.jsonl`` (dev) and ``paraphrases_test.jsonl`` (test, another process),
the toxicity test split (``train_toxicity_head.TEST_FILES``), kept apart from training and
calibration by the near-duplicate guard (``review.tools.splits``).
The benchmark runs the whole sets against a large archive; this runs a slice through the real
pipeline (database, indexes, MiniLM, the toxicity stand-in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generation.models import Draft
from review.checks.toxicity import head as toxicity_head
from review.holds import DEFAULT_TOXICITY_THRESHOLDS
from review.lifecycle import DraftStatus
from review.tools import splits, toxicity_eval, train_toxicity_head
from tests.factories import checked, make_draft

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "data"
TESTS = ROOT / "tests" / "data"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


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
        draft = checked(make_draft(project, bob, case["text"]), hold_queue)
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
        draft = checked(make_draft(project, bob, case["paraphrase"]), hold_queue)
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
        draft = checked(make_draft(project, bob, text), hold_queue)
        assert draft.status == DraftStatus.AWAITING_REVIEW, _reasons(draft)
    # unrelated texts pass
    for case in unrelated:
        draft = checked(make_draft(project, bob, case["text"]), hold_queue)
        assert draft.status == DraftStatus.AWAITING_REVIEW, _reasons(draft)


@pytest.fixture(scope="module")
def test_split_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The committed stand-in measured now on the test split (what ``measure`` writes)."""
    out = tmp_path_factory.mktemp("head") / "toxicity_head.json"
    return train_toxicity_head.measure_head(toxicity_head.get_head_detector(), out=out)


def test_the_stand_in_shows_the_figures_its_weights_measure_on_the_test_split(
    test_split_figures: dict[str, Any],
) -> None:
    # given: the committed head and the figures committed beside it (the stand-in label)
    committed = toxicity_head.load_metrics()
    # when: the head is measured again on the test split (never trained or calibrated on)
    measured = test_split_figures
    # then: the label shows exactly what the weights measure, on a set of the size
    assert measured == committed
    assert measured["measured_on"] == [p.name for p in train_toxicity_head.TEST_FILES]
    assert measured["toxic"] >= 200
    low, high = splits.wilson(round(measured["recall"] * measured["toxic"]), measured["toxic"])
    assert measured["recall_ci95"] == [round(low, 4), round(high, 4)]
    # and news about crime and war passes
    scores = toxicity_head.get_head_detector().score_texts(
        ["Police said the attack killed three people."]
    )[0]
    assert all(v < DEFAULT_TOXICITY_THRESHOLDS[c] for c, v in scores.items())


def test_the_stand_in_holds_at_most_one_harmless_test_text_in_a_hundred(
    test_split_figures: dict[str, Any],
) -> None:
    # the goal of the issue, on the test split: harmless news and ad sentences, package
    # summaries and the default model's drafts of briefs no calibration used
    assert test_split_figures["harmless"] >= 600
    assert test_split_figures["false_hold_rate"] <= 0.01


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


def test_the_default_models_unseen_drafts_are_held_at_most_one_in_a_hundred() -> None:
    from review.checks import toxicity

    # given: 300 drafts the default model wrote from briefs that no training or calibration
    # step used (news about shootings, war and disasters among them)
    drafts = _lines(BENCH / "unseen_drafts.jsonl")
    assert {d["template"] for d in drafts} == {"news_report", "ad_copy", "article"}
    assert len(drafts) >= 300
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
    # then: the goal, counted here, not read from a file
    assert len(held) / len(drafts) <= 0.01, [d["text"][:80] for d in held]


def test_the_near_duplicate_guard_catches_reworded_and_reordered_copies() -> None:
    # given: the leak the issue found, a reordered copy, and sentences that merely share words
    leak = (
        "Damn, this fucking app crashes every time.",
        "This damn app crashes every fucking time.",
    )
    unrelated = ("Police said the attack killed three people.", "Fresh bread delivered daily.")
    # when / then: the reworded pair is a near duplicate (every word shared), the others not
    assert splits.jaccard(*leak) == 1.0
    assert splits.jaccard(*leak, k=3) < 0.4  # longer shingles alone would miss it
    assert [tuple(p)[:2] for p in splits.near_duplicates([leak[0]], [*unrelated, leak[1]])] == [
        (0, 2)
    ]
    assert splits.near_duplicates(list(unrelated[:1]), list(unrelated[1:])) == []
    # and the check between named splits names both texts
    [(first, text, second, other, score)] = splits.check_apart(
        {"train": [leak[0], unrelated[1]], "test": [leak[1], unrelated[0]]}
    )
    assert (first, text, second, other, score) == ("train", leak[0], "test", leak[1], 1.0)


def test_the_shipped_toxicity_splits_are_apart() -> None:
    # train (labelled files and the State of the Union sentences drawn as negatives),
    # calibration (dev) and test: no near duplicate crosses them
    assert train_toxicity_head.splits_apart() == []


def test_the_shipped_paraphrase_splits_are_apart() -> None:
    dev = _lines(BENCH / "paraphrases.jsonl")
    test = _lines(BENCH / "paraphrases_test.jsonl") + _lines(BENCH / "paraphrases_test_b.jsonl")
    assert sum(bool(p["is_paraphrase"]) for p in test) >= 100
    # other source paragraphs, other process
    assert not {p["source_title"] for p in dev} & {p["source_title"] for p in test}
    assert {p["settings"] for p in dev}.isdisjoint({p["settings"] for p in test})
    assert (
        splits.check_apart(
            {
                "dev": [p["paraphrase"] for p in dev] + [p["source_text"] for p in dev],
                "test": [p["paraphrase"] for p in test] + [p["source_text"] for p in test],
            }
        )
        == []
    )


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
    monkeypatch.setattr(train_toxicity_head, "TRAIN_FILES", (train,))
    # when / then: training stops before it reads anything else, naming the text
    with pytest.raises(ValueError, match="held-out set"):
        train_toxicity_head.training_texts()


def test_the_default_thresholds_are_the_ones_calibrate_chooses_on_dev() -> None:
    # given: the committed stand-in and the whole dev split (never trained or measured on)
    detector = toxicity_head.get_head_detector()
    # when: thresholds are chosen there within the budgets (``calibrate --candidate``)
    chosen = train_toxicity_head.calibrate_candidate(detector)
    # then: they are the policy's defaults, within both budgets
    assert chosen["thresholds"] == DEFAULT_TOXICITY_THRESHOLDS
    assert chosen["false_hold_rate"] <= train_toxicity_head.DEV_FALSE_HOLD_BUDGET
    drafts_held = sum(
        int(chosen["harmless_held_per_file"][name].split("/")[0])
        for name in train_toxicity_head.DEV_DRAFT_FILES
    )
    drafts = sum(
        int(chosen["harmless_held_per_file"][name].split("/")[1])
        for name in train_toxicity_head.DEV_DRAFT_FILES
    )
    assert drafts_held <= train_toxicity_head.DEV_DRAFT_HOLD_BUDGET * drafts


def test_thresholds_are_lowered_where_they_hold_toxic_texts_within_the_false_hold_budget() -> None:
    import numpy as np

    # given: four toxic texts (two score only on threat, one only on insult, one nowhere) and
    # harmless texts, one of which scores high on insult
    columns = {c: i for i, c in enumerate(toxicity_head.CATEGORIES)}
    scores = np.zeros((8, len(columns)))
    scores[0, columns["threat"]] = scores[1, columns["threat"]] = 0.62
    scores[2, columns["insult"]] = 0.71
    scores[4, columns["insult"]] = 0.80  # harmless
    scores[5, columns["threat"]] = 0.2  # harmless, under the floor
    toxic = np.array([True] * 4 + [False] * 4)
    # when: thresholds are chosen with no harmless text allowed over them, then with one
    strict = train_toxicity_head.choose_thresholds(scores, toxic, budget=0)
    loose = train_toxicity_head.choose_thresholds(scores, toxic, budget=1)
    # then: threat drops to the step under the toxic texts; insult stays over the harmless
    # text's score (plus the margin) unless the budget allows holding it; a category that holds
    # no more toxic texts lower stays at the ceiling
    assert strict["threat"] == 0.6 and strict["insult"] == train_toxicity_head.CANDIDATE_CEILING
    assert loose["insult"] == 0.7 and loose["threat"] == 0.6
    assert strict["toxicity"] == loose["toxicity"] == train_toxicity_head.CANDIDATE_CEILING
    # and when the harmless text over insult is of a genre allowed none (the default model's
    # drafts), the pooled budget of one no longer lets insult hold it
    genre = np.array([False] * 4 + [True] + [False] * 3)
    kept = train_toxicity_head.choose_thresholds(
        scores, toxic, budget=1, genre=genre, genre_budget=0
    )
    assert kept["insult"] == train_toxicity_head.CANDIDATE_CEILING and kept["threat"] == 0.6


def test_training_keeps_the_calibration_and_template_draft_sets_apart() -> None:
    held_out = train_toxicity_head.held_out_texts()
    for path in train_toxicity_head.CALIBRATION_FILES:
        first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["text"]
        assert first in held_out, path.name
    texts, labels, _ = train_toxicity_head.training_texts(
        negatives=50, short_negatives=10, docstrings=10
    )
    assert not set(texts) & held_out
    # the training drafts (other template inputs) and their sentences are harmless examples
    drafts = toxicity_eval.read_labelled(
        train_toxicity_head.DATA_DIR / "toxicity_train_drafts.jsonl", known=toxicity_head.CATEGORIES
    )
    row = texts.index(drafts[0]["text"])
    assert not labels[row].any()
