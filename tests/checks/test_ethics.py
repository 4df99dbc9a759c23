from __future__ import annotations

import json

import pytest

from review.checks.ethics import (
    DEFAULT_RULES,
    RULE_KINDS,
    CompiledRules,
    InvalidRules,
    check_ethics,
    compile_rules,
    validate_rules,
)


def hits_of(text: str, rules: dict, kind: str) -> list[dict]:
    return [h for h in check_ethics(text, rules=rules)["hits"] if h["rule_kind"] == kind]


def spans_text(text: str, hits: list[dict]) -> list[str]:
    return [text[h["start"] : h["end"]] for h in hits]


PII_ONLY = {"pii": {"email": True, "phone": True, "card": True}}


# ----------------------------------------------------------------------------- blocked terms


def test_blocked_phrase_matches_case_hyphen_space_and_plural_variants() -> None:
    text = "A Bad-Word here, BAD WORD there, badwords everywhere, and bad. word too."
    found = spans_text(text, hits_of(text, {"blocked_terms": ["bad word"]}, "blocked_term"))
    assert found == ["Bad-Word", "BAD WORD", "badwords", "bad. word"]


def test_blocked_term_does_not_match_inside_other_words() -> None:
    text = "A classic class passed the assessment; the bass player's glass broke."
    assert hits_of(text, {"blocked_terms": ["ass"]}, "blocked_term") == []


def test_blocked_term_matches_leetspeak_and_masked_vowels() -> None:
    text = "What a sh!t show, a 5hit show, a sh*t show."
    found = spans_text(text, hits_of(text, {"blocked_terms": ["shit"]}, "blocked_term"))
    assert found == ["sh!t", "5hit", "sh*t"]


def test_blocked_term_is_found_inside_markup_but_not_after_a_disguised_letter() -> None:
    text = "A **bad word** and _bad word_ but not $hit for hit."
    rules = {"blocked_terms": ["bad word", "hit"]}
    found = spans_text(text, hits_of(text, rules, "blocked_term"))
    assert found == ["bad word", "bad word", "hit"]


def test_blocked_phrase_with_substitutions_in_both_words_is_found() -> None:
    text = "They chanted b@d w0rd and he11 n0 all night."
    rules = {"blocked_terms": ["bad word", "hell no"]}
    found = spans_text(text, hits_of(text, rules, "blocked_term"))
    assert found == ["b@d w0rd", "he11 n0"]


def test_blocked_term_plural_es_is_matched() -> None:
    text = "Too many crashes today."
    hits = hits_of(text, {"blocked_terms": ["crash"]}, "blocked_term")
    assert spans_text(text, hits) == ["crashes"]


def test_blocked_term_explicit_variants_report_the_canonical_term() -> None:
    rules = {"blocked_terms": [{"term": "shoot", "variants": ["shucks"], "severity": "low"}]}
    text = "Oh shucks, she said."
    (hit,) = hits_of(text, rules, "blocked_term")
    assert (hit["rule"], hit["text"], hit["severity"]) == ("shoot", "shucks", "low")
    assert (hit["start"], hit["end"]) == (3, 9)


def test_blocked_term_hit_carries_span_message_and_default_severity() -> None:
    text = "This is bullshit."
    (hit,) = hits_of(text, DEFAULT_RULES, "blocked_term")
    assert hit == {
        "rule_kind": "blocked_term",
        "rule": "bullshit",
        "start": 8,
        "end": 16,
        "text": "bullshit",
        "message": "Blocked term: bullshit",
        "severity": "high",
    }


# ----------------------------------------------------------------------------- regexes


def test_regex_rule_reports_each_match_with_its_name() -> None:
    rules = {
        "regexes": [
            {"name": "embargo", "pattern": r"\bembargo(?:ed)?\b", "flags": "i", "message": "x"}
        ]
    }
    text = "EMBARGOED until Monday; the embargo lifts at noon."
    hits = hits_of(text, rules, "regex")
    assert spans_text(text, hits) == ["EMBARGOED", "embargo"]
    assert {h["rule"] for h in hits} == {"embargo"}
    assert {h["message"] for h in hits} == {"x"}


def test_regex_without_ignore_case_flag_is_case_sensitive() -> None:
    rules = {"regexes": [{"name": "ceo", "pattern": r"\bCEO\b"}]}
    assert len(hits_of("The CEO and the ceo.", rules, "regex")) == 1


def test_bad_regex_error_names_the_rule() -> None:
    errors = validate_rules(
        {"regexes": [{"name": "ok", "pattern": "a"}, {"name": "broken", "pattern": "(a"}]}
    )
    assert len(errors) == 1
    assert errors[0].startswith("regexes[1] ('broken'): pattern does not compile")


@pytest.mark.parametrize("pattern", [r"(\w+\s?)+$", r"(a+)+b", r"(a|a)*b", r"(a|aa)*b"])
def test_catastrophic_regexes_are_rejected(pattern: str) -> None:
    errors = validate_rules({"regexes": [{"name": "slow", "pattern": pattern}]})
    assert len(errors) == 1 and "backtrack catastrophically" in errors[0]


@pytest.mark.parametrize(
    "pattern",
    [r"(?:Mr|Mrs)\.?", r"(\d{3}-)+", r"(?:\s|,)+", r"(?>\w+\s?)+", r"(\w++\s?)+", r"(a|ab)*c"],
)
def test_safe_regexes_are_accepted(pattern: str) -> None:
    assert validate_rules({"regexes": [{"name": "fine", "pattern": pattern}]}) == []


def test_compile_rules_raises_with_every_error() -> None:
    with pytest.raises(InvalidRules) as info:
        compile_rules({"regexes": [{"name": "", "pattern": "["}], "pii": {"fax": True}})
    assert len(info.value.errors) == 3


def test_validate_rules_names_field_and_item() -> None:
    errors = validate_rules(
        {
            "blocked_terms": ["fine", "", {"term": "x", "severity": "urgent"}],
            "pii": {"fax": True},
            "claims": "yes",
            "required_disclosures": [""],
            "colour": "blue",
        }
    )
    assert errors == [
        "colour: unknown field (expected one of blocked_terms, regexes, pii, "
        "required_disclosures, claims)",
        "blocked_terms[1]: must contain at least one letter or digit",
        "blocked_terms[2]: severity must be one of low, medium, high",
        "pii.fax: unknown detector (expected one of email, phone, card, id_number)",
        "required_disclosures[0]: must be a non-empty string",
        "claims: must be true/false or an object with keys percentages, statistics, quotations, "
        "research",
    ]


def test_default_rules_are_valid_json_and_compile() -> None:
    assert validate_rules(json.loads(json.dumps(DEFAULT_RULES))) == []
    compiled = compile_rules(DEFAULT_RULES)
    assert isinstance(compiled, CompiledRules)
    assert compiled.pii == {"email", "phone", "card", "id_number"}
    assert compiled.regexes == () and compiled.required_disclosures == ()


# ----------------------------------------------------------------------------- personal data


def test_email_addresses_are_found_with_spans() -> None:
    text = "Write to jane.doe+news@example.co.uk or ops@newsroom.org."
    found = spans_text(text, hits_of(text, PII_ONLY, "pii"))
    assert found == ["jane.doe+news@example.co.uk", "ops@newsroom.org"]


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 212-555-0199",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "020 7946 0958",
        "(020) 7946 0958",
        "07700 900123",
        "+33 1 23 45 67 89",
    ],
)
def test_phone_numbers_are_found(phone: str) -> None:
    text = f"Call {phone} today."
    hits = hits_of(text, PII_ONLY, "pii")
    assert [(h["rule"], h["text"]) for h in hits] == [("phone", phone)]


@pytest.mark.parametrize(
    "not_phone",
    ["1999", "3.5", "2024-2025", "10.30", "15.03.2024", "1,234,567", "1234567890", "12 345"],
)
def test_years_decimals_ranges_and_plain_numbers_are_not_phones(not_phone: str) -> None:
    assert hits_of(f"In {not_phone} there were changes.", PII_ONLY, "pii") == []


def test_luhn_valid_card_numbers_are_flagged_and_masked() -> None:
    text = "Pay with 4111 1111 1111 1111 or 4012-8888-8888-1881 or 378282246310005."
    hits = hits_of(text, PII_ONLY, "pii")
    assert [h["rule"] for h in hits] == ["card", "card", "card"]
    assert spans_text(text, hits) == [
        "4111 1111 1111 1111",
        "4012-8888-8888-1881",
        "378282246310005",
    ]
    assert hits[0]["text"] == "•••• •••• •••• 1111"


def test_luhn_invalid_card_numbers_are_not_flagged() -> None:
    text = "Reference 4111 1111 1111 1112 and 4012888888881882."
    assert hits_of(text, PII_ONLY, "pii") == []


def test_pii_detectors_can_be_switched_off() -> None:
    text = "Mail a@b.org or call 020 7946 0958."
    hits = hits_of(text, {"pii": {"email": False, "phone": True}}, "pii")
    assert [h["rule"] for h in hits] == ["phone"]


# ----------------------------------------------------------------------------- disclosures


def test_disclosure_present_with_other_case_and_spacing_gives_no_hit() -> None:
    rules = {"required_disclosures": ["This article was produced with AI assistance."]}
    text = "Story text.\n\nthis   article was\nproduced with AI ASSISTANCE."
    assert hits_of(text, rules, "disclosure") == []


def test_any_one_of_several_disclosures_is_enough() -> None:
    rules = {"required_disclosures": ["Sponsored content.", "Paid partnership."]}
    assert hits_of("A paid partnership. Text.", rules, "disclosure") == []


def test_missing_disclosure_is_one_hit_without_a_span() -> None:
    rules = {"required_disclosures": ["Produced with AI assistance."]}
    (hit,) = hits_of("Just a story.", rules, "disclosure")
    assert (hit["start"], hit["end"], hit["text"]) == (None, None, "")
    assert "Produced with AI assistance." in hit["message"]


# ----------------------------------------------------------------------------- claims


CLAIMS = {"claims": True}


def test_percentage_without_attribution_is_a_claim_spanning_the_sentence() -> None:
    text = "It rained. Unemployment rose 12% last year. Then it stopped."
    (hit,) = hits_of(text, CLAIMS, "claim")
    assert hit["rule"] == "percentage"
    assert hit["text"] == "Unemployment rose 12% last year."
    assert text[hit["start"] : hit["end"]] == hit["text"]


@pytest.mark.parametrize(
    "sentence",
    [
        "Unemployment rose 12 per cent, according to the ONS.",
        "Unemployment rose 12%, the minister said.",
        "Unemployment rose 12% (source: https://ons.gov.uk/x).",
        "Unemployment rose 12% [3].",
        "Unemployment rose 12% (Smith, 2020).",
        "Source: ONS. Unemployment rose 12%, figures from the ONS show.",
    ],
)
def test_attributed_claims_are_not_flagged(sentence: str) -> None:
    assert hits_of(sentence, CLAIMS, "claim") == []


def test_large_numbers_are_statistics_but_years_and_small_numbers_are_not() -> None:
    text = (
        "About 40,000 people lost jobs. Some 2.5 million visitors came. Exports hit £3bn. "
        "In 2024 three people met. The 2024-2025 season had 12 games."
    )
    hits = hits_of(text, CLAIMS, "claim")
    assert [h["rule"] for h in hits] == ["statistic", "statistic", "statistic"]
    assert [h["text"] for h in hits] == [
        "About 40,000 people lost jobs.",
        "Some 2.5 million visitors came.",
        "Exports hit £3bn.",
    ]


def test_direct_quotation_needs_attribution_but_short_quotes_do_not_count() -> None:
    text = (
        "“We will win this fight for good” was the message. "
        "“We will win this fight,” the mayor said. The so-called “reform” passed."
    )
    hits = hits_of(text, CLAIMS, "claim")
    assert [(h["rule"], h["text"]) for h in hits] == [
        ("quotation", "“We will win this fight for good” was the message.")
    ]


def test_claim_detectors_can_be_switched_individually() -> None:
    text = "Prices rose 5%. “Nobody saw this coming at all” was heard."
    hits = hits_of(text, {"claims": {"percentages": False, "quotations": True}}, "claim")
    assert [h["rule"] for h in hits] == ["quotation"]


# ----------------------------------------------------------------------------- the result


def test_result_is_json_able_sorted_and_counted() -> None:
    rules = {**DEFAULT_RULES, "required_disclosures": ["AI-assisted."]}
    text = "Shit happens. Mail x@y.org. Costs rose 40%."
    result = check_ethics(text, rules=rules)
    assert json.loads(json.dumps(result)) == result
    assert result["engine"] == "ethics"
    starts = [h["start"] for h in result["hits"]]
    assert starts[-1] is None  # the missing disclosure goes last
    assert starts[:-1] == sorted(starts[:-1])
    assert result["counts"] == {
        "blocked_term": 1,
        "regex": 0,
        "pii": 1,
        "disclosure": 1,
        "claim": 1,
    }
    assert set(result["counts"]) == set(RULE_KINDS)
    assert result["truncated"] is False


def test_check_ethics_rejects_invalid_rules() -> None:
    with pytest.raises(InvalidRules):
        check_ethics("text", rules={"regexes": [{"name": "x", "pattern": "("}]})


def test_compiled_rules_give_the_same_result_as_the_config() -> None:
    text = "Bad word here: ops@site.org, 44% said nothing."
    rules = {**DEFAULT_RULES, "blocked_terms": ["bad word"]}
    assert (
        check_ethics(text, rules=compile_rules(rules))["hits"]
        == check_ethics(text, rules=rules)["hits"]
    )


def test_hits_per_rule_are_capped_and_flagged() -> None:
    result = check_ethics("spam " * 500, rules={"blocked_terms": ["spam"]})
    assert result["counts"]["blocked_term"] == 200
    assert result["truncated"] is True


def test_long_texts_without_matches_give_no_pii_hits() -> None:
    # Long runs with no match: the patterns are anchored so that these scan in linear time
    # (a quadratic e-mail pattern would take minutes here).
    text = "a" * 50_000 + " " + "1-" * 20_000 + " " + "x." * 20_000
    result = check_ethics(text, rules=DEFAULT_RULES)
    assert result["counts"]["pii"] == 0
