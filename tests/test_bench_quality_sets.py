"""The held-out news briefs of bench/bench_quality.py stay apart from the briefs the top-up prompt
was chosen on, and the second held-out set from both (the project's near-duplicate guard,
review.tools.splits)."""

from __future__ import annotations

from bench import quality_sets


def test_the_heldout_briefs_are_new_and_apart_from_the_tuned_ones() -> None:
    heldout = quality_sets.HELDOUT_NEWS_BRIEFS
    tuned = [*quality_sets.NEWS_BRIEFS, *quality_sets.MORE_NEWS_BRIEFS]
    assert len(heldout) == len(set(heldout)) == 40
    assert not set(heldout) & set(tuned)
    assert quality_sets.heldout_leaks() == []


def test_the_second_heldout_briefs_are_new_and_apart_from_both_earlier_sets() -> None:
    heldout2 = quality_sets.HELDOUT2_NEWS_BRIEFS
    earlier = [
        *quality_sets.NEWS_BRIEFS,
        *quality_sets.MORE_NEWS_BRIEFS,
        *quality_sets.HELDOUT_NEWS_BRIEFS,
    ]
    assert len(heldout2) == len(set(heldout2)) == 40
    assert not set(heldout2) & set(earlier)
    assert quality_sets.heldout_leaks() == []


def test_the_guard_finds_a_reworded_first_heldout_brief_in_the_second(monkeypatch) -> None:
    reworded = "A landslide blocked the coastal road after a week of very heavy rain."
    monkeypatch.setattr(
        quality_sets, "HELDOUT2_NEWS_BRIEFS", [*quality_sets.HELDOUT2_NEWS_BRIEFS, reworded]
    )
    [leak] = quality_sets.heldout_leaks()
    assert leak[:2] == ("heldout", quality_sets.HELDOUT_NEWS_BRIEFS[1])
    assert leak[2:4] == ("heldout2", reworded)


def test_the_guard_finds_a_reworded_tuned_brief(monkeypatch) -> None:
    reworded = "The central bank raised its interest rates by half a percentage point."
    monkeypatch.setattr(
        quality_sets, "HELDOUT_NEWS_BRIEFS", [*quality_sets.HELDOUT_NEWS_BRIEFS, reworded]
    )
    [leak] = quality_sets.heldout_leaks()
    assert leak[3] == reworded and leak[1] == quality_sets.NEWS_BRIEFS[0]
