"""Whether a draft paraphrases one source: a small pair classifier over several signals.

Decision: the sentence alignment (cosine of each draft sentence with its closest source
sentence, at the classifier's own alignment threshold, which may lie under the policy's: a loose
paraphrase restates sentences at lower cosines) says which sentences *might* restate a source;
whether the draft as a whole is a paraphrase of it is decided by a logistic regression over
signals that a same-genre paragraph on the same topic does not share with a paraphrase: the
alignment's cosines and shares, the content words and the names and numbers of the aligned
draft sentences found again in the source sentences they align with, whether the draft follows
the source's sentence order, and how much of the whole source's vocabulary and names the whole
draft covers (and how much of the draft's lies in the source).
The weights, the decision threshold and their provenance are in ``paraphrase_pair.json``,
fitted on the dev split only by ``review/tools/train_paraphrase_pairs.py``. Pure functions
(the JSON is read once).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

WEIGHTS_PATH = Path(__file__).with_name("paraphrase_pair.json")

FEATURES = (
    "mean_score",  # mean cosine of the aligned sentence pairs
    "draft_share",  # share of the draft's checked sentences aligned with this source
    "source_share",  # share of the source's sentences restated
    "aligned",  # log(1 + number of aligned pairs)
    "content_overlap",  # aligned draft sentences' content words found in their source sentences
    "entity_overlap",  # ... their names and numbers found there (0 when they have none)
    "in_order",  # longest run of pairs in the source's sentence order / pairs
    "max_score",  # the best aligned pair's cosine
    "source_coverage",  # the source's content words found anywhere in the draft
    "draft_precision",  # the draft's content words found anywhere in the source
    "source_entities",  # the source's names and numbers found in the draft (0 when none)
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|\d[\d,.]*")
_STOP = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "must",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "shall",
        "may",
        "might",
        "every",
        "many",
        "much",
        "one",
        "new",
        "let",
        "us",
    ]
)


def _stem(word: str) -> str:
    word = word.lower().strip("'-.,")
    for suffix in ("ies", "es", "s", "ing", "ed", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {
        _stem(w) for w in _WORD.findall(text) if w.lower() not in _STOP and not w[0].isdigit()
    } - {""}


def entities(text: str) -> set[str]:
    """Numbers and capitalised words that do not start a sentence (names, places, bodies)."""
    out: set[str] = set()
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        for i, w in enumerate(_WORD.findall(sentence)):
            if w[0].isdigit():
                out.add(w.rstrip(".,").replace(",", ""))
            elif i > 0 and w[0].isupper() and w.lower() not in _STOP:
                out.add(_stem(w))
    return out


def _longest_increasing(numbers: Sequence[int]) -> int:
    tails: list[int] = []
    for n in numbers:
        lo, hi = 0, len(tails)
        while lo < hi:
            mid = (lo + hi) // 2
            if tails[mid] < n:
                lo = mid + 1
            else:
                hi = mid
        tails[lo : lo + 1] = [n]
    return len(tails)


def _share(wanted: set[str], found: set[str]) -> float:
    return round(len(wanted & found) / len(wanted), 4) if wanted else 0.0


def pair_features(
    alignment: Mapping[str, Any],
    pairs: Sequence[tuple[str, str, int]],
    *,
    draft_text: str = "",
    source_text: str = "",
) -> dict[str, float]:
    """The classifier's features for one source of ``align_sources``'s output.

    ``pairs``: per aligned draft sentence, in draft order, its text, the text of the source
    sentence it aligns with and that sentence's number in the source. ``draft_text``: the
    whole draft; ``source_text``: the source's indexed text the alignment touches (its
    passages); either defaults to the aligned sentences alone.
    """
    draft = " ".join(d for d, _, _ in pairs)
    source = " ".join(s for _, s, _ in pairs)
    words, found = content_words(draft), content_words(source)
    names, found_names = entities(draft), entities(source)
    whole_draft = content_words(draft_text or draft)
    whole_source = content_words(source_text or source)
    scores = [float(m["score"]) for m in alignment.get("pairs", ())]
    return {
        "mean_score": float(alignment["mean_score"]),
        "draft_share": float(alignment["draft_share"]),
        "source_share": float(alignment["source_share"]),
        "aligned": round(math.log1p(len(pairs)), 4),
        "content_overlap": round(len(words & found) / len(words), 4) if words else 0.0,
        "entity_overlap": round(len(names & found_names) / len(names), 4) if names else 0.0,
        "in_order": round(_longest_increasing([n for _, _, n in pairs]) / len(pairs), 4)
        if pairs
        else 0.0,
        "max_score": round(max(scores, default=float(alignment["mean_score"])), 4),
        "source_coverage": _share(whole_source, whole_draft),
        "draft_precision": _share(whole_draft, whole_source),
        "source_entities": _share(
            entities(source_text or source),
            {_stem(w) for w in _WORD.findall(draft_text or draft)} | entities(draft_text or draft),
        ),
    }


@cache
def load_model(path: Path = WEIGHTS_PATH) -> dict[str, Any]:
    model = json.loads(path.read_text(encoding="utf-8"))
    if list(model["features"]) != list(FEATURES):
        raise ValueError(f"{path} was fitted on features {model['features']}, not {FEATURES}")
    return model


def probability(features: Mapping[str, float], model: Mapping[str, Any] | None = None) -> float:
    """The classifier's probability that the draft paraphrases the source."""
    model = model or load_model()
    z = float(model["intercept"])
    for name, mean, scale, weight in zip(
        model["features"], model["mean"], model["scale"], model["coef"], strict=True
    ):
        z += weight * (float(features[name]) - mean) / scale
    return round(1.0 / (1.0 + math.exp(-z)), 4)


def describe(features: Mapping[str, float]) -> str:
    """The features as the finding's reason shows them."""
    return (
        f"cosine {features['mean_score']:.2f}, {features['draft_share']:.0%} of the draft, "
        f"{features['source_share']:.0%} of the source, content words "
        f"{features['content_overlap']:.0%}, names/numbers {features['entity_overlap']:.0%}, "
        f"in order {features['in_order']:.0%}, source words covered "
        f"{features.get('source_coverage', 0.0):.0%}"
    )


def align_threshold(policy_threshold: float, *, classifier: bool) -> float:
    """The cosine at which draft sentences align with source sentences: the policy's threshold,
    or with the classifier on the lower of it and the classifier's own (fitted on dev: a loose
    paraphrase restates sentences under the policy's cosine, and the classifier's other
    signals keep same-genre text apart)."""
    if not classifier:
        return policy_threshold
    return min(policy_threshold, float(load_model()["align_threshold"]))
