"""The held-out news briefs of bench/bench_quality.py stay apart from the briefs the top-up prompt
was chosen on (the project's near-duplicate guard, review.tools.splits)."""

from __future__ import annotations

from bench import quality_sets


def test_the_heldout_briefs_are_new_and_apart_from_the_tuned_ones() -> None:
    heldout = quality_sets.HELDOUT_NEWS_BRIEFS
    tuned = [*quality_sets.NEWS_BRIEFS, *quality_sets.MORE_NEWS_BRIEFS]
    assert len(heldout) == len(set(heldout)) == 40
    assert not set(heldout) & set(tuned)
    assert quality_sets.heldout_leaks() == []


def test_the_guard_finds_a_reworded_tuned_brief(monkeypatch) -> None:
    reworded = "The central bank raised its interest rates by half a percentage point."
    monkeypatch.setattr(
        quality_sets, "HELDOUT_NEWS_BRIEFS", [*quality_sets.HELDOUT_NEWS_BRIEFS, reworded]
    )
    [leak] = quality_sets.heldout_leaks()
    assert leak[3] == reworded and leak[1] == quality_sets.NEWS_BRIEFS[0]
