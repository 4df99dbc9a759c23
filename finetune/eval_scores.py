"""Scores of an evaluation's candidates against the real document, and the model-based ones:
the real document's perplexity under the model under test (``Backend.score_text``) and the
candidates' fluency under the project's house model. Used by ``finetune.evaluation``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from generation.quality import brief_terms, coverage, unsupported_specifics
from generation.services.quality import house_model  # noqa: F401 (this module's API)

# Tokens of a real document scored for its perplexity (its opening: a long address would take
# as long as generating it, one token a step on the ONNX loop).
REFERENCE_TOKENS = 256


class Scorer:
    """ROUGE-L, embedding similarity, coverage and unsupported specifics of one candidate."""

    def __init__(self) -> None:
        from rouge_score import rouge_scorer

        self.rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        self.embedder: Any = None
        self.embed_note = ""
        try:
            from review.services.embedding import get_embedder

            self.embedder = get_embedder()
        except Exception as exc:  # the model is missing here: say so, score the rest
            self.embed_note = f"not measured: {type(exc).__name__}: {exc}"

    def score(
        self, *, text: str, reference: str, brief: str, sources: Sequence[str]
    ) -> dict[str, Any]:
        rouge_l = self.rouge.score(reference, text)["rougeL"].fmeasure if text.strip() else 0.0
        similarity = None
        if self.embedder is not None and text.strip():
            vectors = self.embedder.encode([reference, text])
            similarity = float(vectors[0] @ vectors[1])
        return {
            "rouge_l": round(float(rouge_l), 4),
            "embedding_similarity": None if similarity is None else round(similarity, 4),
            "brief_coverage": round(float(coverage(text, brief_terms(brief))["share"]), 4),
            "unsupported_specifics": len(unsupported_specifics(text, brief, sources)),
        }


def pooled_perplexity(rows: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    """One perplexity over the documents of ``rows`` (each counted once, whatever its number of
    candidates): exp of minus the total log-likelihood over the total tokens scored."""
    per_doc: dict[Any, tuple[float, int]] = {}
    for r in rows:
        ppl, n = r.get("perplexity"), int(r.get("reference_tokens") or 0)
        if ppl is not None and n > 0:
            per_doc[r["document_id"]] = (-math.log(ppl) * n, n)
    tokens = sum(n for _, n in per_doc.values())
    if not tokens:
        return None, 0
    return round(math.exp(-sum(lp for lp, _ in per_doc.values()) / tokens), 3), tokens


def house_fluency(house: Any, *, user: str, text: str) -> float | None:
    """Mean log-probability per token of ``text`` under the house model's backend, after
    ``user`` in its own chat template (None: nothing to score, or it cannot tell)."""
    if house is None or not text.strip():
        return None
    try:
        score = house.score_text(prompt=house.render_prompt(system="", user=user), text=text)
    except NotImplementedError:
        return None
    mean = score.mean_logprob
    return None if mean is None else round(mean, 4)


def reference_perplexity(backend: Any, *, prompt: str, text: str) -> tuple[float | None, int, str]:
    """The real document's perplexity after ``prompt`` under ``backend``, the tokens scored, and
    why it is missing ("" when measured)."""
    try:
        score = backend.score_text(prompt=prompt, text=text, max_tokens=REFERENCE_TOKENS)
    except NotImplementedError as exc:
        return None, 0, f"not measured: {exc}"
    ppl = score.perplexity
    return (None if ppl is None else round(ppl, 4)), score.tokens, ""
