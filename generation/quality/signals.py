"""The quality signals of a draft and the one score that orders a job's candidates.

Each signal is a plain function of the text and what generation already had (the brief, the
finish reason, the mean log-probability of its tokens), so a job's candidates are scored once,
when they are written, without running a model again. Relevance needs sentence embeddings: it
is computed where the sentence model is already loaded, and says so where it is not.

The score (``quality_score``, 0..1, documented in docs/generation.md) is a weighted mean of the
components available; a component that could not be computed drops out and the others keep
their proportions. Brief coverage weighs most: an editor's first question is whether the draft
is about the brief at all.

The order of a job's candidates is on brief first (``rank_order``, ``best_index``): a candidate
flagged off brief (fewer than half of the brief's key terms) ranks below every on-brief one,
and the score orders each group. Coverage inside the weighted score alone let fluent, relevant
off-brief drafts outscore on-brief ones (docs/generation.md has the figures). Every consumer
(the job page and its live frames, the queue's best mark, the API, the benches) orders by these.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from generation.quality import brief as qb
from generation.quality import text as tx

SIGNALS_VERSION = 1
OFF_BRIEF_SHARE = 0.5  # covers fewer than half of the brief's key terms: off brief
REPETITIVE_SHARE = 0.2  # share of word 3-grams that repeat an earlier one
# The first reason of an off-brief draft: why a higher score may not be first (``rank_order``).
OFF_BRIEF_REASON = "Off brief: ranked after on-brief candidates"

WEIGHTS: dict[str, float] = {
    "coverage": 0.40,
    "relevance": 0.15,
    "specifics": 0.15,
    "fluency": 0.10,
    "completeness": 0.08,
    "repetition": 0.07,
    "length": 0.05,
}
REGISTER_PENALTY = 0.15
# A figure that contradicts the brief is the most dangerous error: it costs this on top.
CONTRADICTION_PENALTY = 0.1

Embed = Callable[[Sequence[str]], np.ndarray]


def repetition(text: str, n: int = 3) -> dict[str, Any]:
    """Share of the word ``n``-grams that repeat an earlier one, and the most repeated one."""
    ws = [w.lower() for w, _, _ in tx.words(text)]
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    if not grams:
        return {"share": 0.0, "repetitive": False, "top": "", "top_count": 0}
    counts = Counter(grams)
    top, top_count = counts.most_common(1)[0]
    share = 1.0 - len(counts) / len(grams)
    return {
        "share": round(share, 4),
        "repetitive": share >= REPETITIVE_SHARE,
        "top": " ".join(top) if top_count > 1 else "",
        "top_count": top_count,
    }


_CLEAN_END = re.compile(r"[.!?…][\"'”’)\]]*$|[\"”]$")


def completeness(text: str, finish_reason: str = "") -> dict[str, Any]:
    """``complete`` when the text ends a sentence; ``cut_off`` when it stops mid-sentence
    (``finish_reason`` "length": the token limit stopped it)."""
    stripped = text.rstrip()
    clean = bool(stripped) and bool(_CLEAN_END.search(stripped))
    return {
        "complete": clean,
        "state": "complete" if clean else "cut_off",
        "finish_reason": finish_reason,
        "tail": stripped[-40:],
    }


_TARGET_WORDS = re.compile(
    r"\b(?:about|around|roughly|in|of|under|at most|up to)?\s*(\d{2,4})\s*words?\b", re.I
)


def target_words(brief: str, max_new_tokens: int | None = None) -> tuple[int | None, str]:
    """The length a draft should have: "N words" when the brief or template asks for it,
    otherwise none (the token limit is a ceiling, not a target)."""
    m = _TARGET_WORDS.search(brief or "")
    if m:
        return int(m.group(1)), "asked in the brief"
    return None, ""


def length_fit(text: str, target: int | None, max_new_tokens: int | None = None) -> dict[str, Any]:
    """1.0 within 25% of the target word count, falling linearly to 0 at 100% off; with no
    target, 1.0 from 30 words up (a draft of a few words answers no brief)."""
    n = len(tx.words(text))
    if target:
        off = abs(n - target) / target
        fit = 1.0 if off <= 0.25 else max(0.0, 1.0 - (off - 0.25) / 0.75)
    else:
        fit = min(1.0, n / 30)
    return {"words": n, "target": target, "fit": round(fit, 3)}


_FIRST_PERSON = re.compile(
    r"\b(?:I|I'm|I’m|I've|I’ve|I'd|I’d|me|my|myself|in my (?:view|opinion)|"
    r"we (?:think|believe|feel))\b"
)
_OPINION = re.compile(
    r"\b(?:no morals|no conscience|disgrace(?:ful)?|shameful|shame on|corrupt|incompetent|"
    r"idiot(?:ic)?|stupid|liars?|pathetic|outrageous|despicable|should be ashamed|"
    r"this is what happens when|disastrous|ridiculous|evil|heroic|"
    r"(?:the|this) (?:government|president|party|mayor|council) (?:is|are) "
    r"(?:wrong|failing|right))\b",
    re.I,
)
_META = re.compile(
    r"\b(?:this (?:news )?(?:article|report|piece|story|post|text)|as an ai|"
    r"here is (?:a|the|your)|here's (?:a|the|your)|i hope (?:this|you)|feel free|let me know|"
    r"in this (?:article|report|post))\b",
    re.I,
)


def register(text: str, content_type: str = "news_report") -> dict[str, Any]:
    """Editorialising in a news report: first-person commentary, opinions about people or
    parties, text about the text. Quotations are left out (a quoted "I" is the source's).
    For other content types the hits are listed but do not mark the draft."""
    masked = text
    for q in tx.quotes(text):
        masked = masked[: q.start] + " " * (q.end - q.start) + masked[q.end :]
    hits = []
    for kind, pattern in (("first_person", _FIRST_PERSON), ("opinion", _OPINION), ("meta", _META)):
        for m in pattern.finditer(masked):
            hits.append({"kind": kind, "text": m.group(), "start": m.start(), "end": m.end()})
    applies = content_type in ("", "news_report")
    return {
        "applies": applies,
        "editorialising": applies and bool(hits),
        "hits": sorted(hits, key=lambda h: h["start"])[:20],
    }


def fluency(mean_logprob: float | None, tokens: int = 0) -> dict[str, Any]:
    """The mean natural-log probability of the draft's tokens under the model that wrote it,
    taken during decoding; ``score`` maps -4..0 nats onto 0..1."""
    if mean_logprob is None or not math.isfinite(mean_logprob):
        return {"available": False, "reason": "the backend did not report token probabilities"}
    return {
        "available": True,
        "mean_logprob": round(mean_logprob, 4),
        "perplexity": round(math.exp(-mean_logprob), 3),
        "tokens": tokens,
        "score": round(min(1.0, max(0.0, (mean_logprob + 4.0) / 4.0)), 4),
    }


def house_fluency(mean_logprob: float | None, tokens: int = 0, model: str = "") -> dict[str, Any]:
    """The mean natural-log probability of the draft's tokens under the project's fine-tuned
    house model (teacher-forced after the job's prompt): how much it reads like the house's own
    writing. Shown beside the score, not part of it (a project without a house model has none,
    and scores compare across projects)."""
    if mean_logprob is None or not math.isfinite(mean_logprob):
        return {"available": False, "model": model, "reason": "the house model gave no score"}
    return {
        "available": True,
        "model": model,
        "mean_logprob": round(mean_logprob, 4),
        "perplexity": round(math.exp(-mean_logprob), 3),
        "tokens": tokens,
    }


def relevance(text: str, brief: str, embed: Embed | None) -> dict[str, Any]:
    """Cosine of the draft's and the brief's sentence embeddings (``embed`` returns unit rows)."""
    if embed is None:
        return {"available": False, "reason": "the sentence model is not loaded here"}
    vectors = np.asarray(embed([brief, text]), dtype=np.float32)
    cosine = float(np.dot(vectors[0], vectors[1]))
    return {"available": True, "cosine": round(cosine, 4)}


def specifics_component(items: Sequence[Mapping[str, Any]]) -> float:
    """1.0 with nothing to verify; each invented specific costs 0.15 (0.08 when other candidates
    state it too), each contradiction 0.5."""
    cost = 0.0
    for s in items:
        if s.get("status") == "contradiction":
            cost += 0.5
        else:
            cost += 0.08 if s.get("others") else 0.15
    return max(0.0, 1.0 - cost)


def quality_score(signals: Mapping[str, Any]) -> tuple[float, dict[str, float]]:
    """The documented score: weighted mean of the available components minus the register
    penalty, clipped to 0..1; also returns the components."""
    parts: dict[str, float] = {"coverage": float(signals["coverage"]["share"])}
    rel = signals.get("relevance") or {}
    if rel.get("available"):
        parts["relevance"] = max(0.0, min(1.0, float(rel["cosine"])))
    parts["specifics"] = specifics_component(signals.get("unsupported") or [])
    flu = signals.get("fluency") or {}
    if flu.get("available"):
        parts["fluency"] = float(flu["score"])
    parts["completeness"] = 1.0 if signals["completeness"]["complete"] else 0.3
    parts["repetition"] = max(0.0, 1.0 - 2.5 * float(signals["repetition"]["share"]))
    parts["length"] = float(signals["length"]["fit"])
    total = sum(WEIGHTS[k] for k in parts)
    score = sum(WEIGHTS[k] * v for k, v in parts.items()) / total
    if (signals.get("register") or {}).get("editorialising"):
        score -= REGISTER_PENALTY
    items = signals.get("unsupported") or []
    score -= CONTRADICTION_PENALTY * sum(1 for s in items if s.get("status") == "contradiction")
    return round(max(0.0, min(1.0, score)), 4), {k: round(v, 4) for k, v in parts.items()}


def reasons(signals: Mapping[str, Any]) -> list[str]:
    """Short lines that explain the score, worst first; shown beside it."""
    out: list[str] = []
    if signals.get("off_brief"):
        out.append(OFF_BRIEF_REASON)
    cov = signals["coverage"]
    if cov["terms"]:
        line = f"Covers {len(cov['found'])} of {cov['terms']} brief terms"
        if cov["missing"]:
            line += f" (missing: {', '.join(cov['missing'][:6])})"
        out.append(line)
    items = signals.get("unsupported") or []
    contradictions = [s for s in items if s.get("status") == "contradiction"]
    for s in contradictions[:3]:
        out.append(f"Contradicts the brief: {s['text']} (brief: {s.get('contradicts', '')})")
    verify = [s for s in items if s.get("status") != "contradiction"]
    if verify:
        alone = sum(1 for s in verify if not s.get("others"))
        out.append(
            f"{len(verify)} specific(s) to verify ({alone} stated by no other candidate): "
            + ", ".join(s["text"][:40] for s in verify[:5])
        )
    reg = signals.get("register") or {}
    if reg.get("editorialising"):
        out.append("Editorialises: " + ", ".join(f"“{h['text']}”" for h in reg["hits"][:3]))
    if not signals["completeness"]["complete"]:
        out.append("Cut off mid-sentence")
    rep = signals["repetition"]
    if rep["repetitive"]:
        out.append(f"Repetitive: {rep['share']:.0%} of 3-word runs repeat (“{rep['top']}”)")
    rel = signals.get("relevance") or {}
    if rel.get("available"):
        out.append(f"Relevance to the brief {rel['cosine']:.2f}")
    else:
        out.append(f"Relevance not measured: {rel.get('reason', 'no sentence model')}")
    flu = signals.get("fluency") or {}
    if flu.get("available"):
        out.append(f"Fluency {flu['mean_logprob']:.2f} nats/token")
    house = signals.get("house_fluency") or {}
    if house.get("available"):
        out.append(f"House-model fluency {house['mean_logprob']:.2f} nats/token ({house['model']})")
    elif house:
        out.append(f"House-model fluency not measured: {house.get('reason', '')}")
    length = signals["length"]
    if length.get("target"):
        out.append(f"{length['words']} words for a target of {length['target']}")
    return out


def draft_signals(
    *,
    text: str,
    brief: str,
    variables: Mapping[str, Any] | None = None,
    sources: Sequence[str] | None = None,
    finish_reason: str = "",
    mean_logprob: float | None = None,
    tokens: int = 0,
    content_type: str = "news_report",
    max_new_tokens: int | None = None,
    embed: Embed | None = None,
) -> dict[str, Any]:
    """Every signal of one draft but the agreement across candidates (``job_signals``)."""
    brief_text = "\n".join(str(v) for v in (variables or {}).values()) or brief
    terms = qb.brief_terms(brief, variables)
    target, target_from = target_words(brief, max_new_tokens)
    return {
        "version": SIGNALS_VERSION,
        "brief_terms": [t["text"] for t in terms],
        "coverage": qb.coverage(text, terms),
        "relevance": relevance(text, brief_text, embed),
        "fluency": fluency(mean_logprob, tokens),
        "repetition": repetition(text),
        "completeness": completeness(text, finish_reason),
        "length": {**length_fit(text, target, max_new_tokens), "target_from": target_from},
        "unsupported": qb.unsupported_specifics(text, brief_text, sources),
        "register": register(text, content_type),
    }


def finish(signals: dict[str, Any]) -> dict[str, Any]:
    """Add the score, its components, the reasons and the off-brief mark (after agreement)."""
    score, parts = quality_score(signals)
    signals["score"] = score
    signals["components"] = parts
    signals["off_brief"] = bool(signals["coverage"]["terms"]) and (
        signals["coverage"]["share"] < OFF_BRIEF_SHARE
    )
    signals["reasons"] = reasons(signals)
    return signals


def job_signals(
    *, texts: Sequence[str], common: Mapping[str, Any], per_candidate: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The signals of every candidate of one job: ``common`` keyword arguments of
    :func:`draft_signals` (brief, variables, sources...) with ``per_candidate`` ones
    (finish_reason, mean_logprob, tokens), then the agreement across the candidates, the score
    and the reasons."""
    results = [
        draft_signals(text=t, **common, **extra)
        for t, extra in zip(texts, per_candidate, strict=True)
    ]
    marked = qb.agreement([r["unsupported"] for r in results])
    for r, items in zip(results, marked, strict=True):
        r["unsupported"] = items
        finish(r)
    return results


TOPUP_MAX = 4  # the most candidates a job may draw on top of those it asked for


# The logit bonus a top-up candidate's sampler gives the tokens of a brief term it has not
# written yet (``topup_steering``). Chosen on the dev briefs (bench/bench_quality.py, docs).
TOPUP_STEER_BIAS = 3.0


def topup_steering(terms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sampling settings a job's top-up adds to its own: steer the extra candidates
    towards the brief's key ``terms`` (``brief_terms``), recorded in each candidate's
    settings so that its seed reproduces it."""
    texts = [str(t["text"]) for t in terms if str(t.get("text", "")).strip()]
    return {"steer_terms": texts, "steer_bias": TOPUP_STEER_BIAS if texts else 0.0}


def needs_topup(results: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a job should draw more candidates: none of ``results`` (the finished
    candidates' signals) covers half of its brief's key terms, so no order of them puts an
    on-brief draft first. A brief with no key terms is never off brief."""
    return bool(results) and all(r.get("off_brief") for r in results)


def topup_note(*, drawn: int, first: int, covered: int) -> str:
    """The line the job page shows: "Drew 2 more: none of the first 4 covered the brief; 1
    of them does." (``covered``: how many of the ``drawn`` cover half of the brief)."""
    if not drawn:
        return ""
    after = (
        "none of them does either"
        if not covered
        else f"{'it' if drawn == 1 else f'{covered} of them'} does"
    )
    return f"Drew {drawn} more: none of the first {first} covered the brief; {after}."


def rank_key(quality: Mapping[str, Any] | None, index: int) -> tuple[bool, bool, float, int]:
    """The sort key of one candidate in the on-brief-first order: scored before unscored, on
    brief before off brief, then the higher score, then the lower index."""
    quality = quality or {}
    score = quality.get("score")
    return (score is None, bool(quality.get("off_brief")), -float(score or 0.0), index)


def rank_order(qualities: Sequence[Mapping[str, Any] | None]) -> list[int]:
    """The positions of ``qualities`` (each candidate's signals, or at least its ``score`` and
    ``off_brief``; None before it is scored) best first: the one order every consumer shows."""
    return sorted(range(len(qualities)), key=lambda i: rank_key(qualities[i], i))


def best_index(qualities: Sequence[Mapping[str, Any] | None]) -> int | None:
    """The candidate the on-brief-first order puts first (None when none is scored)."""
    order = rank_order(qualities)
    if not order or (qualities[order[0]] or {}).get("score") is None:
        return None
    return order[0]
