"""Precision, recall and false-hold rate of a toxicity model on a labelled file.

Plain functions (no ORM), used by ``manage.py toxicity_eval``, the training of the offline head
and ``bench/bench_toxicity.py``. A labelled line is ``{"text": ..., "label": L}`` where ``L`` is a
category name (``threat``, ``insult``...), ``toxic`` (some category, unspecified) or ``none`` /
``not toxic``; ``{"labels": {category: 0/1}}`` (Detoxify's training format) works too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from review.checks.toxicity import check_toxicity

HARMLESS = {"none", "not toxic", "not_toxic", "harmless", "ok", "0", "false"}
TOXIC = {"toxic", "1", "true"}


class LabelledText(TypedDict):
    text: str
    categories: frozenset[str]  # empty: harmless; {"toxic"}: toxic, category unspecified


class CategoryFigures(TypedDict):
    labelled: int
    precision: float | None
    recall: float | None  # of texts labelled with it: share held (for any category)
    category_recall: float | None  # of texts labelled with it: share over its own threshold
    false_hold_rate: float | None  # of harmless texts: share over this category's threshold


class Evaluation(TypedDict):
    texts: int
    harmless: int
    toxic: int
    recall: float | None
    precision: float | None
    false_hold_rate: float | None
    categories: dict[str, CategoryFigures]


def read_labelled(path: str | Path, *, known: Iterable[str]) -> list[LabelledText]:
    """Read a JSONL file; raises ValueError naming the line and the field that is wrong."""
    known = set(known)
    rows: list[LabelledText] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {number}: not JSON ({exc})") from exc
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f'line {number}: field "text" must be a string')
            rows.append(
                LabelledText(text=item["text"], categories=_categories(item, number, known))
            )
    if not rows:
        raise ValueError(f"{path} has no labelled lines")
    return rows


def _categories(item: Mapping[str, Any], number: int, known: set[str]) -> frozenset[str]:
    if isinstance(item.get("labels"), Mapping):
        return frozenset(k for k, v in item["labels"].items() if v and (k in known or k == "toxic"))
    label = item.get("label")
    if isinstance(label, bool | int):
        return frozenset({"toxic"}) if label else frozenset()
    if not isinstance(label, str):
        raise ValueError(f'line {number}: field "label" must be a category, "toxic" or "none"')
    value = label.strip().lower().replace(" ", "_") if label.strip().lower() not in HARMLESS else ""
    if not value:
        return frozenset()
    if value in TOXIC or value == "toxicity":
        return frozenset({"toxic"})
    if value not in known:
        raise ValueError(
            f'line {number}: field "label" is {label!r}; use one of {", ".join(sorted(known))},'
            ' "toxic" or "none"'
        )
    return frozenset({value})


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def evaluate(
    scores: Sequence[Mapping[str, float]],
    rows: Sequence[LabelledText],
    thresholds: Mapping[str, float],
) -> Evaluation:
    """Compare scores (one dict per row) with the labels at the given thresholds."""
    categories = sorted({c for s in scores for c in s})
    over = [{c for c in categories if s.get(c, 0.0) >= thresholds.get(c, 0.5)} for s in scores]
    harmless = [i for i, r in enumerate(rows) if not r["categories"]]
    toxic = [i for i, r in enumerate(rows) if r["categories"]]
    held = [i for i, o in enumerate(over) if o]
    figures: dict[str, CategoryFigures] = {}
    for category in categories:
        labelled = [i for i, r in enumerate(rows) if category in r["categories"]]
        flagged = [i for i, o in enumerate(over) if category in o]
        # A flag is right when the text is toxic in that category, or toxic unspecified.
        right = [i for i in flagged if rows[i]["categories"] & {category, "toxic"}]
        figures[category] = CategoryFigures(
            labelled=len(labelled),
            precision=_ratio(len(right), len(flagged)),
            recall=_ratio(sum(1 for i in labelled if over[i]), len(labelled)),
            category_recall=_ratio(sum(1 for i in labelled if category in over[i]), len(labelled)),
            false_hold_rate=_ratio(sum(1 for i in harmless if category in over[i]), len(harmless)),
        )
    return Evaluation(
        texts=len(rows),
        harmless=len(harmless),
        toxic=len(toxic),
        recall=_ratio(sum(1 for i in toxic if over[i]), len(toxic)),
        precision=_ratio(sum(1 for i in held if rows[i]["categories"]), len(held)),
        false_hold_rate=_ratio(sum(1 for i in harmless if over[i]), len(harmless)),
        categories=figures,
    )


def score_rows(detector: Any, rows: Sequence[LabelledText]) -> list[dict[str, float]]:
    """Each text scored as the check scores a draft: the maximum of the whole text and every
    sentence (``toxicity.check_toxicity``), so a labelled draft of several sentences is held
    here exactly when the policy would hold it. A one-sentence line is scored once."""
    return [check_toxicity(r["text"], detector)["overall"] for r in rows]
