"""Ethics rules on Chinese text: terms and personal data inside running text, claims and
disclosures in Chinese phrasing."""

from __future__ import annotations

from typing import Any

import pytest

from review.checks.ethics import DEFAULT_RULES, check_ethics

PII_ONLY: dict[str, Any] = {
    "pii": {"email": True, "phone": True, "card": True, "id_number": True},
}
CLAIMS_ONLY: dict[str, Any] = {"claims": True}


def found(text: str, rules: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    hits = [h for h in check_ethics(text, rules=rules)["hits"] if h["rule_kind"] == kind]
    return [(h["rule"], text[h["start"] : h["end"]]) for h in hits]


def test_blocked_terms_match_inside_running_chinese_text() -> None:
    text = "你这个傻逼，滚出去。他妈的真烦人。"
    assert found(text, DEFAULT_RULES, "blocked_term") == [("傻逼", "傻逼"), ("他妈的", "他妈的")]


def test_chinese_terms_match_with_spaces_or_marks_between_characters() -> None:
    rules = {"blocked_terms": ["内幕交易"]}
    text = "有人涉嫌内 幕 交 易，也有人写成内*幕*交*易来躲避审查。"
    assert [t for _r, t in found(text, rules, "blocked_term")] == ["内 幕 交 易", "内*幕*交*易"]


def test_an_english_term_inside_chinese_text_still_matches_as_a_whole_word() -> None:
    text = "他居然说fuck了。这是一个 class 问题。"
    assert found(text, {"blocked_terms": ["fuck", "ass"]}, "blocked_term") == [("fuck", "fuck")]


def test_chinese_terms_do_not_match_other_words() -> None:
    assert found("他是一位优秀的白领。", {"blocked_terms": ["白痴"]}, "blocked_term") == []


@pytest.mark.parametrize(
    "number",
    ["13812345678", "138-1234-5678", "138 1234 5678", "+86 138 1234 5678", "19912345678"],
)
def test_chinese_mobile_numbers_are_found_inside_running_text(number: str) -> None:
    text = f"如有疑问请拨打{number}联系我们。"
    assert found(text, PII_ONLY, "pii") == [("phone", number)]


@pytest.mark.parametrize("number", ["010-62345678", "0755-12345678", "(021)6123 4567"])
def test_chinese_landlines_are_found(number: str) -> None:
    assert found(f"办公室电话{number}，工作日接听。", PII_ONLY, "pii") == [("phone", number)]


def test_numbers_that_are_not_phones_stay_unflagged() -> None:
    # 12 digits starting with 1, an order number, a year and a count: none is a phone.
    text = "订单号123456789012已发货。2024年共有15000人参加，编号10012345678无效。"
    assert found(text, PII_ONLY, "pii") == []


def _check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character, written out independently of the code under test."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def _id_number(body: str) -> str:
    return body + _check_char(body)


def test_identity_card_numbers_are_found_only_with_a_valid_checksum_and_date() -> None:
    valid = _id_number("11010519491231002")
    with_x = next(
        _id_number(f"3301061985031{n:04d}")
        for n in range(200)
        if _check_char(f"3301061985031{n:04d}") == "X"
    )
    wrong = valid[:-1] + ("1" if valid[-1] != "1" else "2")
    bad_date = _id_number("11010519491331002")  # month 13
    text = f"身份证号{valid}已登记，{with_x}也是，{wrong}和{bad_date}无效。"
    hits = check_ethics(text, rules=PII_ONLY)["hits"]
    assert [(h["rule"], text[h["start"] : h["end"]]) for h in hits] == [
        ("id_number", valid),
        ("id_number", with_x),
    ]
    # the stored text does not repeat the number
    assert [h["text"] for h in hits] == ["•" * 14 + valid[-4:], "•" * 14 + with_x[-4:]]


def test_an_identity_card_number_is_not_also_reported_as_a_card_or_phone() -> None:
    # Luhn-valid and starting with an issuer digit, it would pass for a payment card too.
    number = next(
        n
        for n in (_id_number(f"41010519800101{seq:03d}") for seq in range(1000))
        if n[-1] != "X" and _luhn(n)
    )
    hits = check_ethics(f"证件{number}。", rules=PII_ONLY)["hits"]
    assert [h["rule"] for h in hits] == ["id_number"]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_email_inside_chinese_text() -> None:
    text = "请发送邮件至zhang.san@example.com获取更多信息。"
    assert found(text, PII_ONLY, "pii") == [("email", "zhang.san@example.com")]


def test_chinese_claims_without_a_source_are_flagged() -> None:
    text = "今年收入增长了35%。用户达到300万人。去年共有15000人参加。研究表明，喝咖啡可以延长寿命。"
    assert found(text, CLAIMS_ONLY, "claim") == [
        ("percentage", "今年收入增长了35%。"),
        ("statistic", "用户达到300万人。"),
        ("statistic", "去年共有15000人参加。"),
        ("research", "研究表明，喝咖啡可以延长寿命。"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "据新华社报道，今年收入增长了35%。",
        "根据国家统计局的数据，用户达到300万人。",
        "公司负责人表示，用户达到300万人。",
        "今年收入增长了35%（资料来源：国家统计局）。",
        "他说：“人工智能将在未来十年彻底改变新闻行业的工作方式。”",
    ],
)
def test_attributed_chinese_claims_are_not_flagged(text: str) -> None:
    assert found(text, CLAIMS_ONLY, "claim") == []


def test_unattributed_data_and_chinese_quotations_are_flagged() -> None:
    text = "数据显示，60%的人喜欢咖啡。「人工智能将在未来十年彻底改变新闻行业。」"
    assert [rule for rule, _t in found(text, CLAIMS_ONLY, "claim")] == [
        "percentage",
        "quotation",
    ]
    # a short quoted term is a name, not a quotation
    assert found("点击“首选项”菜单。", CLAIMS_ONLY, "claim") == []


@pytest.mark.parametrize("text", ["本文由 AI 生成。", "本文由AI生成", "（本文由ＡＩ生成）"])
def test_a_chinese_disclosure_is_found_however_it_is_spaced(text: str) -> None:
    rules = {"required_disclosures": ["本文由AI生成"]}
    assert found(f"市议会周二投票决定关闭大桥。{text}", rules, "disclosure") == []


def test_a_missing_chinese_disclosure_is_reported() -> None:
    rules = {"required_disclosures": ["本文由AI生成"]}
    (hit,) = check_ethics("市议会周二投票决定关闭大桥。", rules=rules)["hits"]
    assert hit["rule_kind"] == "disclosure" and hit["start"] is None
