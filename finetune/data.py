"""Where a run's texts come from (the archive, approved drafts, edit pairs), and the word diff
of an edit pair.

The fine-tuning app sits above generation and review and imports both; neither knows it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from datetime import date
from typing import TypedDict

from django.db.models import QuerySet

from contentstudio.html import html_to_text
from finetune.models import EditPair
from finetune.training.examples import Example
from generation.models import Draft
from review.lifecycle import DraftStatus
from review.models import ArchiveDocument

# A draft counts as approved from approval on, also once published (or withdrawn again).
APPROVED_STATES = frozenset({DraftStatus.APPROVED, DraftStatus.PUBLISHED, DraftStatus.UNPUBLISHED})


class DataSpec(TypedDict, total=False):
    archive: bool  # the project's archive documents (plain continuation text)
    drafts: bool  # approved / published drafts' final text (plain continuation text)
    pairs: bool  # (prompt -> editor's final text) pairs, the prompt not learned
    template_id: int | None  # drafts and pairs of this template only
    date_from: str  # ISO dates, inclusive; archive by published date, drafts by creation
    date_to: str


def _dates(spec: DataSpec) -> tuple[date | None, date | None]:
    start = date.fromisoformat(spec["date_from"]) if spec.get("date_from") else None
    end = date.fromisoformat(spec["date_to"]) if spec.get("date_to") else None
    return start, end


def _narrowed(queryset: QuerySet, spec: DataSpec, *, created: str) -> QuerySet:
    """``queryset`` limited to the spec's template and its dates (``created``: the date field)."""
    start, end = _dates(spec)
    if spec.get("template_id"):
        queryset = queryset.filter(template_version__template_id=spec["template_id"])
    if start:
        queryset = queryset.filter(**{f"{created}__date__gte": start})
    if end:
        queryset = queryset.filter(**{f"{created}__date__lte": end})
    return queryset.order_by("pk")


def approved_drafts(*, project_id: int, spec: DataSpec) -> QuerySet[Draft]:
    drafts = Draft.objects.filter(project_id=project_id, status__in=APPROVED_STATES)
    return _narrowed(drafts, spec, created="created_at")


def edit_pairs(*, project_id: int, spec: DataSpec) -> QuerySet[EditPair]:
    return _narrowed(EditPair.objects.filter(project_id=project_id), spec, created="approved_at")


def examples(*, project_id: int, spec: DataSpec) -> list[Example]:
    """Every text the run's data selection names, in a stable order (the split shuffles it with
    the run's seed)."""
    out: list[Example] = []
    start, end = _dates(spec)
    if spec.get("archive"):
        documents = ArchiveDocument.objects.filter(project_id=project_id)
        if start:
            documents = documents.filter(published_date__gte=start)
        if end:
            documents = documents.filter(published_date__lte=end)
        for pk, text in documents.order_by("pk").values_list("pk", "text").iterator():
            out.append(Example(text=text, source=f"archive:{pk}"))
    if spec.get("drafts"):
        for pk, body in approved_drafts(project_id=project_id, spec=spec).values_list("pk", "body"):
            out.append(Example(text=html_to_text(body), source=f"draft:{pk}"))
    if spec.get("pairs"):
        for pair in edit_pairs(project_id=project_id, spec=spec).iterator():
            out.append(Example(text=pair.final_text, prompt=pair.prompt, source=f"pair:{pair.pk}"))
    return out


# --- Edit pairs -------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\S+")


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def word_diff(old: str, new: str) -> tuple[list[list[str]], int]:
    """The word diff as [["=", text], ["-", text], ["+", text]] runs (enough to show and to
    learn from), and its edit distance in words: words inserted plus words deleted, a run of n
    words replaced by m counting max(n, m). That is Levenshtein's distance over the diff's
    alignment, at the cost of one SequenceMatcher pass (an exact word-level Levenshtein is
    quadratic in Python: docs/finetune.md)."""
    a, b = words(old), words(new)
    out: list[list[str]] = []
    distance = 0
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(["=", " ".join(a[i1:i2])])
            continue
        distance += max(i2 - i1, j2 - j1)
        if i2 > i1:
            out.append(["-", " ".join(a[i1:i2])])
        if j2 > j1:
            out.append(["+", " ".join(b[j1:j2])])
    return out, distance


class PairRecord(TypedDict):
    id: int
    draft_id: int
    model: str
    template: str | None
    approved_at: str
    prompt: str
    completion: str
    model_output: str
    edit_distance: int
    edit_ratio: float
    diff: list[list[str]]


def pair_records(pairs: QuerySet[EditPair]) -> Iterator[PairRecord]:
    """One JSON Lines record per pair: ``prompt``/``completion`` as supervised fine-tuning tools
    expect them, with the model's output and the diff beside them."""
    for pair in pairs.select_related("template_version__template").iterator():
        version = pair.template_version
        yield PairRecord(
            id=pair.pk,
            draft_id=pair.draft_id,
            model=pair.model_name,
            template=(f"{version.template.name} v{version.number}" if version else None),
            approved_at=pair.approved_at.isoformat(),
            prompt=pair.prompt,
            completion=pair.final_text,
            model_output=pair.model_output,
            edit_distance=pair.edit_distance,
            edit_ratio=pair.edit_ratio,
            diff=pair.diff,
        )
