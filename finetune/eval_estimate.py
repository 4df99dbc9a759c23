"""How long an evaluation will take, said before it starts (``finetune.evaluation``).

An evaluation does two kinds of model work: it generates the candidates, and it scores texts
teacher-forced (``Backend.score_text``): the real document's opening under each variant's model
(its perplexity, at most ``REFERENCE_TOKENS`` tokens per document and variant) and, when the
project has a house model, every candidate under it (its fluency, at most ``max_new_tokens``
tokens a candidate). Both count in the estimate, each measured the same way:

- from the product's own measurements when there are some: generation from the models' last
  finished candidates (tokens per second), scoring from the last finished evaluations that
  scored with the same models (tokens scored per second of ``score_text``, per model, recorded
  on each run as ``measured_scoring``);
- otherwise on the worker, before the first document: a short generation (``TIMING_TOKENS``
  tokens) and one scoring step of each model that has no measured rate (the first document's
  opening, as the run will score it).

Scoring speed differs from generation speed and between backends (one forward pass over the
text on transformers, one step a token on the ONNX loop), so neither is derived from the other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from finetune.eval_scores import REFERENCE_TOKENS
from finetune.models import EvaluationRun, RunStatus
from generation.backends.types import SamplingSettings
from generation.models import Candidate

TIMING_TOKENS = 8
# Finished evaluations looked at for a measured scoring speed.
SCORING_HISTORY = 20


def measured_speed(model_ids: Sequence[int]) -> tuple[float | None, str]:
    """Tokens per second of these models' last finished candidates (the product's own
    measurement), or None when none has run yet."""
    rates = []
    for c in Candidate.objects.filter(
        job__model_id__in=model_ids, finished_at__isnull=False, completion_tokens__gt=1
    ).order_by("-finished_at")[:50]:
        if c.tokens_per_second:
            rates.append(c.tokens_per_second)
    if not rates:
        return None, "not measured yet"
    return statistics.median(rates), f"median of the last {len(rates)} candidates"


def measured_scoring_speed(model_ids: Iterable[int]) -> dict[int, float]:
    """Tokens scored per second by each of these models in the last finished evaluations that
    measured it (median over runs); a model no run measured is absent."""
    wanted = set(model_ids)
    seen: dict[int, list[float]] = {}
    for estimate in (
        EvaluationRun.objects.filter(status=RunStatus.SUCCEEDED)
        .order_by("-finished_at")
        .values_list("estimate", flat=True)[:SCORING_HISTORY]
    ):
        for key, rate in ((estimate or {}).get("measured_scoring") or {}).items():
            if int(key) in wanted and rate:
                seen.setdefault(int(key), []).append(float(rate))
    return {pk: statistics.median(rates) for pk, rates in seen.items()}


def scoring_work(
    *,
    n_docs: int,
    k: int,
    variants: Sequence[dict[str, Any]],
    max_new_tokens: int,
    house_id: int | None,
) -> dict[int, int]:
    """Tokens each model will score at most: the real document's opening per document under
    each variant's model, and every candidate under the house model (when there is one)."""
    work: dict[int, int] = {}
    for v in variants:
        work[v["model_id"]] = work.get(v["model_id"], 0) + n_docs * REFERENCE_TOKENS
        if house_id is not None:
            work[house_id] = work.get(house_id, 0) + n_docs * k * max_new_tokens
    return work


def _complete(estimate: dict[str, Any]) -> dict[str, Any]:
    """Fill ``generation_seconds``, ``scoring_seconds`` and their sum ``seconds`` from the
    token counts and rates (None where a rate is missing: the worker times it first)."""
    rate = estimate.get("tokens_per_second")
    generation = estimate["tokens"] / rate if rate else None
    rates = estimate.get("scoring_tokens_per_second") or {}
    work = estimate.get("scored_tokens") or {}
    missing = [pk for pk in work if not rates.get(pk)]
    scoring = None if missing else sum(n / rates[pk] for pk, n in work.items())
    total = None if generation is None or scoring is None else generation + scoring
    return {
        **estimate,
        "generation_seconds": generation,
        "scoring_seconds": scoring,
        "seconds": total,
    }


def estimate_for(
    *,
    n_docs: int,
    k: int,
    variants: Sequence[dict[str, Any]],
    max_new_tokens: int,
    house_id: int | None = None,
) -> dict[str, Any]:
    """The estimate a run is created with: tokens generated and scored at most, at the product's
    measured speeds; ``seconds`` None when one is missing (the worker measures it)."""
    tokens = n_docs * k * len(variants) * max_new_tokens
    rate, source = measured_speed([v["model_id"] for v in variants])
    work = scoring_work(
        n_docs=n_docs, k=k, variants=variants, max_new_tokens=max_new_tokens, house_id=house_id
    )
    scoring = measured_scoring_speed(work)
    # JSON keys are strings: the model ids are kept as such.
    return _complete(
        {
            "tokens": tokens,
            "tokens_per_second": rate,
            "source": source,
            "scored_tokens": {str(pk): n for pk, n in work.items()},
            "scoring_tokens_per_second": {str(pk): r for pk, r in scoring.items()},
            "scoring_source": (
                "the last evaluations that scored with these models"
                if len(scoring) == len(work)
                else "not measured yet"
            ),
        }
    )


class ScoringMeter:
    """Seconds and tokens of every ``score_text`` call of a run, per model: the run's measured
    scoring speed (``measured_scoring``), which later estimates use."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self.tokens: dict[int, int] = {}

    def wrap(self, backend: Any, model_id: int) -> Any:
        return None if backend is None else _Metered(backend, model_id, self)

    def add(self, model_id: int, tokens: int, seconds: float) -> None:
        self.seconds[model_id] = self.seconds.get(model_id, 0.0) + seconds
        self.tokens[model_id] = self.tokens.get(model_id, 0) + tokens

    def rates(self) -> dict[str, float]:
        return {
            str(pk): self.tokens[pk] / s
            for pk, s in self.seconds.items()
            if s > 0 and self.tokens.get(pk)
        }


class _Metered:
    """A backend whose ``score_text`` calls are timed into a ``ScoringMeter``."""

    def __init__(self, backend: Any, model_id: int, meter: ScoringMeter) -> None:
        self._backend, self._model_id, self._meter = backend, model_id, meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def score_text(self, **kwargs: Any) -> Any:
        started = time.monotonic()
        score = self._backend.score_text(**kwargs)
        self._meter.add(self._model_id, score.tokens, time.monotonic() - started)
        return score


def time_before_start(
    run: EvaluationRun,
    *,
    backend: Any,
    brief: str,
    reference: str,
    scorers: dict[int, tuple[Any, int]],
) -> None:
    """What the run's estimate lacks, timed on the worker before the first document: a short
    generation (``TIMING_TOKENS`` tokens, k at once) when no candidate of the models had run,
    and one scoring step of each model in ``scorers`` (model id -> its backend and how many
    tokens the run scores at a time with it) that no earlier evaluation measured. Saves the
    estimate with its ``seconds`` (generation plus scoring)."""
    estimate = dict(run.estimate)
    if not estimate.get("tokens_per_second"):
        prompt = backend.render_prompt(system="", user=brief)
        short = SamplingSettings.from_dict({**run.settings, "max_new_tokens": TIMING_TOKENS})
        started = time.monotonic()
        outputs = backend.generate(prompt=prompt, n=run.k, seeds=list(range(run.k)), settings=short)
        seconds = time.monotonic() - started
        tokens = sum(o.completion_tokens for o in outputs)
        if tokens and seconds > 0:
            estimate["tokens_per_second"] = tokens / seconds
            estimate["source"] = (
                f"a short timing on the worker ({tokens} tokens, {len(outputs)} at once)"
            )
    rates = dict(estimate.get("scoring_tokens_per_second") or {})
    work = dict(estimate.get("scored_tokens") or {})
    timed = []
    for pk, (scorer, max_tokens) in scorers.items():
        if rates.get(str(pk)) or str(pk) not in work:
            continue
        prompt = scorer.render_prompt(system="", user=brief)
        started = time.monotonic()
        try:
            score = scorer.score_text(prompt=prompt, text=reference, max_tokens=max_tokens)
        except NotImplementedError:
            work.pop(str(pk))  # no log-probabilities: the run scores nothing with it either
            continue
        seconds = time.monotonic() - started
        if score.tokens and seconds > 0:
            rates[str(pk)] = score.tokens / seconds
            timed.append(f"{score.tokens} tokens")
    if timed:
        estimate["scoring_source"] = f"a scoring step timed on the worker ({', '.join(timed)})"
    estimate["scoring_tokens_per_second"] = rates
    estimate["scored_tokens"] = work
    run.estimate = _complete(estimate)
    EvaluationRun.objects.filter(pk=run.pk).update(estimate=run.estimate)
