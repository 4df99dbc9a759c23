"""The lexical check sizes a draft's query windows by the draft's stored language when it is
given one, and by the script rule (most letters Han) when not."""

from __future__ import annotations

from review.checks.plagiarism.compare import DraftText
from review.checks.plagiarism.passages import DEFAULT_WINDOW_SIZES, HAN_SCALE, size_scale
from review.checks.plagiarism.shingles import SHINGLE_WORDS

# About a third of the letters are Han: the detector calls it Chinese, the script rule not.
MIXED = "我们用 Python 测试了 model quality 和速度 on the new server today。"
CHINESE = "随着深度学习技术的发展，自然语言处理领域涌现出了大语言模型。"


def test_the_stored_language_decides_when_given() -> None:
    assert size_scale(MIXED) == 1
    assert size_scale(MIXED, "zh") == HAN_SCALE
    assert size_scale(CHINESE) == HAN_SCALE
    assert size_scale(CHINESE, "en") == 1


def test_without_a_language_or_undetermined_the_script_rule_decides() -> None:
    assert size_scale(CHINESE, None) == size_scale(CHINESE, "und") == HAN_SCALE
    assert size_scale(MIXED, "") == size_scale(MIXED, "und") == 1


def test_the_draft_windows_follow_the_language() -> None:
    text = " ".join([CHINESE] * 12)
    plain = DraftText(text, k=SHINGLE_WORDS, window_sizes=DEFAULT_WINDOW_SIZES, language="en")
    chinese = DraftText(text, k=SHINGLE_WORDS, window_sizes=DEFAULT_WINDOW_SIZES, language="zh")
    assert chinese.windows != plain.windows
    assert (
        chinese.windows
        == DraftText(text, k=SHINGLE_WORDS, window_sizes=DEFAULT_WINDOW_SIZES).windows
    )
