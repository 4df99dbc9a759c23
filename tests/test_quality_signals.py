"""Quality signals on texts built for the purpose (generation.quality: pure, no database)."""

from __future__ import annotations

import numpy as np

from generation.backends.sampling import RowSampler
from generation.backends.types import SamplingSettings
from generation.quality import (
    agreement,
    best_index,
    brief_terms,
    coverage,
    draft_signals,
    job_signals,
    rank_order,
    rebrief,
    text,
    unsupported_specifics,
)
from generation.quality import signals as qs

BRIEF = "The city council approved a $4.2 million budget for public libraries on Tuesday."
GOOD = (
    "The city council on Tuesday approved a $4.2 million budget for public libraries. "
    "The money will pay for longer opening hours and new books across the city."
)


def kinds(items: list) -> list[tuple[str, str, str]]:
    return [(s["kind"], s["text"], s["status"]) for s in items]


def test_brief_terms_keep_the_story_and_drop_the_instruction() -> None:
    terms = brief_terms("Write a short news report: the city council approved a new budget.")
    texts = [t["text"] for t in terms]
    assert texts == ["city", "council", "approved", "budget"]
    with_vars = brief_terms("ignored", {"headline": "Floods hit Riverton", "lede": "Two villages"})
    assert {(t["kind"], t["text"]) for t in with_vars} >= {
        ("name", "Riverton"),
        ("number", "Two"),
        ("word", "Floods"),
    }


def test_a_draft_missing_the_briefs_figure_has_it_among_the_missing_terms() -> None:
    draft = "The city council approved a budget for public libraries on Tuesday."
    cov = coverage(draft, brief_terms(BRIEF))
    assert cov["missing"] == ["$4.2 million"]
    assert cov["missing_numbers"] == ["$4.2 million"]
    assert cov["share"] == 7 / 8
    # the same figure written another way is found (the day is still missing)
    other_way = coverage("They approved $4,200,000 for libraries.", brief_terms(BRIEF))
    assert other_way["missing_numbers"] == ["Tuesday"]


def test_an_invented_number_and_an_invented_quote_are_to_verify() -> None:
    draft = (
        "The city council approved a $4.2 million budget for public libraries on Tuesday. "
        'It will open 12 new branches. "This is a great day for readers," the council said.'
    )
    found = kinds(unsupported_specifics(draft, BRIEF))
    assert found == [
        ("number", "12", "verify"),
        ("quote", '"This is a great day for readers,"', "verify"),
    ]
    # nothing of the brief itself is flagged
    assert unsupported_specifics(GOOD, BRIEF) == []


def test_a_figure_that_contradicts_the_brief_is_a_contradiction_naming_the_briefs_figure() -> None:
    draft = "The council approved a $13.5 million budget for public libraries."
    (item,) = unsupported_specifics(draft, BRIEF)
    assert (item["text"], item["status"], item["contradicts"]) == (
        "$13.5 million",
        "contradiction",
        "$4.2 million",
    )
    assert draft[item["start"] : item["end"]] == "$13.5 million"
    rates = "The central bank raised interest rates by half a percentage point."
    (pct,) = unsupported_specifics("The bank raised rates by 20% on the day.", rates)
    assert (pct["status"], pct["contradicts"]) == ("contradiction", "half a percentage point")
    # a count of another thing is not a contradiction, only unsupported
    floods = "Floods forced the evacuation of two villages along the river."
    out = unsupported_specifics("Three villages and 2,000 people were evacuated.", floods)
    assert [(s["text"], s["status"]) for s in out] == [
        ("Three", "contradiction"),
        ("2,000", "verify"),
    ]


def test_specifics_from_a_supplied_source_are_supported() -> None:
    draft = "Mayor Ana Ruiz said the branches will open 12 hours a day."
    assert [s["text"] for s in unsupported_specifics(draft, BRIEF)] == ["Mayor Ana Ruiz", "12"]
    source = "Ana Ruiz, the mayor, wants libraries open 12 hours a day."
    assert unsupported_specifics(draft, BRIEF, sources=[source]) == []


def test_a_common_word_opening_a_sentence_before_said_is_no_name_but_a_surname_is() -> None:
    brief = "The council approved a budget for public libraries."
    for opener in ("Nurses", "Commuters", "Shopkeepers", "Paramedics"):
        draft = f"The council approved the library budget. {opener} said the change was overdue."
        assert unsupported_specifics(draft, brief) == [], opener
    draft = "The council approved the library budget. Okonkwo criticised the plan."
    assert [(s["kind"], s["text"]) for s in unsupported_specifics(draft, brief)] == [
        ("name", "Okonkwo")
    ]
    # A surname that is also a word is a name where the text capitalises it mid-sentence too.
    draft = "Councillor Jo Baker backed the library budget. Baker said it was overdue."
    found = [s["text"] for s in unsupported_specifics(draft, brief)]
    assert found == ["Councillor Jo Baker", "Baker"]
    assert text.is_common_word("Nurses") and not text.is_common_word("Okonkwo")


def test_a_number_word_is_a_whole_word_not_the_start_of_one() -> None:
    spans = text.numbers("Tenants, often Tennis fans, and ten thousand others.")
    assert [s.text for s in spans] == ["ten thousand"]
    assert [s.value for s in text.numbers("seventeen homes")] == [17.0]


def test_a_draft_cut_off_mid_sentence_is_marked_and_scores_lower() -> None:
    cut = "The city council on Tuesday approved a $4.2 million budget for public libraries. The"
    s_cut = draft_signals(text=cut, brief=BRIEF, finish_reason="length")
    assert s_cut["completeness"]["state"] == "cut_off"
    s_good = draft_signals(text=GOOD, brief=BRIEF, finish_reason="eos")
    assert s_good["completeness"]["state"] == "complete"
    qs.finish(s_cut), qs.finish(s_good)
    assert "Cut off mid-sentence" in s_cut["reasons"]
    assert s_cut["score"] < s_good["score"]


def test_a_repetitive_draft_is_marked_with_its_repeated_phrase() -> None:
    text = "The council approved the budget. " * 5
    rep = qs.repetition(text)
    assert rep["repetitive"] and rep["top"] == "the council approved" and rep["share"] > 0.5
    assert not qs.repetition(GOOD)["repetitive"]
    s = qs.finish(draft_signals(text=text, brief=BRIEF))
    assert any(r.startswith("Repetitive") for r in s["reasons"])


def test_an_editorialising_news_draft_is_marked_and_a_quoted_i_is_not() -> None:
    opinion = (
        "The bank raised rates. This is what happens when you have a president who has no "
        "morals. I think it is wrong."
    )
    reg = qs.register(opinion, "news_report")
    assert reg["editorialising"]
    assert {h["kind"] for h in reg["hits"]} == {"opinion", "first_person"}
    quoted = 'The bank raised rates. "I am confident inflation will fall," the governor said.'
    assert not qs.register(quoted, "news_report")["editorialising"]
    # ad copy may speak in the first person: listed, not marked
    assert not qs.register("I love these shoes.", "ad_copy")["editorialising"]


def test_a_specific_only_one_candidate_states_counts_no_others() -> None:
    a = unsupported_specifics("Mayor Ana Ruiz opened 12 branches.", BRIEF)
    b = unsupported_specifics("Ana Ruiz, the mayor, said 30 staff will be hired.", BRIEF)
    marked = agreement([a, b])
    assert [(s["text"], s["others"]) for s in marked[0]] == [("Mayor Ana Ruiz", 0), ("12", 0)]
    assert [(s["text"], s["others"]) for s in marked[1]] == [("Ana Ruiz", 0), ("30", 0)]
    c = unsupported_specifics("Mayor Ana Ruiz opened 12 branches on the day.", BRIEF)
    again = agreement([a, c])
    assert [s["others"] for s in again[0]] == [1, 1]


def test_job_signals_rank_the_on_brief_clean_draft_first() -> None:
    off = "As I was finishing my dinner in a small cafe, I could not help but glance outside."
    invented = (
        "The council approved a $13.5 million budget for public libraries on Tuesday, "
        'Mayor Michael Martinez said: "a great day".'
    )
    cut = "The city council approved a budget for"
    results = job_signals(
        texts=[off, invented, GOOD, cut],
        common={"brief": BRIEF, "content_type": "news_report"},
        per_candidate=[{"finish_reason": "eos"}] * 3 + [{"finish_reason": "length"}],
    )
    scores = [r["score"] for r in results]
    assert best_index(results) == 2
    assert results[0]["off_brief"] and not results[2]["off_brief"]
    assert scores[2] > scores[1] and scores[2] > scores[0] and scores[2] > scores[3]
    assert any(r.startswith("Contradicts the brief: $13.5 million") for r in results[1]["reasons"])
    # relevance without a sentence model says so; with one, it is measured
    assert results[0]["relevance"]["available"] is False

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)

    rel = draft_signals(text=GOOD, brief=BRIEF, embed=embed)["relevance"]
    assert rel == {"available": True, "cosine": 0.6}


# Built so the weighted score prefers the off-brief draft: fluent, complete, nothing invented,
# but 3 of the brief's 8 terms; the on-brief one covers 6 and is cut off, less fluent, and
# states three specifics of its own.
FLUENT_OFF = (
    "The city council met again this week. Members of the council talked about the "
    "libraries and the parks, and they agreed to meet again soon to talk about them more."
)
ROUGH_ON = (
    "The council approved a budget of $4.2 million for the libraries on Tuesday, and Mayor "
    "Ann Ortiz said 300 new jobs and 12 new branches would follow in"
)


def test_an_off_brief_draft_ranks_after_an_on_brief_one_even_with_a_higher_score() -> None:
    # given a job whose fluent off-brief candidate outscores a rough on-brief one
    results = job_signals(
        texts=[FLUENT_OFF, ROUGH_ON, FLUENT_OFF],
        common={"brief": BRIEF, "content_type": "news_report"},
        per_candidate=[
            {"finish_reason": "eos", "mean_logprob": -0.8, "tokens": 40},
            {"finish_reason": "length", "mean_logprob": -3.0, "tokens": 40},
            {"finish_reason": "eos", "mean_logprob": -0.5, "tokens": 40},
        ],
    )
    assert [r["off_brief"] for r in results] == [True, False, True]
    assert results[0]["coverage"]["share"] < qs.OFF_BRIEF_SHARE <= results[1]["coverage"]["share"]
    assert results[2]["score"] > results[0]["score"] > results[1]["score"]
    # when they are ordered: the on-brief one first, then the off-brief ones by their score
    assert rank_order(results) == [1, 2, 0]
    assert best_index(results) == 1
    # unscored candidates come last; none scored, no best
    assert rank_order([None, results[0], results[1]]) == [2, 1, 0]
    assert best_index([None, None]) is None
    # and the editor is told why the higher score is not first
    assert results[0]["reasons"][0] == "Off brief: ranked after on-brief candidates"
    assert not any(r.startswith("Off brief") for r in results[1]["reasons"])


def test_fluency_is_the_mean_log_probability_of_the_chosen_tokens() -> None:
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=50).astype(np.float32) for _ in range(6)]
    sampler = RowSampler(
        seeds=[7],
        settings=SamplingSettings(max_new_tokens=6, temperature=0.7, top_k=10),
        eos_ids=[],
    )
    chosen = [sampler.choose(0, x, [], step) for step, x in enumerate(logits)]
    expected = np.mean(
        [
            x[t] - np.log(np.exp(x.astype(np.float64)).sum())
            for x, t in zip(logits, chosen, strict=True)
        ]
    )
    assert abs(sampler.mean_logprob(0) - expected) < 1e-5
    flu = qs.fluency(sampler.mean_logprob(0), tokens=6)
    assert flu["available"] and 0.0 <= flu["score"] <= 1.0
    assert qs.fluency(None)["available"] is False


def _draw(sampler: RowSampler, logits: list[np.ndarray], written: list[int]) -> list[int]:
    """Steps ``sampler``'s row 0 over ``logits`` the way the decoding loop does (the history
    is the prompt, here ``[1, 2]``, then what the row wrote)."""
    for step, x in enumerate(logits):
        written.append(sampler.choose(0, x, [1, 2, *written], step))
    return written


def test_a_steered_row_writes_its_terms_whole_and_is_then_left_to_the_model() -> None:
    rng = np.random.default_rng(3)
    logits = [rng.normal(size=50).astype(np.float32) for _ in range(12)]
    base = SamplingSettings(max_new_tokens=12, temperature=0.7, top_k=10, top_p=0.9)
    steered = SamplingSettings(
        max_new_tokens=12, temperature=0.7, top_k=10, top_p=0.9, steer_bias=40.0
    )
    # two terms: one written as tokens 11 then 12 (or 13 alone), the other as token 20
    ways = [[[11, 12], [13]], [[20]]]

    def run(settings: SamplingSettings, steer: list) -> tuple[list[int], RowSampler]:
        sampler = RowSampler(seeds=[5], settings=settings, eos_ids=[], steer=steer)
        return _draw(sampler, logits, []), sampler

    plain, plain_sampler = run(base, [])
    written, sampler = run(steered, ways)
    # then both terms come first, a started term is finished (11 is followed by 12) ...
    head = written[:3]
    assert 20 in head and (13 in head or written[written.index(11) + 1] == 12)
    # ... and once written, the row draws what it would have drawn unsteered
    assert written[4:] == plain[4:] and written[:4] != plain[:4]
    assert sampler._steer_left == [set()]
    # the fluency recorded is the model's own: from the logits before the steering
    expected = np.mean(
        [
            x[t] - np.log(np.exp(x.astype(np.float64)).sum())
            for x, t in zip(logits, written, strict=True)
        ]
    )
    assert abs(sampler.mean_logprob(0) - expected) < 1e-5
    # a bias of 0 steers nothing
    assert run(base, ways)[0] == plain and plain_sampler._steer_left == [set()]


def test_a_top_up_steers_towards_the_briefs_terms_and_says_so_in_its_settings() -> None:
    terms = brief_terms("The council approved a budget of $4.2 million for libraries.")
    steering = qs.topup_steering(terms)
    assert "$4.2 million" in steering["steer_terms"] and "libraries" in steering["steer_terms"]
    assert steering["steer_bias"] == qs.TOPUP_STEER_BIAS > 0
    settings = SamplingSettings.from_dict({"max_new_tokens": 8, **steering})
    assert settings.steer_terms == tuple(steering["steer_terms"])
    assert qs.topup_steering([]) == {"steer_terms": [], "steer_bias": 0.0}


def test_a_top_up_is_needed_only_when_no_candidate_covers_the_brief() -> None:
    off = "As I was finishing my dinner in a small cafe, I could not help but glance outside."
    common = {"brief": BRIEF}
    extra = {"finish_reason": "eos", "mean_logprob": -2.0, "tokens": 30}
    none_on = job_signals(texts=[off, off], common=common, per_candidate=[extra, extra])
    assert qs.needs_topup(none_on)
    one_on = job_signals(texts=[off, GOOD], common=common, per_candidate=[extra, extra])
    assert not qs.needs_topup(one_on)
    assert not qs.needs_topup([])
    assert qs.topup_note(drawn=2, first=4, covered=1) == (
        "Drew 2 more: none of the first 4 covered the brief; 1 of them does."
    )
    assert qs.topup_note(drawn=2, first=4, covered=0).endswith("none of them does either.")
    assert qs.topup_note(drawn=0, first=4, covered=0) == ""
    user = "Write a short news report: Floods forced the evacuation of two villages."
    assert rebrief(user, brief_terms(user)) == (
        f"{user}\n\nMention each of these words from the brief: "
        "two, Floods, forced, evacuation, villages."
    )
    assert rebrief(user, []) == user
