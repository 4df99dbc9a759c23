"""Lexical plagiarism on Chinese: each kind of copy held or passed by the real check and policy.

The archive index is built here from Chinese news paragraphs (tests/checks/zh_texts.py); drafts
go through ``LexicalIndex.find_matches``, ``containment.group_by_source`` and ``holds.route``
with the default policy, as the review pipeline runs them.
"""

from __future__ import annotations

import re

import pytest

from review import holds
from review.checks import containment
from review.checks.plagiarism import LexicalIndex, split_passages
from review.checks.plagiarism.shingles import count_tokens, tokens, word_hash, word_hashes
from review.checks.text import sentences, words
from tests.checks.zh_texts import ARCHIVE, UNRELATED, edit_one_in_ten

POLICY = holds.PolicyView(
    toxicity_thresholds=holds.DEFAULT_TOXICITY_THRESHOLDS,
    lexical_threshold=holds.DEFAULT_LEXICAL_THRESHOLD,
    lexical_draft_share=holds.DEFAULT_LEXICAL_DRAFT_SHARE,
    semantic_threshold=holds.DEFAULT_SEMANTIC_THRESHOLD,
    semantic_share=holds.DEFAULT_SEMANTIC_SHARE,
    blocking_rule_kinds=holds.DEFAULT_BLOCKING_RULE_KINDS,
)


class Archive:
    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.source: dict[str, str] = {}
        for name, body in ARCHIVE.items():
            for part, (start, end) in enumerate(split_passages(body)):
                self.text[f"a:{name}.{part}"] = body[start:end]
                self.source[f"a:{name}.{part}"] = name
        self.index = LexicalIndex("test-zh")
        self.index.add_many(self.text.items())
        self.fetched: list[str] = []

    def fetch(self, keys: list[str]) -> dict[str, str]:
        self.fetched.extend(keys)
        return {k: self.text[k] for k in keys if k in self.text}

    def check(self, draft: str) -> tuple[list[str], list[containment.SourceContainment]]:
        matches = self.index.find_matches(draft, fetch_texts=self.fetch)
        groups = containment.group_by_source(
            matches,
            draft_text=draft,
            source_of=self.source.get,
            passage_words={k: count_tokens(v) for k, v in self.text.items()},
            source_words={name: count_tokens(body) for name, body in ARCHIVE.items()},
        )
        top = groups[0] if groups else None
        outcome: holds.CheckOutcome = {
            "kind": "lexical",
            "status": "ok",
            "scores": {
                "max_similarity": max((m["similarity"] for m in matches), default=0.0),
                "draft_share": top["draft_share"] if top else 0.0,
                "source_share": top["source_share"] if top else 0.0,
                "best_source": top["source"] if top else None,
            },
        }
        return holds.route([outcome], POLICY), groups


@pytest.fixture(scope="module")
def archive() -> Archive:
    return Archive()


def reorder(text: str) -> str:
    parts = [s.text for s in sentences(text)]
    return "".join(parts[2:] + parts[:2])


def partial(text: str) -> str:
    """About 30% of the draft: the middle of ``text`` between two unrelated paragraphs."""
    return f"{UNRELATED[0]}\n\n{text[40:150]}\n\n{UNRELATED[1]}"


@pytest.mark.parametrize(
    "make",
    [lambda t: t, edit_one_in_ten, reorder, partial],
    ids=["copy", "edited-10%", "reordered", "partial-30%"],
)
def test_each_kind_of_chinese_copy_is_held_and_names_its_source(archive: Archive, make) -> None:
    # given a draft made from one archive paragraph
    draft = make(ARCHIVE["bridge"])
    # when the lexical check runs on it
    reasons, groups = archive.check(draft)
    # then the policy holds it for plagiarism and names the paragraph first
    assert reasons and reasons[0].startswith("Plagiarism:"), reasons
    assert groups[0]["source"] == "bridge"


def test_the_old_tokeniser_missed_a_ten_percent_edit_that_is_now_held(archive: Archive) -> None:
    edited = edit_one_in_ten(ARCHIVE["library"])
    # Under the old word pattern a Han run between punctuation was one "word": nothing shared.
    old_words = set(re.findall(r"\w+", edited)) & set(re.findall(r"\w+", ARCHIVE["library"]))
    assert len(old_words) < 5
    reasons, groups = archive.check(edited)
    assert reasons and groups[0]["source"] == "library"
    assert groups[0]["draft_share"] >= 0.5


@pytest.mark.parametrize("draft", [*UNRELATED, "\n\n".join(UNRELATED)], ids=["u1", "u2", "both"])
def test_unrelated_chinese_text_of_the_same_genre_passes(archive: Archive, draft: str) -> None:
    reasons, groups = archive.check(draft)
    assert reasons == [] and groups == []


def test_partial_copy_reports_its_share_and_side_by_side_passages(archive: Archive) -> None:
    source = ARCHIVE["museum"]
    copied = source[30:140]
    draft = f"{UNRELATED[0]}\n\n{copied}\n\n{UNRELATED[1]}"
    reasons, groups = archive.check(draft)
    top = groups[0]
    assert top["source"] == "museum" and reasons
    # about 30% of the draft's characters, and about as much of the source's words
    assert 0.2 <= top["draft_share"] <= 0.4
    assert 0.3 <= top["source_share"] <= 0.9
    (match,) = top["passages"]
    start = draft.index(copied)
    for (d0, d1), (s0, s1) in zip(match["draft_spans"], match["source_spans"], strict=True):
        # both sides are exact character spans of the same copied text
        assert start <= d0 < d1 <= start + len(copied)
        assert draft[d0:d1] == archive.text[match["key"]][s0:s1]
    covered = sum(d1 - d0 for d0, d1 in match["draft_spans"])
    assert covered >= 0.8 * len(copied)


def test_verbatim_chinese_copy_has_full_containment(archive: Archive) -> None:
    draft = ARCHIVE["hospital"]
    _reasons, groups = archive.check(draft)
    top = groups[0]
    assert top["best_passage_similarity"] == 100.0 and top["draft_share"] >= 0.95
    assert top["source_share"] == 1.0


# -- tokens -----------------------------------------------------------------------------------


def test_han_characters_are_lexical_tokens_one_by_one_with_exact_spans() -> None:
    text = "我们用Python 3.5测试了“GPT-2”模型。It works."
    starts, ends, hashes = tokens(text)
    assert [text[s:e] for s, e in zip(starts, ends, strict=True)] == [
        *"我们用",
        "Python",
        "3.5",
        *"测试了",
        "GPT-2",
        *"模型",
        "It",
        "works",
    ]
    assert word_hashes(text).tolist() == hashes.tolist()
    # the English words hash as before; the same Han character hashes alike everywhere
    assert hashes[3] == word_hash("Python")
    assert tokens("模型")[2].tolist() == hashes[-4:-2].tolist()


def test_text_without_han_characters_tokenises_as_before() -> None:
    text = "Café-owners' “rivals” said: don't pay 1,000.50 €, well-known C.E.O. José!"
    starts, ends, hashes = tokens(text)
    assert [(t.start, t.end) for t in words(text)] == list(zip(starts, ends, strict=True))
    assert hashes.tolist() == [word_hash(text[t.start : t.end]) for t in words(text)]


def test_count_tokens_counts_han_characters_and_english_words_as_split_does() -> None:
    text = "The quick, brown  fox."
    assert count_tokens(text) == len(text.split()) == 4
    assert count_tokens("我们用 Python 测试。") == 3 + 1 + 2
    assert count_tokens("大桥关闭十八个月") == 8


def test_chinese_passages_hold_about_as_much_text_as_english_ones() -> None:
    # given a long Chinese text of eight paragraphs run together
    text = "".join(ARCHIVE.values()) * 2
    spans = split_passages(text)
    sizes = [count_tokens(text[s:e]) for s, e in spans]
    # then each passage is 80-300 characters (40-150 English words), and nothing is lost
    assert len(spans) > 3
    assert all(80 <= n <= 300 for n in sizes[:-1]) and sizes[-1] <= 300
    assert "".join(text[s:e] for s, e in spans) == text
