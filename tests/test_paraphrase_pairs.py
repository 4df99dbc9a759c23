"""The paraphrase pair classifier: its features, its committed weights, and its use in routing."""

from __future__ import annotations

import json
import math

from review import holds
from review.checks.semantic import pairs
from review.tools import train_paraphrase_pairs as train

POLICY = holds.PolicyView(
    toxicity_thresholds=holds.DEFAULT_TOXICITY_THRESHOLDS,
    lexical_threshold=holds.DEFAULT_LEXICAL_THRESHOLD,
    semantic_threshold=holds.DEFAULT_SEMANTIC_THRESHOLD,
    semantic_share=holds.DEFAULT_SEMANTIC_SHARE,
    semantic_source_share=holds.DEFAULT_SEMANTIC_SOURCE_SHARE,
    blocking_rule_kinds=holds.DEFAULT_BLOCKING_RULE_KINDS,
)

SOURCE = [
    "In 1962 President Kennedy asked Congress for $500 million to build dams in Oregon.",
    "The Bonneville project would bring power to 40,000 farms along the Columbia River.",
    "Work began that spring and the Army Corps of Engineers finished it in 1967.",
    "Senators from Idaho later asked for a second dam.",
]
# A restatement: same names and numbers, the source's order.
PARAPHRASE = [
    "Kennedy went to Congress in 1962 seeking $500 million for Oregon dams.",
    "Power from the Bonneville project was meant for 40,000 farms by the Columbia River.",
    "The Army Corps of Engineers started that spring and was done by 1967.",
]
# Same genre, same topic words, another story: what a State of the Union paragraph meets.
SAME_GENRE = [
    "We must build a stronger economy for every family in America.",
    "Our farmers deserve fair prices and a government that listens.",
    "Tonight I ask this Congress to act on energy for our farms.",
    "Together we will meet the challenges of a new century.",
]


def alignment(draft: list[str], source: list[str], order: list[int], score: float) -> tuple:
    checked = len(draft)
    aligned_pairs = [(draft[i], source[n], n) for i, n in enumerate(order)]
    a = {
        "source": "Kennedy dams",
        "draft_sentences": len(order),
        "draft_share": round(len(order) / checked, 4),
        "source_sentences": len(set(order)),
        "source_share": round(len(set(order)) / len(source), 4),
        "mean_score": score,
        "pairs": [
            {"key": f"a:1#{n}", "score": score, "draft_start": i, "draft_end": i + 1}
            for i, n in enumerate(order)
        ],
    }
    return a, aligned_pairs


def outcome(a: dict, aligned_pairs: list, checked: int) -> dict:
    lead = holds.semantic_lead_scores(
        [a], POLICY, features=lambda x: pairs.pair_features(x, aligned_pairs)
    )
    return {
        "kind": "semantic",
        "status": "ok",
        "scores": {
            "paraphrased_sentences": a["draft_sentences"],
            "sentences_checked": checked,
            "paraphrased_share": a["draft_share"],
            **lead,
        },
    }


def test_features_see_shared_names_numbers_words_and_order() -> None:
    a, aligned_pairs = alignment(PARAPHRASE, SOURCE, [0, 1, 2], 0.84)
    f = pairs.pair_features(a, aligned_pairs)
    assert f["entity_overlap"] >= 0.8 and f["content_overlap"] >= 0.4
    assert f["in_order"] == 1.0 and f["source_share"] == 0.75
    b, other = alignment(PARAPHRASE, SOURCE, [2, 1, 0], 0.84)
    assert pairs.pair_features(b, other)["in_order"] == round(1 / 3, 4)
    c, unrelated = alignment(SAME_GENRE[:2], SOURCE, [1, 3], 0.72)
    g = pairs.pair_features(c, unrelated)
    assert g["entity_overlap"] == 0.0 and g["content_overlap"] < f["content_overlap"]


def test_a_paraphrase_is_held_and_a_same_genre_pair_with_the_same_shares_is_not() -> None:
    a, aligned_pairs = alignment(PARAPHRASE, SOURCE, [0, 1, 2], 0.84)
    held = outcome(a, aligned_pairs, checked=3)
    assert held["scores"]["pair_probability"] >= held["scores"]["pair_threshold"]
    [reason] = holds.route([held], POLICY)
    assert "paraphrase probability" in reason and "names/numbers" in reason
    assert "in order 100%" in reason
    # Same-genre: two of four sentences aligned with two of the source's four: the shares
    # (50%, 50%) clear the policy's floors, but the words, names and order say otherwise.
    c, unrelated = alignment(SAME_GENRE, SOURCE, [3, 1], 0.72)
    c["draft_share"] = 0.5
    passed = outcome(c, unrelated, checked=4)
    assert holds._restates_enough(c["draft_share"], c["source_share"], POLICY)
    assert passed["scores"]["pair_probability"] < passed["scores"]["pair_threshold"]
    assert holds.route([passed], POLICY) == []


def test_the_policy_shares_stay_floors_under_the_classifier() -> None:
    a, aligned_pairs = alignment(PARAPHRASE, SOURCE, [0], 0.9)
    a["draft_share"] = round(1 / 6, 4)
    low = outcome(a, aligned_pairs, checked=6)  # one of six draft sentences: under 30%
    assert low["scores"]["source_draft_share"] < POLICY["semantic_share"]
    assert holds.route([low], POLICY) == []


def test_the_weights_load_from_the_committed_file_with_their_provenance() -> None:
    model = json.loads(pairs.WEIGHTS_PATH.read_text("utf-8"))
    assert pairs.load_model() == model
    assert model["features"] == list(pairs.FEATURES)
    assert len(model["coef"]) == len(pairs.FEATURES)
    assert 0.5 <= model["threshold"] < 1.0
    assert 0.5 <= model["align_threshold"] <= holds.DEFAULT_SEMANTIC_THRESHOLD
    provenance = model["provenance"]
    assert provenance["data"] == "review/tools/data/paraphrase_pairs_dev.jsonl"
    assert provenance["split"].startswith("dev only")
    # the probability is the committed weights': one scale above the mean on the cosine
    f = dict(zip(model["features"], model["mean"], strict=True))
    f["mean_score"] += model["scale"][0]
    z = model["intercept"] + model["coef"][0]
    assert pairs.probability(f) == round(1 / (1 + math.exp(-z)), 4)


def test_refitting_the_committed_dev_table_gives_the_committed_weights() -> None:
    table = [json.loads(x) for x in train.TABLE.read_text("utf-8").splitlines() if x.strip()]
    assert {r["label"] for r in table} == {-1, 0, 1}  # drifted outputs: reported, not fitted
    first, second = train.fit(table), train.fit(table)
    assert first == second
    assert first == json.loads(pairs.WEIGHTS_PATH.read_text("utf-8"))


def test_whole_text_features_see_how_much_of_the_source_the_draft_covers() -> None:
    a, aligned_pairs = alignment(PARAPHRASE[:1], SOURCE, [0], 0.8)
    whole = " ".join(SOURCE)
    covered = pairs.pair_features(
        a, aligned_pairs, draft_text=" ".join(PARAPHRASE), source_text=whole
    )
    alone = pairs.pair_features(a, aligned_pairs, draft_text=PARAPHRASE[0], source_text=whole)
    assert covered["source_coverage"] > alone["source_coverage"] > 0
    assert covered["source_entities"] > alone["source_entities"]
    assert covered["max_score"] == 0.8
    c, unrelated = alignment(SAME_GENRE[:2], SOURCE, [1, 3], 0.72)
    g = pairs.pair_features(c, unrelated, draft_text=" ".join(SAME_GENRE), source_text=whole)
    assert g["source_coverage"] < covered["source_coverage"]
    assert g["source_entities"] < alone["source_entities"]  # "Congress" alone


def test_the_classifier_aligns_at_its_own_threshold_never_above_the_policys() -> None:
    own = pairs.load_model()["align_threshold"]
    assert pairs.align_threshold(0.7, classifier=False) == 0.7
    assert pairs.align_threshold(0.7, classifier=True) == min(0.7, own)
    assert pairs.align_threshold(0.5, classifier=True) == 0.5


def test_the_dev_paraphrases_are_apart_from_the_test_split() -> None:
    """The dev split (a third process) shares no source with the test split and near-duplicates
    no test source or output (the project's guard)."""
    from review.tools.splits import near_duplicates

    data = train.ROOT / "bench" / "data"

    def rows(name: str) -> list[dict]:
        return [json.loads(x) for x in (data / name).read_text("utf-8").splitlines() if x]

    dev = rows("paraphrases_dev.jsonl")
    test = rows("paraphrases_test.jsonl") + rows("paraphrases_test_b.jsonl")
    assert sum(p["is_paraphrase"] for p in dev) >= 100
    assert not {p["source_title"] for p in dev} & {p["source_title"] for p in test}
    test_texts = [p["source_text"] for p in test] + [p["paraphrase"] for p in test]
    sources = sorted({p["source_text"] for p in dev})
    assert near_duplicates(sources, test_texts) == []
    assert near_duplicates([p["paraphrase"] for p in dev if p["is_paraphrase"]], test_texts) == []
    # Every dev text the classifier's table keeps (drifted outputs too) is apart as well.
    table = [json.loads(x) for x in train.TABLE.read_text("utf-8").splitlines() if x.strip()]
    assert near_duplicates([r["text"] for r in table], test_texts) == []
