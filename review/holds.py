"""Why a checked draft is held: the project's thresholds applied to its check results.

Plain functions over check results (the dicts stored in CheckResult) and the policy's values,
so every threshold can be tested without a model; the defaults of a new project's policy live
here too. Reading and changing a project's policy is ``review.services.policies``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict

from generation.quality import OFF_BRIEF_REASON
from review.checks.ethics import DEFAULT_RULES

# Defaults chosen on the toxicity stand-in's calibration set (``python -m
# review.tools.train_toxicity_head calibrate``; how, in docs/review.md), never on the held-out
# sets its figures are measured on. A project on Detoxify may want its own: its admin measures
# them on the newsroom's text with ``manage.py toxicity_eval``.
DEFAULT_TOXICITY_THRESHOLDS: dict[str, float] = {
    # Chosen for the offline stand-in head on the dev split (review.tools.train_toxicity_head
    # calibrate --candidate: at most 0.5% of harmless dev texts and 1% of the default model's
    # dev drafts held); migration review 0012 moved policies still on the earlier defaults.
    "toxicity": 0.85,
    "severe_toxicity": 0.95,
    "obscene": 0.95,
    "threat": 0.95,
    "insult": 0.85,
    "identity_attack": 0.5,
    "sexual_explicit": 0.95,
}
# Percent of a source passage's 5-word shingles found in the draft.
DEFAULT_LEXICAL_THRESHOLD = 50.0
# ...or when this share of the draft's text comes from one source (a partial copy inside new
# text: no single source passage need be over the passage threshold).
DEFAULT_LEXICAL_DRAFT_SHARE = 0.2
# A draft sentence is aligned with a source sentence (a paraphrase of it) at this cosine...
DEFAULT_SEMANTIC_THRESHOLD = 0.7
# ...and the draft is held when this share of its sentences are aligned with one source...
DEFAULT_SEMANTIC_SHARE = 0.3
# ...and they restate this share of that source's sentences. The three semantic values were
# chosen on the labelled sets of bench/bench_review.py (docs/review.md).
DEFAULT_SEMANTIC_SOURCE_SHARE = 0.25
# The pair classifier judges at most this many aligned sources of a draft (best first).
MAX_CLASSIFIED_SOURCES = 10
# Hits of these rule kinds hold a draft; claims needing a source are only highlighted.
DEFAULT_BLOCKING_RULE_KINDS = ["blocked_term", "regex", "pii", "disclosure"]
# A check that cannot read the draft's language: "hold" (as any check that could not run) or
# "inform" (the draft goes to the queue, the reason shown with it).
DEFAULT_UNREADABLE_LANGUAGE = "hold"
# Quality hold: off unless a project turns it on; the floor applies to generation.quality's score.
DEFAULT_QUALITY_HOLD = False
DEFAULT_QUALITY_FLOOR = 0.45


def default_policy() -> dict[str, Any]:
    return {
        "toxicity_thresholds": dict(DEFAULT_TOXICITY_THRESHOLDS),
        "lexical_threshold": DEFAULT_LEXICAL_THRESHOLD,
        "lexical_draft_share": DEFAULT_LEXICAL_DRAFT_SHARE,
        "semantic_threshold": DEFAULT_SEMANTIC_THRESHOLD,
        "semantic_share": DEFAULT_SEMANTIC_SHARE,
        "semantic_source_share": DEFAULT_SEMANTIC_SOURCE_SHARE,
        "blocking_rule_kinds": list(DEFAULT_BLOCKING_RULE_KINDS),
        "rules": dict(DEFAULT_RULES),
        "unreadable_language": DEFAULT_UNREADABLE_LANGUAGE,
        "quality_hold": DEFAULT_QUALITY_HOLD,
        "quality_floor": DEFAULT_QUALITY_FLOOR,
    }


class PolicyView(TypedDict):
    toxicity_thresholds: Mapping[str, float]
    lexical_threshold: float
    lexical_draft_share: NotRequired[float]
    semantic_threshold: float
    semantic_share: float
    semantic_source_share: NotRequired[float]
    blocking_rule_kinds: Sequence[str]
    unreadable_language: NotRequired[str]
    quality_hold: NotRequired[bool]
    quality_floor: NotRequired[float]


class CheckOutcome(TypedDict, total=False):
    kind: str
    status: str
    reason: str
    scores: dict[str, Any]
    details: dict[str, Any]


def route(checks: Sequence[CheckOutcome], policy: PolicyView) -> list[str]:
    """The reasons to hold the draft; an empty list sends it to the queue.

    A check that did not run is a reason: a draft never passes unchecked. The one exception is
    a check that cannot read the draft's language when the project chose to be informed of it
    (``unreadable_language == "inform"``): :func:`notes` lists those instead.
    """
    reasons: list[str] = []
    for check in checks:
        kind = check["kind"]
        if check["status"] != "ok":
            if _informs(check, policy):
                continue
            reasons.append(f"The {kind} check could not run: {check.get('reason') or 'unknown'}")
            continue
        scores = check.get("scores") or {}
        if kind == "toxicity":
            for category, threshold in policy["toxicity_thresholds"].items():
                score = scores.get(category)
                if score is not None and score >= threshold:
                    label = category.replace("_", " ")
                    reasons.append(f"Toxicity: {label} {score:.2f} ≥ {threshold:.2f}")
        elif kind == "ethics":
            hits = (check.get("details") or {}).get("hits", [])
            blocking = set(policy["blocking_rule_kinds"])
            for hit in hits:
                if hit["rule_kind"] in blocking:
                    reasons.append(
                        f"Ethics rule ({hit['rule_kind'].replace('_', ' ')}): {hit['message']}"
                    )
        elif kind == "lexical":
            best = scores.get("max_similarity", 0.0)
            share = scores.get("draft_share", 0.0) or 0.0
            limit = policy.get("lexical_draft_share", DEFAULT_LEXICAL_DRAFT_SHARE)
            if share >= limit:
                source = scores.get("best_source") or "one source"
                if scores.get("best_source_supplied"):
                    source = f"{source} (supplied background)"
                reasons.append(
                    f"Plagiarism: {share:.0%} of the draft comes from {source} "
                    f"({scores.get('source_share', 0.0):.0%} of that source reused; threshold "
                    f"{limit:.0%} of the draft)"
                )
            elif best >= policy["lexical_threshold"]:
                source = scores.get("best_source") or "a source"
                if scores.get("best_source_supplied"):
                    source = f"{source} (supplied background)"
                reasons.append(
                    f"Plagiarism: {best:.0f}% of {source} appears in the draft "
                    f"(threshold {policy['lexical_threshold']:.0f}%)"
                )
        elif kind == "semantic" and semantic_holds(scores, policy):
            if "source_sentences_aligned" not in scores:  # stored before sources were aligned
                reasons.append(
                    f"Paraphrase: {scores['paraphrased_sentences']} of "
                    f"{scores.get('sentences_checked', 0)} sentences closely match sources "
                    f"(cosine ≥ {policy['semantic_threshold']:.2f})"
                )
            elif "pair_probability" in scores:
                from review.checks.semantic.pairs import describe

                reasons.append(
                    f"Paraphrase: {scores.get('source_draft_sentences', 0)} of "
                    f"{scores.get('sentences_checked', 0)} sentences restate "
                    f"{scores.get('best_source') or 'one source'} (paraphrase probability "
                    f"{scores['pair_probability']:.2f}, threshold {scores['pair_threshold']:.2f}; "
                    f"{describe(scores['pair_features'])})"
                )
            else:
                reasons.append(
                    f"Paraphrase: {scores.get('source_draft_sentences', 0)} of "
                    f"{scores.get('sentences_checked', 0)} sentences restate "
                    f"{scores.get('best_source') or 'one source'} "
                    f"({scores.get('source_share', 0.0):.0%} of its sentences; cosine ≥ "
                    f"{policy['semantic_threshold']:.2f}, threshold "
                    f"{policy['semantic_share']:.0%} of the draft)"
                )
    return _dedupe(reasons)


def unreadable(check: CheckOutcome) -> bool:
    """Whether the check did not run because it cannot read the draft's language."""
    return check["status"] != "ok" and bool((check.get("details") or {}).get("unreadable_language"))


def _informs(check: CheckOutcome, policy: PolicyView) -> bool:
    inform = policy.get("unreadable_language", DEFAULT_UNREADABLE_LANGUAGE) == "inform"
    return inform and unreadable(check)


def notes(checks: Sequence[CheckOutcome], policy: PolicyView) -> list[str]:
    """What the editor is told about a draft sent to the queue anyway: the checks that did not
    run because they cannot read its language (under ``unreadable_language == "inform"``)."""
    return _dedupe(
        [
            f"The {check['kind']} check did not run: {check.get('reason') or 'unknown'}"
            for check in checks
            if _informs(check, policy)
        ]
    )


def quality_reasons(quality: Mapping[str, Any], policy: PolicyView) -> list[str]:
    """The reasons a draft's quality signals hold it under ``policy`` (none while the
    project's quality hold is off, or for a draft written before the signals existed)."""
    if not policy.get("quality_hold") or not quality or quality.get("score") is None:
        return []
    reasons: list[str] = []
    floor = float(policy.get("quality_floor", DEFAULT_QUALITY_FLOOR))
    coverage = quality.get("coverage") or {}
    if quality.get("off_brief"):
        missing = ", ".join((coverage.get("missing") or [])[:6])
        reasons.append(
            f"Off brief: covers {len(coverage.get('found') or [])} of {coverage.get('terms', 0)} "
            f"key terms of the brief (missing: {missing})"
        )
    if float(quality["score"]) < floor:
        # What explains the score (the off-brief line explains the order, and has its own).
        explain = [r for r in quality.get("reasons") or [] if r != OFF_BRIEF_REASON]
        why = "; ".join(explain[:3])
        reasons.append(f"Quality: score {float(quality['score']):.2f} < floor {floor:.2f} ({why})")
    return reasons


def semantic_holds(scores: Mapping[str, Any], policy: PolicyView) -> bool:
    """Whether a semantic result's scores hold the draft under ``policy``.

    Per source: enough of the draft is aligned with one source (``source_draft_share``) and
    enough of that source is restated (``source_share``). Results stored before sources were
    aligned carry only the share of paraphrased sentences, judged as they were then.
    """
    if not scores.get("paraphrased_sentences"):
        return False
    if "source_draft_share" not in scores:
        return (scores.get("paraphrased_share") or 0.0) >= policy["semantic_share"]
    # The pair classifier decides (semantic/pairs.py); the policy's shares are floors.
    if "pair_probability" in scores and scores["pair_probability"] < scores["pair_threshold"]:
        return False
    return _restates_enough(scores.get("source_draft_share"), scores.get("source_share"), policy)


def _restates_enough(draft_share: Any, source_share: Any, policy: PolicyView) -> bool:
    limit = policy.get("semantic_source_share", DEFAULT_SEMANTIC_SOURCE_SHARE)
    return (draft_share or 0.0) >= policy["semantic_share"] and (source_share or 0.0) >= limit


def semantic_lead_scores(
    aligned: Sequence[Mapping[str, Any]],
    policy: PolicyView,
    *,
    name: Callable[[str], str | None] = lambda source: source,
    features: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The scores a semantic result keeps of its lead source (``semantic.align_sources``'s
    output, best first): the first source that holds the draft under ``policy``, else the one
    the draft restates most. ``name(source)`` is what the reason shows (a title).

    With ``features(alignment)`` (``semantic.pairs.pair_features`` of that source's aligned
    sentences) the pair classifier decides instead of the two shares: the lead source is the
    one it finds likeliest paraphrased, and its probability, threshold and features are kept."""
    if features is not None and aligned:
        from review.checks.semantic import pairs

        model = pairs.load_model()
        scored = []
        for a in aligned[:MAX_CLASSIFIED_SOURCES]:
            values = dict(features(a))
            scored.append((pairs.probability(values, model), a, values))
        best, lead_source, values = max(
            scored,
            key=lambda s: (
                s[0] >= model["threshold"]
                and _restates_enough(s[1]["draft_share"], s[1]["source_share"], policy),
                s[0],
            ),
        )
        return {
            "best_source": name(lead_source["source"]),
            "source_draft_sentences": lead_source["draft_sentences"],
            "source_draft_share": lead_source["draft_share"],
            "source_sentences_aligned": lead_source["source_sentences"],
            "source_share": lead_source["source_share"],
            "pair_probability": best,
            "pair_threshold": model["threshold"],
            "pair_features": values,
        }
    lead = next(
        (a for a in aligned if _restates_enough(a["draft_share"], a["source_share"], policy)),
        aligned[0] if aligned else None,
    )
    return {
        "best_source": name(lead["source"]) if lead else None,
        "source_draft_sentences": lead["draft_sentences"] if lead else 0,
        "source_draft_share": lead["draft_share"] if lead else 0.0,
        "source_sentences_aligned": lead["source_sentences"] if lead else 0,
        "source_share": lead["source_share"] if lead else 0.0,
    }


def _dedupe(reasons: list[str]) -> list[str]:
    seen: set[str] = set()
    return [r for r in reasons if not (r in seen or seen.add(r))]
