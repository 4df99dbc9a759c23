"""Writes of the review app's automated half: policies, the checks pipeline, the archive.

The checks pipeline: a new or edited draft moves to ``checking`` and a task on queue ``review``
runs every check (toxicity, ethics rules, lexical and semantic plagiarism), stores one
CheckResult per check, tells watchers after each, then routes the draft with the project's
policy: ``awaiting_review``, or ``held`` with the reasons. A check that cannot run is stored as
``not_run`` with the reason and holds the draft: nothing passes unchecked.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from contentstudio.errors import Conflict, InvalidTransition
from contentstudio.html import html_to_text
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from generation import stream
from generation.models import Draft, DraftStatus
from review import archive, indexes, lifecycle, policy
from review.checks import ethics, plagiarism, semantic, toxicity
from review.models import (
    ArchiveDocument,
    CheckKind,
    CheckResult,
    CheckStatus,
    CheckSummary,
    ImportFormat,
    ImportRun,
    ImportStatus,
    PassageSentence,
    Policy,
    SourcePassage,
)

logger = logging.getLogger(__name__)

EMBED_BATCH = 128  # passages per embedding task run: short, so checks interleave with it


# --- Policy -------------------------------------------------------------------------------------


def policy_get(*, project: Project) -> Policy:
    found = Policy.objects.filter(project=project).first()
    if found is not None:
        return found
    Policy.objects.get_or_create(project=project, defaults=policy.default_policy())
    return Policy.objects.get(project=project)


def policy_update(
    *,
    project: Project,
    user: AbstractBaseUser,
    toxicity_thresholds: dict[str, Any],
    lexical_threshold: Any,
    semantic_threshold: Any,
    semantic_share: Any,
    blocking_rule_kinds: list[str],
    rules: dict[str, Any],
) -> Policy:
    """Validate and save; errors name the field. Only project admins."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    errors: dict[str, list[str]] = {}

    def number(field: str, value: Any, low: float, high: float) -> float:
        try:
            result = float(value)
        except (TypeError, ValueError):
            errors.setdefault(field, []).append(f"{value!r} is not a number.")
            return low
        if not low <= result <= high:
            errors.setdefault(field, []).append(f"Must be between {low:g} and {high:g}.")
        return result

    thresholds = {
        category: number(f"toxicity_thresholds.{category}", value, 0.0, 1.0)
        for category, value in (toxicity_thresholds or {}).items()
    }
    unknown = sorted(set(thresholds) - set(policy.DEFAULT_TOXICITY_THRESHOLDS))
    for category in unknown:
        errors.setdefault(f"toxicity_thresholds.{category}", []).append("Unknown category.")
    lexical = number("lexical_threshold", lexical_threshold, 1.0, 100.0)
    sem = number("semantic_threshold", semantic_threshold, 0.5, 1.0)
    share = number("semantic_share", semantic_share, 0.0, 1.0)
    bad_kinds = sorted(set(blocking_rule_kinds) - set(policy.RULE_KINDS))
    if bad_kinds:
        errors.setdefault("blocking_rule_kinds", []).append(
            f"Unknown rule kinds: {', '.join(bad_kinds)}."
        )
    for message in ethics.validate_rules(rules):
        errors.setdefault("rules", []).append(message)
    if errors:
        raise ValidationError(errors)
    current = policy_get(project=project)
    Policy.objects.filter(pk=current.pk).update(
        toxicity_thresholds=thresholds,
        lexical_threshold=lexical,
        semantic_threshold=sem,
        semantic_share=share,
        blocking_rule_kinds=list(blocking_rule_kinds),
        rules=rules,
        updated_by=user,
        updated_at=timezone.now(),
    )
    current.refresh_from_db()
    return current


def _policy_view(p: Policy) -> policy.PolicyView:
    return {
        "toxicity_thresholds": p.toxicity_thresholds,
        "lexical_threshold": p.lexical_threshold,
        "semantic_threshold": p.semantic_threshold,
        "semantic_share": p.semantic_share,
        "blocking_rule_kinds": p.blocking_rule_kinds,
    }


# --- Starting and running the checks ------------------------------------------------------------


def draft_checks_start(*, draft: Draft, user: AbstractBaseUser | None = None) -> Draft:
    """Move the draft to ``checking`` and enqueue its checks on commit.

    ``user`` is the person whose edit or request triggers a re-check (recorded in the audit
    trail); the move itself is the pipeline's.
    """
    from review import tasks

    with transaction.atomic():
        moved = lifecycle.draft_transition(
            draft=draft,
            action="check",
            user=None,
            data={"requested_by": user.get_username() if user else None},
        )
        tasks.draft_check.delay_on_commit(moved.pk, moved.version)
    return moved


def draft_checks_rerun(*, draft: Draft, user: AbstractBaseUser) -> Draft:
    """A person asks for the checks again (after changing the policy or the archive)."""
    require_role(user=user, project=draft.project, minimum=Role.EDITOR)
    if draft.status not in lifecycle.ACTIONS["check"].moves:
        raise InvalidTransition(
            f"A draft that is {draft.get_status_display().lower()} is not checked again."
        )
    return draft_checks_start(draft=draft, user=user)


def _toxicity_config() -> toxicity.ToxicityConfig:
    return toxicity.ToxicityConfig(
        model_name=settings.TOXICITY_MODEL or None,
        checkpoint=settings.TOXICITY_CHECKPOINT or None,
        config_dir=settings.TOXICITY_CONFIG_DIR or None,
        device=settings.CHECKS_DEVICE,
    )


def toxicity_model_info() -> dict[str, Any]:
    """Which toxicity model scores drafts now, without loading it (for the Policy page)."""
    from review.checks import toxicity_head

    config = _toxicity_config()
    if config.model_name or config.checkpoint:
        return {"model": config.model_name or config.checkpoint, "stand_in": None}
    return {"model": toxicity_head.ENGINE, "stand_in": toxicity_head.load_metrics()}


def _span(start: int, end: int, kind: str, label: str, score: float | None = None) -> dict:
    return {"start": start, "end": end, "kind": kind, "label": label, "score": score}


def _run_toxicity(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    config = _toxicity_config()
    if config.model_name or config.checkpoint:
        # Detoxify whenever it is configured; the offline stand-in otherwise.
        result = toxicity.run_toxicity_check(text, config=config)
    else:
        result = toxicity.run_head_check(text)
    if result["status"] != "ok":
        return {
            "status": CheckStatus.NOT_RUN,
            "reason": result["reason"] or "",
            "details": result,
            "engine": result["engine"],
            "engine_version": result["engine_version"] or "",
        }
    thresholds = rules.toxicity_thresholds or policy.DEFAULT_TOXICITY_THRESHOLDS
    spans = []
    for sentence in result["sentences"]:
        over = [
            (score, category)
            for category, score in sentence["scores"].items()
            # Highlight from 80% of the hold threshold: close calls deserve a look too.
            if score >= 0.8 * thresholds.get(category, 0.5)
        ]
        if over:
            score, category = max(over)
            spans.append(
                _span(
                    sentence["start"],
                    sentence["end"],
                    "toxicity",
                    f"{category.replace('_', ' ')} {score:.2f}",
                    round(score, 3),
                )
            )
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"] or "",
        "scores": {k: round(v, 4) for k, v in result["overall"].items()},
        "spans": spans,
        "details": {
            "model": result["model"],
            "stand_in": result["stand_in"],
            "sentences": result["sentences"],
            "whole_text": result["whole_text"],
            "truncated": result["whole_text_truncated"],
        },
        "timings": result["timings"],
    }


def _run_ethics(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    result = ethics.check_ethics(text, rules=rules.rules or {})
    spans = [
        _span(
            hit["start"],
            hit["end"],
            "ethics",
            f"{hit['rule_kind'].replace('_', ' ')}: {hit['message']}",
        )
        for hit in result["hits"]
        if hit["start"] is not None and hit["end"] is not None
    ]
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"],
        "scores": dict(result["counts"]),
        "spans": spans,
        "details": {"hits": result["hits"], "truncated": result["truncated"]},
        "timings": result["timings"],
    }


def _siblings(draft: Draft) -> list[Draft]:
    return list(Draft.objects.filter(job_id=draft.job_id).exclude(pk=draft.pk).order_by("pk"))


def _source_info(keys: list[str]) -> dict[str, dict[str, Any]]:
    """For index keys ("a:12", "p:3"): the passage text and where it comes from."""
    ids = {key: indexes.parse_source_key(key) for key in keys}
    passages = SourcePassage.objects.filter(pk__in=[i for i in ids.values() if i]).select_related(
        "document", "draft"
    )
    by_id = {p.pk: p for p in passages}
    info: dict[str, dict[str, Any]] = {}
    for key, pk in ids.items():
        passage = by_id.get(pk) if pk else None
        if passage is None:
            continue
        if passage.document is not None:
            doc = passage.document
            info[key] = {
                "kind": "archive",
                "text": passage.text,
                "title": doc.title or f"Archive document {doc.pk}",
                "citation": doc.citation,
                "license": doc.license,
                "url": doc.source_url,
                "author": doc.author,
                "document_id": doc.pk,
            }
        else:
            info[key] = {
                "kind": "published",
                "text": passage.text,
                "title": passage.draft.title or f"Draft {passage.draft_id}",
                "citation": f"Published draft {passage.draft_id}",
                "license": "",
                "url": "",
                "draft_id": passage.draft_id,
            }
    return info


def _run_lexical(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    project_indexes = indexes.indexes_for(draft.project_id)
    fetched: dict[str, dict[str, Any]] = {}

    def fetch(keys: list[str]) -> dict[str, str]:
        fetched.update(_source_info(keys))
        return {key: value["text"] for key, value in fetched.items() if key in keys}

    matches = project_indexes.lexical.find_matches(text, fetch_texts=fetch)
    for sibling in _siblings(draft):
        sibling_text = html_to_text(sibling.body)
        match = plagiarism.compare_texts(text, sibling_text, key=f"d:{sibling.pk}")
        if match is not None and match["similarity"] >= 20.0:
            matches.append(match)
            fetched[f"d:{sibling.pk}"] = {
                "kind": "sibling",
                "text": sibling_text,
                "title": sibling.title or f"Draft {sibling.pk}",
                "citation": f"Sibling draft {sibling.pk} of job {draft.job_id}",
                "license": "",
                "url": "",
                "draft_id": sibling.pk,
            }
    matches.sort(key=lambda m: -m["similarity"])
    detailed = [{**m, "source": fetched.get(m["key"], {})} for m in matches[:50]]
    spans = [
        _span(
            s,
            e,
            "plagiarism",
            f"{m['similarity']:.0f}% of {m['source'].get('title', m['key'])}",
            m["similarity"],
        )
        for m in detailed
        for s, e in m["draft_spans"]
    ]
    best = detailed[0] if detailed else None
    return {
        "status": CheckStatus.OK,
        "engine": "minhash-lsh",
        "engine_version": project_indexes.lexical.fingerprint,
        "scores": {
            "max_similarity": round(best["similarity"], 1) if best else 0.0,
            "best_source": best["source"].get("title") if best else None,
            "matches": len(matches),
            "indexed_passages": len(project_indexes.lexical),
        },
        "spans": spans,
        "details": {"matches": detailed},
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
    }


_embedders: dict[str, semantic.Embedder] = {}
_embedders_lock = threading.Lock()


def _embedder() -> semantic.Embedder:
    """The sentence embedder of this process, loaded on first use (and once)."""
    path = settings.EMBEDDING_MODEL_PATH or None
    key = path or "default"
    with _embedders_lock:
        if key not in _embedders:
            _embedders[key] = semantic.Embedder(model_path=path, device=settings.CHECKS_DEVICE)
        return _embedders[key]


def _run_semantic(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        embedder = _embedder()
    except semantic.EmbeddingModelUnavailable as exc:
        return {
            "status": CheckStatus.NOT_RUN,
            "reason": exc.reason,
            "engine": semantic.ENGINE,
            "engine_version": semantic.ENGINE_VERSION,
        }
    project_indexes = indexes.indexes_for(draft.project_id)
    threshold = min(semantic.DEFAULT_THRESHOLD, rules.semantic_threshold)
    result = semantic.check_semantic(
        text, embedder=embedder, index=project_indexes.semantic, threshold=threshold
    )
    matches = list(result["matches"])
    sources: dict[str, dict[str, Any]] = {}
    # Sibling drafts of the same job: embedded now (a handful of short texts).
    siblings = _siblings(draft)
    if siblings:
        sibling_index = semantic.VectorIndex()
        sibling_texts: dict[str, str] = {}
        for sibling in siblings:
            sibling_text = html_to_text(sibling.body)
            item = f"d:{sibling.pk}"
            pieces = semantic.index_passages(sibling_text)
            if not pieces:
                continue
            sibling_index.add(
                [semantic.passage_key(item, p.number) for p in pieces],
                embedder.encode([p.text for p in pieces]),
            )
            for p in pieces:
                sibling_texts[semantic.passage_key(item, p.number)] = p.text
            sources[item] = {
                "kind": "sibling",
                "title": sibling.title or f"Draft {sibling.pk}",
                "citation": f"Sibling draft {sibling.pk} of job {draft.job_id}",
                "license": "",
                "url": "",
                "draft_id": sibling.pk,
            }
        if len(sibling_index):
            more = semantic.check_semantic(
                text, embedder=embedder, index=sibling_index, threshold=threshold
            )
            matches.extend(more["matches"])
            for m in more["matches"]:
                sources.setdefault(m["key"], {})["sentence"] = sibling_texts.get(m["key"], "")
    # Where each archive match comes from, and the matching source sentence.
    passage_ids = {indexes.parse_source_key(m["key"]) for m in matches} - {None}
    info = _source_info([f"a:{pk}" for pk in passage_ids] + [f"p:{pk}" for pk in passage_ids])
    sentence_rows = {
        (row.passage_id, row.number): row
        for row in PassageSentence.objects.filter(passage_id__in=passage_ids).only(
            "passage_id", "number", "start", "end"
        )
    }
    detailed = []
    for m in sorted(matches, key=lambda m: -m["score"]):
        item, number = semantic.split_key(m["key"])
        source = dict(info.get(item) or sources.get(item) or {})
        pk = indexes.parse_source_key(item)
        row = sentence_rows.get((pk, number)) if pk else None
        if row is not None and source.get("text"):
            source["sentence"] = source["text"][row.start : row.end]
        elif m["key"] in sources:
            source["sentence"] = sources[m["key"]].get("sentence", "")
        source.pop("text", None)
        detailed.append({**m, "source": source})
    paraphrased = {
        (m["draft_start"], m["draft_end"])
        for m in detailed
        if m["score"] >= rules.semantic_threshold
    }
    checked = result["sentences_checked"]
    spans = []
    seen: set[tuple[int, int]] = set()
    for m in detailed:
        span = (m["draft_start"], m["draft_end"])
        if span in seen:
            continue
        seen.add(span)
        spans.append(
            _span(
                *span,
                "semantic",
                f"paraphrase {m['score']:.2f} of {m['source'].get('title', m['key'])}",
                m["score"],
            )
        )
    unembedded = SourcePassage.objects.filter(
        project_id=draft.project_id, embedded_at__isnull=True
    ).count()
    return {
        "status": CheckStatus.OK,
        "engine": semantic.ENGINE,
        "engine_version": f"{semantic.ENGINE_VERSION}/{result['model']}",
        "scores": {
            "max_score": round(max((m["score"] for m in detailed), default=0.0), 4),
            "paraphrased_sentences": len(paraphrased),
            "sentences_checked": checked,
            "paraphrased_share": round(len(paraphrased) / checked, 3) if checked else 0.0,
            "indexed_sentences": len(project_indexes.semantic),
            "passages_pending": unembedded,
        },
        "spans": spans,
        "details": {"matches": detailed[:100], "threshold": threshold},
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
    }


CHECKS = [
    (CheckKind.TOXICITY, _run_toxicity),
    (CheckKind.ETHICS, _run_ethics),
    (CheckKind.LEXICAL, _run_lexical),
    (CheckKind.SEMANTIC, _run_semantic),
]


def draft_checks_run(*, draft_id: int, version: int) -> Draft | None:
    """Run every check on the draft as it was at ``version``, then route it.

    Idempotent and safe against races: a draft that moved on (edited again, routed by an
    earlier delivery) is left alone; results are stored per (draft, version, kind).
    """
    draft = (
        Draft.objects.select_related("project")
        .filter(pk=draft_id, status=DraftStatus.CHECKING, version=version)
        .first()
    )
    if draft is None:
        return None
    text = html_to_text(draft.body)
    rules = policy_get(project=draft.project)
    outcomes: list[policy.CheckOutcome] = []
    for kind, run in CHECKS:
        started = time.perf_counter()
        try:
            outcome = run(draft, text, rules)
        except Exception as exc:
            logger.exception("%s check failed on draft %s", kind, draft_id)
            outcome = {
                "status": CheckStatus.NOT_RUN,
                "reason": f"{type(exc).__name__}: {exc}",
                "engine": kind,
            }
        outcome.setdefault("timings", {})
        outcome["timings"].setdefault("total_ms", round((time.perf_counter() - started) * 1000, 1))
        CheckResult.objects.update_or_create(
            draft=draft,
            draft_version=version,
            kind=kind,
            defaults={
                "status": outcome["status"],
                "reason": outcome.get("reason", ""),
                "engine": outcome.get("engine", kind),
                "engine_version": outcome.get("engine_version", ""),
                "scores": outcome.get("scores", {}),
                "spans": outcome.get("spans", []),
                "details": outcome.get("details", {}),
                "timings": outcome["timings"],
            },
        )
        outcomes.append({"kind": kind, **outcome})
        stream.publish_project_event(
            draft.project_id,
            {
                "kind": "check",
                "draft": draft.pk,
                "check": kind,
                "status": outcome["status"],
                "scores": outcome.get("scores", {}),
            },
        )
    _summarise(draft, version, outcomes)
    reasons = policy.route(outcomes, _policy_view(rules))
    try:
        return lifecycle.draft_transition(
            draft=draft,
            action="hold" if reasons else "pass",
            user=None,
            reason="; ".join(reasons),
            expected_version=version,
            data={"reasons": reasons},
        )
    except (Conflict, InvalidTransition):
        # Edited or re-checked meanwhile: the newer check run routes it.
        return None


def _summarise(draft: Draft, version: int, outcomes: list[policy.CheckOutcome]) -> None:
    by_kind = {o["kind"]: o for o in outcomes if o["status"] == CheckStatus.OK}
    tox = (by_kind.get(CheckKind.TOXICITY) or {}).get("scores") or {}
    worst = max(tox.items(), key=lambda item: item[1], default=(None, None))
    ethics_counts = (by_kind.get(CheckKind.ETHICS) or {}).get("scores") or {}
    lexical = (by_kind.get(CheckKind.LEXICAL) or {}).get("scores") or {}
    sem = (by_kind.get(CheckKind.SEMANTIC) or {}).get("scores") or {}
    CheckSummary.objects.update_or_create(
        draft=draft,
        defaults={
            "draft_version": version,
            "toxicity_max": worst[1],
            "toxicity_category": worst[0] or "",
            "ethics_hits": sum(
                int(v) for v in ethics_counts.values() if isinstance(v, int | float)
            ),
            "lexical_max": lexical.get("max_similarity") if lexical else None,
            "semantic_share": sem.get("paraphrased_share") if sem else None,
            "not_run": sum(1 for o in outcomes if o["status"] != CheckStatus.OK),
        },
    )


# --- The archive -------------------------------------------------------------------------------


def import_run_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    upload: UploadedFile,
    fmt: str,
    mapping: str | dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> ImportRun:
    """Keep the uploaded file and enqueue its import (project admins)."""
    from review import tasks

    require_role(user=user, project=project, minimum=Role.ADMIN)
    errors: dict[str, str] = {}
    if fmt not in ImportFormat.values:
        errors["format"] = f"Choose one of: {', '.join(ImportFormat.values)}."
    try:
        parsed = archive.parse_mapping(mapping)
    except ValueError as exc:
        errors["mapping"] = str(exc)
        parsed = {}
    if upload is None or not upload.size:
        errors["file"] = "Choose a non-empty file."
    elif upload.size > settings.ARCHIVE_UPLOAD_MAX_BYTES:
        errors["file"] = f"The file is larger than {settings.ARCHIVE_UPLOAD_MAX_BYTES // 2**20} MB."
    if errors:
        raise ValidationError(errors)
    clean_defaults = {k: v for k, v in (defaults or {}).items() if k in archive.FIELDS and v}
    with transaction.atomic():
        run = ImportRun.objects.create(
            project=project,
            created_by=user,
            source_name=Path(upload.name or "upload").name[:300],
            format=fmt,
            mapping=parsed,
            defaults=clean_defaults,
        )
        run.upload.save(f"{run.pk}-{Path(upload.name or 'upload').name}", upload, save=True)
        tasks.archive_import.delay_on_commit(run.pk)
    return run


def import_run_execute(*, run_id: int) -> None:
    """The worker's side of an upload: read it, store documents, note progress as it goes."""
    claimed = ImportRun.objects.filter(pk=run_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return
    run = ImportRun.objects.get(pk=run_id)
    progress = None
    try:
        path = Path(run.upload.path)
        total = archive.count_rows(path, run.format)
        ImportRun.objects.filter(pk=run.pk).update(total=total)
        run.total = total

        def report(p: archive.Progress) -> None:
            stream.publish_project_event(
                run.project_id,
                {"kind": "import", "id": run.pk, "processed": p.processed, "total": total},
            )

        progress = archive.import_rows(
            run=run,
            rows=archive.rows_from_path(path, run.format, run.mapping or {}),
            on_progress=report,
        )
    except Exception as exc:
        logger.exception("import %s failed", run_id)
        archive.finish_run(run, progress, error=f"{type(exc).__name__}: {exc}")
    else:
        archive.finish_run(run, progress)
        run.upload.delete(save=False)
        ImportRun.objects.filter(pk=run.pk).update(upload="")
    embed_enqueue(project_id=run.project_id)
    stream.publish_project_event(run.project_id, {"kind": "import", "id": run.pk, "done": True})


def import_path(
    *,
    project: Project,
    path: Path,
    fmt: str,
    mapping: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
    user: AbstractBaseUser | None = None,
    on_progress: Any = None,
) -> ImportRun:
    """Import from a file or folder on this machine (the management command and the demo)."""
    run = ImportRun.objects.create(
        project=project,
        created_by=user,
        source_name=str(path)[:300],
        format=fmt,
        mapping=mapping or {},
        defaults=defaults or {},
        status=ImportStatus.RUNNING,
        started_at=timezone.now(),
        total=archive.count_rows(path, fmt),
    )
    progress = archive.import_rows(
        run=run, rows=archive.rows_from_path(path, fmt, mapping or {}), on_progress=on_progress
    )
    archive.finish_run(run, progress)
    run.refresh_from_db()
    transaction.on_commit(lambda: embed_enqueue(project_id=project.pk))
    return run


def import_rows_direct(
    *, project: Project, rows: list[archive.RawRow], source_name: str, on_progress: Any = None
) -> ImportRun:
    """Import rows that were read elsewhere (the demo's State of the Union paragraphs)."""
    run = ImportRun.objects.create(
        project=project,
        source_name=source_name,
        format=ImportFormat.JSONL,
        status=ImportStatus.RUNNING,
        started_at=timezone.now(),
        total=len(rows),
    )
    progress = archive.import_rows(run=run, rows=rows, on_progress=on_progress)
    archive.finish_run(run, progress)
    run.refresh_from_db()
    return run


def document_delete(*, document: ArchiveDocument, user: AbstractBaseUser) -> None:
    require_role(user=user, project=document.project, minimum=Role.ADMIN)
    with transaction.atomic():
        project_id = document.project_id
        document.delete()
        indexes.bump(project_id, removed=True)


def embed_enqueue(*, project_id: int) -> None:
    from review import tasks

    if SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).exists():
        tasks.passages_embed.delay(project_id)


def passages_embed(*, project_id: int, limit: int = EMBED_BATCH) -> int:
    """Embed the sentences of up to ``limit`` passages not yet embedded; returns how many are
    left. Short runs, so the checks of new drafts never wait long behind a large archive."""
    pending = list(
        SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True)
        .order_by("pk")
        .values_list("pk", "text")[:limit]
    )
    if not pending:
        return 0
    embedder = _embedder()
    pieces = [(pk, p) for pk, text in pending for p in semantic.index_passages(text)]
    # The model runs outside the transaction (slow work never holds locks).
    vectors = embedder.encode([p.text for _, p in pieces]) if pieces else np.zeros((0, 384))
    with transaction.atomic():
        # Writers of one project take turns (ids then grow in commit order, which the indexes
        # rely on); a concurrent run may have embedded some of these meanwhile: skip those.
        indexes.lock(project_id)
        still_pending = set(
            SourcePassage.objects.filter(
                pk__in=[pk for pk, _ in pending], embedded_at__isnull=True
            ).values_list("pk", flat=True)
        )
        PassageSentence.objects.bulk_create(
            [
                PassageSentence(
                    passage_id=pk,
                    number=p.number,
                    start=p.start,
                    end=p.end,
                    vector=semantic.to_bytes(vector, dtype="float16"),
                )
                for (pk, p), vector in zip(pieces, vectors, strict=True)
                if pk in still_pending
            ]
        )
        SourcePassage.objects.filter(pk__in=still_pending).update(embedded_at=timezone.now())
        indexes.bump(project_id)
    left = SourcePassage.objects.filter(project_id=project_id, embedded_at__isnull=True).count()
    stream.publish_project_event(project_id, {"kind": "embedding", "left": left})
    return left


def resume_pending() -> None:
    """Re-enqueue checks, imports and embeddings that the database says are unfinished."""
    from review import tasks

    for draft_id, version in Draft.objects.filter(status=DraftStatus.CHECKING).values_list(
        "pk", "version"
    ):
        tasks.draft_check.delay(draft_id, version)
    for run_id in ImportRun.objects.filter(status=ImportStatus.QUEUED).values_list("pk", flat=True):
        tasks.archive_import.delay(run_id)
    for project_id in (
        SourcePassage.objects.filter(embedded_at__isnull=True)
        .values_list("project_id", flat=True)
        .distinct()
    ):
        tasks.passages_embed.delay(project_id)
