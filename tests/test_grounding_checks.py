"""The checks know the background a draft was written from: a long run of a supplied archive
passage is still held as a copy, and the finding says the model was given it; a short quote of
it is not; restating it is shown but never holds."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from generation.models import Draft
from review.lifecycle import DraftStatus
from review.models import ArchiveDocument, CheckResult, DraftEvent
from tests.factories import (
    ARCHIVE,
    FLOOD,
    HARBOUR,
    UNRELATED,
    make_archive,
    make_draft,
)
from tests.factories import checked as _checked

SENTENCES = re.split(r"(?<=\.) ", ARCHIVE[FLOOD]["text"])  # 11, 12, 16, 23 and 9 words
OWN = [
    "The chess club met in the town hall.",
    "Volunteers served tea all afternoon.",
    "Players of every age took part.",
]


# Checks start here as the generation app starts them when it saves a draft: the draft_created
# signal.
checked = functools.partial(_checked, announce=True)


def quoting(*numbers: int) -> str:
    """Own sentences, each followed by a quoted sentence of the flood story."""
    return " ".join(f'{OWN[i % 3]} "{SENTENCES[n]}"' for i, n in enumerate(numbers))


pytestmark = pytest.mark.usefixtures("fresh_indexes")


@pytest.fixture
def archive(cast: dict) -> Any:
    return make_archive(cast["newsroom"])


def supplied(draft: Draft, *numbers: int) -> Draft:
    """Record the documents as the background the draft was written from, as the worker does."""
    sources = []
    for number in numbers:
        doc = ArchiveDocument.objects.get(title=ARCHIVE[number]["title"])
        passage = doc.passages.order_by("number").first()
        sources.append(
            {
                "document_id": doc.pk,
                "passage_id": passage.pk,
                "title": doc.title,
                "start": passage.start,
                "end": passage.end,
                "score": 0.03,
                "text": passage.text,
            }
        )
    Draft.objects.filter(pk=draft.pk).update(background={"requested": 3, "sources": sources})
    draft.refresh_from_db()
    return draft


def result(draft: Draft, kind: str) -> CheckResult:
    return CheckResult.objects.filter(draft=draft, kind=kind).latest("pk")


def reasons(draft: Draft) -> list[str]:
    return (
        DraftEvent.objects.filter(draft=draft, action__in=["hold", "pass"])
        .latest("pk")
        .data["reasons"]
    )


def test_a_draft_copying_a_supplied_passage_is_held_and_says_it_was_supplied(
    cast: dict, archive: Any, hold_queue: list
) -> None:
    text = f"{UNRELATED}\n\n{ARCHIVE[HARBOUR]['text']}"
    draft = supplied(make_draft(cast["newsroom"], cast["bob"], text), HARBOUR)
    draft = checked(draft, hold_queue)
    assert draft.status == DraftStatus.HELD
    lexical = result(draft, "lexical")
    assert lexical.scores["best_source_supplied"] is True
    [match] = lexical.details["matches"]
    assert match["supplied"] is True
    assert lexical.details["sources"][0]["supplied"] is True
    assert all("(supplied background)" in s["label"] for s in lexical.spans)
    title = ARCHIVE[HARBOUR]["title"]
    assert any(
        r.startswith("Plagiarism: ") and f"{title} (supplied background)" in r
        for r in reasons(draft)
    ), reasons(draft)


def test_a_short_quote_of_a_supplied_passage_is_not_flagged_but_of_another_source_it_is(
    cast: dict, archive: Any, hold_queue: list
) -> None:
    text = quoting(2, 3)  # two quotes of 16 and 23 words
    # given: the same text, once written from the flood story, once not
    grounded = supplied(make_draft(cast["newsroom"], cast["bob"], text), FLOOD)
    plain = make_draft(cast["newsroom"], cast["bob"], text)
    # when
    grounded, plain = checked(grounded, hold_queue), checked(plain, hold_queue)
    # then: the quote is a third of the text, a copy of an archive source it was not given...
    plain_lexical = result(plain, "lexical")
    assert plain_lexical.scores["draft_share"] >= 0.2
    assert plain.status == DraftStatus.HELD
    assert any(r.startswith("Plagiarism") for r in reasons(plain))
    # ...and a quote of the background it was given
    lexical = result(grounded, "lexical")
    assert lexical.scores["matches"] == 0 and lexical.spans == []
    assert lexical.scores["draft_share"] == 0.0
    assert not any(r.startswith("Plagiarism") for r in reasons(grounded))
    # restating the supplied source is shown, labelled, and does not count
    semantic = result(grounded, "semantic")
    flood = [
        m
        for m in semantic.details["matches"]
        if m["source"].get("title") == ARCHIVE[FLOOD]["title"]
    ]
    assert flood and all(m["supplied"] and not m["counts"] for m in flood)
    assert grounded.status != DraftStatus.HELD, reasons(grounded)


def test_a_patchwork_of_short_quotes_of_a_supplied_passage_is_still_a_copy(
    cast: dict, archive: Any, hold_queue: list
) -> None:
    # every sentence of the story, each quoted alone: no run over 23 words, 71 words in all
    draft = supplied(make_draft(cast["newsroom"], cast["bob"], quoting(0, 1, 2, 3, 4)), FLOOD)
    draft = checked(draft, hold_queue)
    lexical = result(draft, "lexical")
    assert lexical.scores["best_source_supplied"] is True
    assert draft.status == DraftStatus.HELD
    assert any("(supplied background)" in r for r in reasons(draft)), reasons(draft)
