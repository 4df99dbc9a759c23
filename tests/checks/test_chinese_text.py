"""Segmentation of Chinese and mixed Chinese-English text, and highlighting of its spans."""

from __future__ import annotations

import pytest

from review.checks.ethics import DEFAULT_RULES, check_ethics
from review.checks.text import looks_chinese, segment_han, sentences, words
from review.highlight import mark_spans, segments

# The text: three sentences, which the old splitter took for one sentence of seven
# clause-long "words".
THREE = (
    "随着深度学习技术的发展，自然语言处理领域涌现出了大语言模型。这些模型能够生成流畅的文本，"
    "也带来了新的挑战！我们应该如何评估它们的质量？"
)


def covered_once(text: str) -> bool:
    """Every non-space character lies in exactly one sentence, and no space in two."""
    owner = [0] * len(text)
    for sentence in sentences(text):
        for i in range(sentence.start, sentence.end):
            owner[i] += 1
    return all(owner[i] <= 1 if ch.isspace() else owner[i] == 1 for i, ch in enumerate(text))


def test_three_chinese_sentences_are_three_with_exact_spans() -> None:
    found = sentences(THREE)
    assert [s.text for s in found] == [
        "随着深度学习技术的发展，自然语言处理领域涌现出了大语言模型。",
        "这些模型能够生成流畅的文本，也带来了新的挑战！",
        "我们应该如何评估它们的质量？",
    ]
    assert all(THREE[s.start : s.end] == s.text for s in found)


def test_chinese_words_come_from_the_segmenter_not_whole_clauses() -> None:
    found = words(THREE)
    texts = [THREE[w.start : w.end] for w in found]
    assert {"深度", "学习", "技术", "发展", "模型", "质量"} <= set(texts)
    assert max(len(t) for t in texts) <= 4
    assert all(t.norm == THREE[t.start : t.end] for t in found)
    # words never cross punctuation, and together they cover every Han character
    assert "".join(texts) == THREE.replace("，", "").replace("。", "").replace("！", "").replace(
        "？", ""
    )
    assert list(segment_han("深度学习")) == ["深度", "学习"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("真的吗？！我不信。", ["真的吗？！", "我不信。"]),
        ("第一条；第二条；", ["第一条；", "第二条；"]),
        ("他说：“我们赢了！”然后离开了。", ["他说：“我们赢了！”", "然后离开了。"]),
        ("他沉默了……后来又笑了｡", ["他沉默了……", "后来又笑了｡"]),
        ("这是「重点」。下一句！", ["这是「重点」。", "下一句！"]),
        ("全角问号？半角问号?结束", ["全角问号？", "半角问号?", "结束"]),
    ],
)
def test_chinese_sentence_ends_need_no_space(text: str, expected: list[str]) -> None:
    assert [s.text for s in sentences(text)] == expected
    assert covered_once(text)


def test_mixed_chinese_english_text_splits_at_both_kinds_of_end() -> None:
    text = "我们用 Python 3.5 测试了模型。It works well. Dr. Smith 同意了！Then we left.\n\n新段落"
    assert [s.text for s in sentences(text)] == [
        "我们用 Python 3.5 测试了模型。",
        "It works well.",
        "Dr. Smith 同意了！",
        "Then we left.",
        "新段落",
    ]
    assert covered_once(text)
    tokens = [text[w.start : w.end] for w in words(text)]
    assert tokens[:6] == ["我们", "用", "Python", "3.5", "测试", "了"]
    assert "works" in tokens and "Smith" in tokens


def test_english_text_splits_as_before() -> None:
    text = 'Dr. J. Smith arrived at 3 p.m. on Jan. 5. "It works!" he said. Then? Silence…\n\nNext'
    assert [s.text for s in sentences(text)] == [
        "Dr. J. Smith arrived at 3 p.m. on Jan. 5.",
        '"It works!"',
        "he said.",
        "Then?",
        "Silence…",
        "Next",
    ]
    assert [w.norm for w in words("Don't re-use 1,000.5 Café")] == [
        "don't",
        "re-use",
        "1,000.5",
        "cafe",
    ]


def test_looks_chinese_is_a_script_rule() -> None:
    assert looks_chinese(THREE)
    assert looks_chinese("我们用 Python 测试了模型。")
    assert not looks_chinese("It works well, 好.")
    assert not looks_chinese("12345")


def test_ethics_spans_in_chinese_text_highlight_exactly() -> None:
    text = "你这个傻逼，滚出去。请拨打13812345678联系我。"
    hits = check_ethics(text, rules=DEFAULT_RULES)["hits"]
    spans = [
        {"start": h["start"], "end": h["end"], "kind": "ethics", "label": h["message"]}
        for h in hits
    ]
    pieces = segments(text, spans)
    assert "".join(p.text for p in pieces) == text
    marked = [p.text for p in pieces if "ethics" in p.kinds]
    assert marked == ["傻逼", "13812345678"]
    assert [p.css for p in pieces if p.text == "傻逼"] == ["hl-ethics"]


def test_side_by_side_marks_chinese_source_spans() -> None:
    source = "市议会周二投票决定，将老港口大桥关闭十八个月进行维修。"
    pieces = mark_spans(source, [[10, 27]])
    assert [p.text for p in pieces] == [
        "市议会周二投票决定，",
        "将老港口大桥关闭十八个月进行维修。",
    ]
    assert pieces[1].kinds == ["plagiarism"] and pieces[0].kinds == []
