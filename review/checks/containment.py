"""Containment per source: how much of a draft comes from one source, and how much of that
source it reuses. Pure functions over the lexical check's passage matches.

The lexical index works on passages (about 40-150 words of a document). A draft that takes 30%
of its text from one document inside new text may cover parts of two or three of its passages,
none of them above the passage threshold, and a different source with one short common phrase
may then rank first. Grouping the passage matches by the document (or published item) they
belong to gives the two figures an editor needs:

* ``draft_share``: the share of the draft's characters covered by passages copied from that
  source (aligned spans of at least ``min_span_words`` words);
* ``source_share``: the share of the source's words found in the draft (each passage's
  containment weighted by its length, over the whole source);

and sources are named in the order of ``draft_share``: the one the draft takes most from first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from review.checks.plagiarism.shingles import count_tokens

__all__ = ["MIN_SPAN_WORDS", "SourceContainment", "count_tokens", "group_by_source", "long_spans"]

# Aligned passages shorter than this are stray common phrases, not copying.
MIN_SPAN_WORDS = 8


class SourceContainment(TypedDict):
    source: str  # "doc:12" / "draft:4": the document or published item
    draft_share: float  # 0..1 of the draft's characters
    source_share: float  # 0..1 of the source's words
    best_passage_similarity: float  # percent, the best single passage (the old figure)
    passages: list[dict[str, Any]]  # the passage matches of this source, best first


def _union_length(spans: Sequence[Sequence[int]]) -> int:
    total, end = 0, -1
    for start, stop in sorted((int(s), int(e)) for s, e in spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def long_spans(text: str, spans: Sequence[Sequence[int]], *, min_words: int) -> list[list[int]]:
    """Spans of at least ``min_words`` words (a Han character counts as one, see
    ``shingles.count_tokens``)."""
    return [[s, e] for s, e in spans if count_tokens(text[s:e]) >= min_words]


def group_by_source(
    matches: Sequence[Mapping[str, Any]],
    *,
    draft_text: str,
    source_of: Callable[[str], str | None],
    passage_words: Mapping[str, int],
    source_words: Mapping[str, int],
    min_span_words: int = MIN_SPAN_WORDS,
) -> list[SourceContainment]:
    """Group passage matches (``LexicalMatch``-shaped) by source, best ``draft_share`` first.

    ``source_of(key)`` names the source of a passage key (None: skip it), ``passage_words`` and
    ``source_words`` give word counts. Matches of unknown sources are dropped.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for match in matches:
        source = source_of(match["key"])
        if source is not None:
            groups.setdefault(source, []).append(match)
    size = max(len(draft_text.strip()), 1)
    result: list[SourceContainment] = []
    for source, items in groups.items():
        spans = [
            span
            for m in items
            for span in long_spans(draft_text, m["draft_spans"], min_words=min_span_words)
        ]
        reused = sum(m["similarity"] / 100.0 * passage_words.get(m["key"], 0) for m in items)
        total = max(source_words.get(source, 0), 1)
        result.append(
            SourceContainment(
                source=source,
                draft_share=round(min(_union_length(spans) / size, 1.0), 4),
                source_share=round(min(reused / total, 1.0), 4),
                best_passage_similarity=max(m["similarity"] for m in items),
                passages=sorted(items, key=lambda m: -m["similarity"]),
            )
        )
    result.sort(
        key=lambda g: (-g["draft_share"], -g["source_share"], -g["best_passage_similarity"])
    )
    return result


# A run of a source the model was given as background, up to this many words, is a quote; a
# longer run is reuse of its wording, flagged like any other copy (and said to be supplied). So
# are quotes of one passage that add up to more than ``SUPPLIED_QUOTES_MAX_WORDS``: a patchwork of
# short quotes is a copy too.
SUPPLIED_QUOTE_MAX_WORDS = 25
SUPPLIED_QUOTES_MAX_WORDS = 50


def supplied_matches(
    matches: Sequence[Mapping[str, Any]],
    *,
    draft_text: str,
    is_supplied: Callable[[str], bool],
    quote_max_words: int = SUPPLIED_QUOTE_MAX_WORDS,
    quotes_max_words: int = SUPPLIED_QUOTES_MAX_WORDS,
) -> list[dict[str, Any]]:
    """The passage matches, marked ``supplied`` or not, with quotes of supplied sources left out.

    A match of a passage for which ``is_supplied(key)`` is dropped when each of its aligned runs
    has at most ``quote_max_words`` words and together at most ``quotes_max_words``; otherwise
    it is kept whole (and counts like any copy). Other matches pass unchanged.
    """
    kept: list[dict[str, Any]] = []
    for match in matches:
        if not is_supplied(match["key"]):
            kept.append({**match, "supplied": False})
            continue
        runs = [len(draft_text[start:end].split()) for start, end in match["draft_spans"]]
        if max(runs, default=0) > quote_max_words or sum(runs) > quotes_max_words:
            kept.append({**match, "supplied": True})
    return kept
