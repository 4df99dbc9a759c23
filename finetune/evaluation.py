"""Evaluation against real articles: the held-out test step of the fine-tuning method.

Decisions:
- The held-out set is drawn from the project's archive, shuffled with the evaluation's seed, and
  recorded on the run (``document_ids``). A tuned model's training set is not stored by its
  fine-tune run, so it is recomputed the way the run chose it (``finetune.data.examples`` and
  ``split_examples`` with the run's data selection and seed; train and validation both count as
  used, validation picked the checkpoint), following ``base_model`` back through earlier runs.
  The ids found are kept (``training_ids``); asking for one is refused (``document_ids``
  names them). The check is as good as the archive is unchanged since the run.
- Each document becomes a brief (its title and first sentence); each variant writes k candidates
  through the product's backends (``get_backend``, the chat template, grounding's retrieval and
  ``fit_background``), as a job without a template would, but keeps no drafts: an evaluation
  must not fill the review queue. Grounding never supplies the document under test itself.
- Scores against the real document: ROUGE-L F1 (``rouge-score``), cosine of the review check's
  sentence embeddings (not measured when that model is missing), brief coverage and unsupported
  specifics (``generation.quality``).
- Perplexity of the real document under the model under test: its tokens after the first
  sentence (the brief gives that one), at most ``REFERENCE_TOKENS``, teacher-forced after the
  variant's own prompt through the backend the studio loads (``Backend.score_text``); pooled as
  total log-likelihood over total tokens. A backend with no log-probabilities (a remote server)
  leaves it empty and the run says why.
- Fluency under the house model (the project's newest enabled fine-tuned model): each
  candidate's mean token log-probability under it (``house_fluency``); the run records which
  model (``estimate["house_model"]``).
- The estimate said before the start counts generation and the scoring steps (perplexity, house
  fluency), each at its measured speed (``finetune.eval_estimate``).
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contentstudio.heartbeat import Heartbeat
from contentstudio.models import Project
from finetune import data as data_mod
from finetune import rules
from finetune.eval_estimate import (  # noqa: F401 (TIMING_TOKENS, measured_speed: this module's API)
    TIMING_TOKENS,
    ScoringMeter,
    estimate_for,
    measured_speed,
    time_before_start,
)
from finetune.eval_scores import (
    REFERENCE_TOKENS,
    Scorer,
    house_fluency,
    house_model,
    pooled_perplexity,
    reference_perplexity,
)
from finetune.models import EvaluationRun, FineTuneRun, RunStatus
from finetune.selectors import base_model_choices
from finetune.training.examples import split_examples
from generation import grounding
from generation.backends import get_backend
from generation.backends.types import SamplingSettings
from generation.model_runtime import backend_config
from generation.models import LanguageModel
from review.models import ArchiveDocument

ROW_FIELDS = [
    "variant",
    "document_id",
    "title",
    "candidate",
    "rouge_l",
    "embedding_similarity",
    "brief_coverage",
    "unsupported_specifics",
    "perplexity",
    "reference_tokens",
    "house_fluency",
    "completion_tokens",
    "finish_reason",
    "background_ids",
    "text",
]
METRICS = [
    "rouge_l",
    "embedding_similarity",
    "brief_coverage",
    "unsupported_specifics",
    "house_fluency",
]
MAX_DOCUMENTS, MAX_K, MAX_VARIANTS, MAX_GROUNDING = 200, 8, 8, 10
_SENTENCE_RE = re.compile(r"(.+?[.!?])(\s|$)", re.S)


# --- The split --------------------------------------------------------------------------------


def _archive_ids(source: str) -> int | None:
    return int(source.split(":", 1)[1]) if source.startswith("archive:") else None


def training_documents(model: LanguageModel) -> dict[int, list[int]]:
    """Archive document ids each fine-tune run behind ``model`` trained or validated on, by run
    id (empty for a model no run produced)."""
    out: dict[int, list[int]] = {}
    seen: set[int] = set()
    current: LanguageModel | None = model
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        run = FineTuneRun.objects.filter(result_model=current).first()
        if run is None:
            break
        settings, _ = rules.parse_settings(run.settings)
        examples = data_mod.examples(project_id=run.project_id, spec=run.data)
        ids: list[int] = []
        if any(e.source.startswith("archive:") for e in examples):
            split = split_examples(examples, settings)
            for example in [*split.train, *split.validation]:
                pk = _archive_ids(example.source)
                if pk is not None:
                    ids.append(pk)
        out[run.pk] = sorted(ids)
        current = run.base_model
    return out


def brief_of_document(doc: ArchiveDocument) -> str:
    """Title and first sentence: what an editor would have asked for."""
    text = " ".join(doc.text.split())
    match = _SENTENCE_RE.match(text)
    first = (match.group(1) if match else text[:300]).strip()
    return f"{doc.title.strip()}\n{first}".strip() if doc.title.strip() else first


def rest_of_document(doc: ArchiveDocument) -> str:
    """The document after what its brief already gives (its first sentence): the text the
    model would have had to write, scored for the perplexity. A one-sentence document is scored
    whole (nothing else is left)."""
    text = " ".join(doc.text.split())
    match = _SENTENCE_RE.match(text)
    rest = text[match.end() :].strip() if match else ""
    return rest or text


# --- Creating a run ---------------------------------------------------------------------------


def _clean_variants(project: Project, variants: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not variants:
        raise ValidationError({"variants": ["Give at least one variant (a model)."]})
    if len(variants) > MAX_VARIANTS:
        raise ValidationError({"variants": [f"At most {MAX_VARIANTS} variants in one run."]})
    out = []
    for number, v in enumerate(variants, start=1):
        model = base_model_choices(project=project).filter(pk=v.get("model_id")).first()
        if model is None:
            raise ValidationError(
                {"variants": [f"Variant {number}: no such model enabled for this project."]}
            )
        try:
            ground = int(v.get("grounding") or 0)
        except (TypeError, ValueError):
            ground = -1
        if not 0 <= ground <= MAX_GROUNDING:
            raise ValidationError(
                {"variants": [f"Variant {number}: grounding is 0 to {MAX_GROUNDING} passages."]}
            )
        label = f"{model.name}, " + (f"grounded ({ground})" if ground else "no grounding")
        out.append({"label": label, "model_id": model.pk, "model": model.name, "grounding": ground})
    return out


def evaluation_create(
    *,
    project: Project,
    user: Any,
    variants: Sequence[dict[str, Any]],
    n_documents: int = 5,
    k: int = 2,
    seed: int = 0,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    document_ids: Sequence[int] | None = None,
    enqueue: bool = True,
) -> EvaluationRun:
    """Validate, draw (or check) the held-out set, estimate, and queue the run on the worker.
    Raises ValidationError keyed by the field at fault."""
    cleaned = _clean_variants(project, variants)
    if not 1 <= k <= MAX_K:
        raise ValidationError({"k": [f"Candidates per document: 1 to {MAX_K}."]})
    if not 1 <= max_new_tokens <= 1024:
        raise ValidationError({"max_new_tokens": ["Max new tokens: 1 to 1024."]})
    if not 0.0 < temperature <= 2.0:
        raise ValidationError({"temperature": ["Temperature: above 0, at most 2."]})
    trained: dict[int, set[int]] = {}  # archive id -> fine-tune run ids
    for v in cleaned:
        for run_id, ids in training_documents(LanguageModel.objects.get(pk=v["model_id"])).items():
            for pk in ids:
                trained.setdefault(pk, set()).add(run_id)
    archive = ArchiveDocument.objects.filter(project=project)
    if document_ids:
        wanted = sorted({int(i) for i in document_ids})
        found = set(archive.filter(pk__in=wanted).values_list("pk", flat=True))
        missing = [i for i in wanted if i not in found]
        if missing:
            raise ValidationError(
                {"document_ids": [f"Not in this project's archive: {missing[:10]}."]}
            )
        overlap = [i for i in wanted if i in trained]
        if overlap:
            runs = sorted({r for i in overlap for r in trained[i]})
            raise ValidationError(
                {
                    "document_ids": [
                        f"Documents {overlap[:10]} were in the training set of fine-tune run(s) "
                        f"{runs}: a held-out evaluation cannot use them."
                    ]
                }
            )
        chosen = wanted
    else:
        if not 1 <= n_documents <= MAX_DOCUMENTS:
            raise ValidationError({"n_documents": [f"Documents: 1 to {MAX_DOCUMENTS}."]})
        pool = [
            pk for pk in archive.order_by("pk").values_list("pk", flat=True) if pk not in trained
        ]
        if not pool:
            raise ValidationError(
                {"n_documents": ["No archive document is left that the models did not train on."]}
            )
        random.Random(seed).shuffle(pool)
        chosen = sorted(pool[:n_documents])
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    run = EvaluationRun.objects.create(
        project=project,
        created_by=user,
        variants=cleaned,
        settings=settings,
        k=k,
        seed=seed,
        document_ids=chosen,
        training_ids=sorted(trained),
        total=len(chosen) * len(cleaned),
        estimate=estimate_for(
            n_docs=len(chosen),
            k=k,
            variants=cleaned,
            max_new_tokens=max_new_tokens,
            house_id=house.pk if (house := house_model(project.pk)) else None,
        ),
    )
    if enqueue:
        from finetune.tasks import evaluation_run

        transaction.on_commit(lambda: evaluation_run.delay(run.pk))
    return run


def evaluation_cancel(*, run: EvaluationRun) -> EvaluationRun:
    """A queued run ends at once; a running one stops before its next candidate step."""
    now = timezone.now()
    if EvaluationRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, cancel_requested_at=now, finished_at=now
    ):
        pass
    else:
        EvaluationRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            cancel_requested_at=now
        )
    run.refresh_from_db()
    return run


# --- Scoring ----------------------------------------------------------------------------------


def summary(run: EvaluationRun) -> list[dict[str, Any]]:
    """Per variant: the mean of each metric over its candidates (None where not measured)."""
    out = []
    for v in run.variants:
        rows = [r for r in run.rows if r["variant"] == v["label"]]
        item: dict[str, Any] = {"variant": v["label"], "candidates": len(rows)}
        for metric in METRICS:
            values = [r[metric] for r in rows if r.get(metric) is not None]
            item[metric] = round(statistics.fmean(values), 4) if values else None
        item["perplexity"], item["reference_tokens"] = pooled_perplexity(rows)
        out.append(item)
    return out


# --- The worker's side ------------------------------------------------------------------------


def _cancelled(run_id: int) -> bool:
    return EvaluationRun.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()


def _ground(
    *, project_id: int, doc_id: int, brief: str, k: int, backend: Any, max_new_tokens: int
) -> tuple[str, str, list[str], list[int]]:
    """The system text and user message with up to ``k`` archive passages (never from the
    document under test; in the grounding's default layout), the passages' texts and their
    documents."""
    sources, _info = grounding.retrieve(project_id=project_id, query=brief, k=k + 3)
    sources = [s for s in sources if s.get("document_id") != doc_id][:k]
    system, user, record = grounding.fit_for_backend(
        backend, sources=sources, user_text=brief, brief=brief, max_new_tokens=max_new_tokens
    )
    ids = [s["document_id"] for s in record.get("sources", []) if "document_id" in s]
    return system, user, grounding.supplied_texts(record), ids


def evaluation_execute(
    *, run_id: int, on_item: Callable[[EvaluationRun], None] | None = None
) -> EvaluationRun:
    """Run a queued evaluation to its end (worker or command). Idempotent: a run that is not
    queued any more is left alone."""
    now = timezone.now()
    if not EvaluationRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    ):
        return EvaluationRun.objects.get(pk=run_id)
    run = EvaluationRun.objects.get(pk=run_id)

    def beat() -> bool:
        running = EvaluationRun.objects.filter(pk=run_id, status=RunStatus.RUNNING)
        return running.update(heartbeat_at=timezone.now()) == 1

    try:
        with Heartbeat(
            beat,
            interval=django_settings.GENERATION_HEARTBEAT_INTERVAL,
            name=f"evaluation-{run_id}",
            beat_now=False,
        ):
            _execute(run, on_item)
    except Exception as exc:
        EvaluationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
    run.refresh_from_db()
    return run


def _execute(run: EvaluationRun, on_item: Callable[[EvaluationRun], None] | None) -> None:
    docs = {d.pk: d for d in ArchiveDocument.objects.filter(pk__in=run.document_ids)}
    scorer = Scorer()
    sampling = SamplingSettings.from_dict(run.settings)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    tokens = 0
    perplexity_notes: dict[str, str] = {}
    house = house_model(run.project_id)
    house_backend = None
    # Every scoring step is timed per model: the run's measured scoring speed, which later
    # estimates use (finetune.eval_estimate).
    meter = ScoringMeter()
    if house is not None:
        house_backend = get_backend(
            backend_config(house), cache_root=django_settings.MODEL_CACHE_DIR
        )
        run.estimate = {**run.estimate, "house_model": {"id": house.pk, "name": house.name}}
    else:
        run.estimate = {
            **run.estimate,
            "house_model": {"note": "the project has no fine-tuned model of its own"},
        }
    if run.estimate.get("seconds") is None:
        # The generation speed or a scoring speed is not measured yet: time them first.
        scorers = {
            v["model_id"]: (_backend_of(v["model_id"]), REFERENCE_TOKENS) for v in run.variants
        }
        if house is not None:
            scorers[house.pk] = (house_backend, sampling.max_new_tokens)
        first = docs[run.document_ids[0]]
        time_before_start(
            run,
            backend=scorers[run.variants[0]["model_id"]][0],
            brief=brief_of_document(first),
            reference=rest_of_document(first),
            scorers=scorers,
        )
    if house is not None:
        house_backend = meter.wrap(house_backend, house.pk)
    for variant in run.variants:
        backend = _backend_of(variant["model_id"])
        scoring = meter.wrap(backend, variant["model_id"])
        for doc_id in run.document_ids:
            if _cancelled(run.pk):
                _end(run, rows, RunStatus.CANCELLED, meter)
                return
            doc = docs[doc_id]
            brief = brief_of_document(doc)
            system, user, sources, background_ids = "", brief, [], []
            if variant["grounding"]:
                system, user, sources, background_ids = _ground(
                    project_id=run.project_id,
                    doc_id=doc.pk,
                    brief=brief,
                    k=variant["grounding"],
                    backend=backend,
                    max_new_tokens=sampling.max_new_tokens,
                )
            prompt = backend.render_prompt(system=system, user=user)
            outputs = backend.generate(
                prompt=prompt,
                n=run.k,
                seeds=[run.seed * 1000 + i for i in range(run.k)],
                settings=sampling,
                should_stop=lambda: _cancelled(run.pk),
                preamble=backend.preamble(system=system),
            )
            ppl, ref_tokens, why = reference_perplexity(
                scoring, prompt=prompt, text=rest_of_document(doc)
            )
            if why:
                perplexity_notes[variant["label"]] = why
            for out in outputs:
                tokens += out.completion_tokens
                rows.append(
                    {
                        "variant": variant["label"],
                        "document_id": doc.pk,
                        "title": doc.title,
                        "candidate": out.index,
                        **scorer.score(
                            text=out.text, reference=doc.text, brief=brief, sources=sources
                        ),
                        "perplexity": ppl,
                        "reference_tokens": ref_tokens,
                        "house_fluency": house_fluency(house_backend, user=user, text=out.text),
                        "completion_tokens": out.completion_tokens,
                        "finish_reason": out.finish_reason,
                        "background_ids": background_ids,
                        "text": out.text,
                    }
                )
            elapsed = time.monotonic() - started
            run.done += 1
            run.rows = rows
            update: dict[str, Any] = {"done": run.done, "rows": rows}
            if tokens and elapsed > 0:
                rate = tokens / elapsed
                left = (run.total - run.done) * run.k * sampling.max_new_tokens / rate
                run.estimate = {**run.estimate, "measured_tokens_per_second": rate, "left": left}
                update["estimate"] = run.estimate
            EvaluationRun.objects.filter(pk=run.pk).update(**update)
            if on_item is not None:
                on_item(run)
    if scorer.embed_note:
        run.estimate = {**run.estimate, "embedding": scorer.embed_note}
    if perplexity_notes:
        run.estimate = {**run.estimate, "perplexity": perplexity_notes}
    _end(run, rows, RunStatus.SUCCEEDED, meter)


def evaluations_sweep() -> int:
    """Fail running evaluations whose worker stopped beating (it crashed or was killed);
    what was scored before is kept. Called by the periodic fine-tuning sweep."""
    cutoff = timezone.now() - timezone.timedelta(seconds=django_settings.GENERATION_STALE_AFTER)
    return EvaluationRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        error="The worker running this evaluation stopped responding (it crashed or was killed). "
        "The scores so far are kept; start a new evaluation for the rest.",
    )


def _backend_of(model_id: int) -> Any:
    model = LanguageModel.objects.get(pk=model_id)
    return get_backend(backend_config(model), cache_root=django_settings.MODEL_CACHE_DIR)


def _end(run: EvaluationRun, rows: list[dict[str, Any]], status: str, meter: ScoringMeter) -> None:
    if meter.rates():
        run.estimate = {**run.estimate, "measured_scoring": meter.rates()}
    EvaluationRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, rows=rows, finished_at=timezone.now(), estimate=run.estimate
    )
