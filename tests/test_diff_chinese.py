"""Revision diffs on Chinese text: the characters that changed, not the whole line."""

from __future__ import annotations

from review.diff import change_stats, word_diff


def test_an_edit_inside_a_chinese_sentence_shows_only_the_changed_characters() -> None:
    old = "市政府周一宣布，新图书馆将于明年开放。"
    new = "市政府周二宣布，新图书馆将于后年开放。"
    pieces = word_diff(old, new)
    assert [t for op, t in pieces if op == "delete"] == ["一", "明"]
    assert [t for op, t in pieces if op == "insert"] == ["二", "后"]
    assert "".join(t for op, t in pieces if op != "delete") == new
    assert "".join(t for op, t in pieces if op != "insert") == old


def test_mixed_chinese_and_english_keeps_english_words_whole() -> None:
    pieces = word_diff("我们用 Python 测试。", "我们用 Rust 测试了。")
    assert ("delete", "Python") in pieces and ("insert", "Rust") in pieces
    assert ("insert", "了") in pieces


def test_change_stats_counts_chinese_words_not_clauses() -> None:
    stats = change_stats("会议结束。", "会议结束。市长发表了讲话。")
    # jieba: 市长 / 发表 / 了 / 讲话 (the full stop is not a word)
    assert stats == {"words_added": 4, "words_removed": 0}
    assert change_stats("a b", "a b c d") == {"words_added": 2, "words_removed": 0}
