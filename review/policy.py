"""Routing a checked draft: the project's thresholds decide between the queue and a hold.

Plain functions over check results (the dicts stored in CheckResult), so every threshold can be
tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict

from review.checks.ethics import DEFAULT_RULES

# Defaults chosen on the toxicity stand-in's calibration set (``python -m
# review.checks.toxicity_head calibrate``: per category, the lowest 0.05 step from 0.3 that clears
# by 0.01 the scores of all its harmless texts, the default model's drafts of the starter
# templates and hand-written news about crime and war and ad copy). Never tuned on the held-out sets
# the stand-in's figures are measured on. A project on Detoxify may want its own: its admin
# measures them on the newsroom's text with ``manage.py toxicity_eval``.
DEFAULT_TOXICITY_THRESHOLDS: dict[str, float] = {
    "toxicity": 0.8,
    "severe_toxicity": 0.3,
    "obscene": 0.3,
    "threat": 0.4,
    "insult": 0.3,
    "identity_attack": 0.3,
    "sexual_explicit": 0.5,
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
# ...and they restate this share of that source's sentences. Chosen on the labelled sets of
# bench/bench_review.py (the default model's paraphrases of archive paragraphs against
# paragraphs of other addresses on the same topics); see review/checks/semantic.py.
DEFAULT_SEMANTIC_SOURCE_SHARE = 0.25
# Hits of these rule kinds hold a draft; claims needing a source are only highlighted.
DEFAULT_BLOCKING_RULE_KINDS = ["blocked_term", "regex", "pii", "disclosure"]


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
    }


class PolicyView(TypedDict):
    toxicity_thresholds: Mapping[str, float]
    lexical_threshold: float
    lexical_draft_share: NotRequired[float]
    semantic_threshold: float
    semantic_share: float
    semantic_source_share: NotRequired[float]
    blocking_rule_kinds: Sequence[str]


class CheckOutcome(TypedDict, total=False):
    kind: str
    status: str
    reason: str
    scores: dict[str, Any]
    details: dict[str, Any]


def route(checks: Sequence[CheckOutcome], policy: PolicyView) -> list[str]:
    """The reasons to hold the draft; an empty list sends it to the queue.

    A check that did not run is always a reason: a draft never passes unchecked.
    """
    reasons: list[str] = []
    for check in checks:
        kind = check["kind"]
        if check["status"] != "ok":
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
                reasons.append(
                    f"Plagiarism: {share:.0%} of the draft comes from {source} "
                    f"({scores.get('source_share', 0.0):.0%} of that source reused; threshold "
                    f"{limit:.0%} of the draft)"
                )
            elif best >= policy["lexical_threshold"]:
                source = scores.get("best_source") or "a source"
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
    return _restates_enough(scores.get("source_draft_share"), scores.get("source_share"), policy)


def _restates_enough(draft_share: Any, source_share: Any, policy: PolicyView) -> bool:
    limit = policy.get("semantic_source_share", DEFAULT_SEMANTIC_SOURCE_SHARE)
    return (draft_share or 0.0) >= policy["semantic_share"] and (source_share or 0.0) >= limit


def semantic_lead_scores(
    aligned: Sequence[Mapping[str, Any]],
    policy: PolicyView,
    *,
    name: Callable[[str], str | None] = lambda source: source,
) -> dict[str, Any]:
    """The scores a semantic result keeps of its lead source (``semantic.align_sources``'s
    output, best first): the first source that holds the draft under ``policy``, else the one
    the draft restates most. ``name(source)`` is what the reason shows (a title)."""
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
