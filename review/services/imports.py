"""Archive imports: an uploaded file kept and imported by a task, a local path, or rows.

An uploaded import is work like a job or a check: claimed by a conditional UPDATE, kept alive by
a heartbeat, taken over when its worker dies (a periodic sweep sends its task again), and
resumed after its last stored row (the row offset commits with each batch of documents). Its
status moves through ``review.import_lifecycle``."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from contentstudio import realtime
from contentstudio.heartbeat import Heartbeat
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from review import archive, source_indexes
from review.import_lifecycle import IMPORT_LIFECYCLE
from review.models import (
    ArchiveDocument,
    ImportEvent,
    ImportFormat,
    ImportRun,
    ImportStatus,
    SourcePassage,
)
from review.services.embedding import embed_enqueue

logger = logging.getLogger(__name__)


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
        ImportEvent.objects.create(run=run, to_status=ImportStatus.QUEUED, reason="uploaded")
        run.upload.save(f"{run.pk}-{Path(upload.name or 'upload').name}", upload, save=True)
        tasks.archive_import.delay_on_commit(run.pk)
    return run


def import_run_claim(*, run_id: int, worker: str) -> ImportRun | None:
    """Take the run: a queued one, or a running one whose worker stopped beating (its
    heartbeat ``GENERATION_STALE_AFTER`` old), conditional on the heartbeat seen, so of two
    workers taking over one wins. None when the run is another live worker's, or over."""
    now = timezone.now()
    name = worker[:200]
    claimed = IMPORT_LIFECYCLE.move(
        run_id,
        to=ImportStatus.RUNNING,
        expected=ImportStatus.QUEUED,
        fields={"worker": name, "heartbeat_at": now, "started_at": now, "attempts": 1},
        event={"worker": name},
    )
    if claimed is None:
        run = ImportRun.objects.filter(pk=run_id).first()
        # Only an uploaded run can be resumed elsewhere (an in-process one reads a local path).
        if run is None or run.status != ImportStatus.RUNNING or not run.upload:
            return None
        if run.heartbeat_at is None:
            return None
        silent = (now - run.heartbeat_at).total_seconds()
        if silent < settings.GENERATION_STALE_AFTER:
            return None
        claimed = IMPORT_LIFECYCLE.move(
            run_id,
            to=ImportStatus.RUNNING,
            expected=ImportStatus.RUNNING,
            where={"heartbeat_at": run.heartbeat_at, "worker": run.worker},
            fields={"worker": name, "heartbeat_at": now, "attempts": F("attempts") + 1},
            event={
                "worker": name,
                "reason": (
                    f"Taken over from {run.worker or 'a worker'}, silent for {int(silent)} s, "
                    f"after row {run.processed}."
                ),
            },
        )
        if claimed is None:
            return None
    return ImportRun.objects.get(pk=run_id)


def import_run_execute(*, run_id: int, worker: str = "inline") -> None:
    """The worker's side of an upload: claim it, read it, store documents, note progress.

    Resumable: the rows are stored in batches, each committed with the run's row offset
    (``processed``) and only while this worker holds the claim, so a run taken over from a dead
    worker goes on after its last stored row and no row is stored twice. A timer thread writes
    the heartbeat meanwhile (contentstudio.heartbeat); ``imports_sweep`` hands a silent run to
    another worker.
    """
    run = import_run_claim(run_id=run_id, worker=worker)
    if run is None:
        return
    name = run.worker

    def beat() -> bool:
        return (
            ImportRun.objects.filter(pk=run_id, status=ImportStatus.RUNNING, worker=name).update(
                heartbeat_at=timezone.now()
            )
            == 1
        )

    progress = None
    with Heartbeat(
        beat,
        interval=settings.GENERATION_HEARTBEAT_INTERVAL,
        name=f"import-{run_id}",
        beat_now=False,
    ):
        try:
            path = Path(run.upload.path)
            if not run.processed:
                run.total = archive.count_rows(path, run.format)
                ImportRun.objects.filter(pk=run.pk, worker=name).update(total=run.total)
            total = run.total

            def report(p: archive.Progress) -> None:
                realtime.publish_project_event(
                    run.project_id,
                    {"kind": "import", "id": run.pk, "processed": p.processed, "total": total},
                )

            resumed = archive.Progress(
                total=total,
                processed=run.processed,
                imported=run.imported,
                duplicates=run.duplicates,
                errors=list(run.errors or []),
                encodings=dict(run.encodings or {}),
            )
            rows = archive.rows_from_path(path, run.format, run.mapping or {})
            progress = archive.import_rows(
                run=run,
                rows=itertools.islice(rows, run.processed, None),
                on_progress=report,
                progress=resumed,
                claim={"status": ImportStatus.RUNNING, "worker": name},
            )
        except archive.ClaimLost:
            logger.warning("import %s was taken over from %s; stopping here", run_id, name)
            return
        except Exception as exc:
            logger.exception("import %s failed", run_id)
            _finish(run, worker=name, error=f"{type(exc).__name__}: {exc}")
        else:
            if _finish(run, worker=name, progress=progress):
                run.upload.delete(save=False)
                ImportRun.objects.filter(pk=run.pk).update(upload="")
    embed_enqueue(project_id=run.project_id)
    realtime.publish_project_event(run.project_id, {"kind": "import", "id": run.pk, "done": True})


def _finish(
    run: ImportRun, *, worker: str, progress: archive.Progress | None = None, error: str = ""
) -> bool:
    """Succeeded with the final counters, or failed with the reason (the counters stay those
    committed with the last stored rows), while ``worker`` still holds the run."""
    counters = (
        {
            "processed": progress.processed,
            "imported": progress.imported,
            "duplicates": progress.duplicates,
            "errors": progress.errors,
            "encodings": progress.encodings,
        }
        if progress is not None and not error
        else {}
    )
    moved = IMPORT_LIFECYCLE.move(
        run.pk,
        to=ImportStatus.FAILED if error else ImportStatus.SUCCEEDED,
        expected=ImportStatus.RUNNING,
        where={"worker": worker},
        fields={"error": error, "finished_at": timezone.now(), **counters},
        event={"worker": worker, "reason": error[:2000]},
    )
    return moved is not None


def imports_sweep() -> dict[str, int]:
    """Periodic (CELERY_BEAT_SCHEDULE): send again the task of every uploaded run whose worker
    stopped beating, or that was queued ``GENERATION_REQUEUE_AFTER`` ago and never claimed (its
    message lost). The claim decides; at most one resend per stale period and run."""
    from review import tasks

    now = timezone.now()
    stale = now - timezone.timedelta(seconds=settings.GENERATION_STALE_AFTER)
    lost = now - timezone.timedelta(seconds=settings.GENERATION_REQUEUE_AFTER)
    due = ImportRun.objects.exclude(upload="").filter(
        Q(status=ImportStatus.RUNNING, heartbeat_at__lt=stale)
        | Q(status=ImportStatus.QUEUED, created_at__lt=lost)
    )
    period = max(1, math.ceil(settings.GENERATION_STALE_AFTER))
    resent = 0
    for run_id in due.values_list("pk", flat=True):
        if cache.add(f"import-resent:{run_id}", 1, timeout=period):
            tasks.archive_import.delay(run_id)
            resent += 1
    return {"resent": resent}


def _start_inline(run: ImportRun, reason: str) -> None:
    """An import run in this process: queued -> running through the lifecycle (no worker, no
    heartbeat: nothing else could resume it)."""
    IMPORT_LIFECYCLE.move(
        run.pk,
        to=ImportStatus.RUNNING,
        expected=ImportStatus.QUEUED,
        fields={"started_at": timezone.now()},
        event={"reason": reason},
    )
    run.status = ImportStatus.RUNNING


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
        total=archive.count_rows(path, fmt),
    )
    _start_inline(run, "imported from a path on this machine")
    progress = archive.import_rows(
        run=run, rows=archive.rows_from_path(path, fmt, mapping or {}), on_progress=on_progress
    )
    _finish(run, worker="", progress=progress)
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
        total=len(rows),
    )
    _start_inline(run, "imported from rows read in this process")
    progress = archive.import_rows(run=run, rows=rows, on_progress=on_progress)
    _finish(run, worker="", progress=progress)
    run.refresh_from_db()
    return run


def document_delete(*, document: ArchiveDocument, user: AbstractBaseUser) -> None:
    require_role(user=user, project=document.project, minimum=Role.ADMIN)
    with transaction.atomic():
        project_id = document.project_id
        source_indexes.lock(project_id)
        source_indexes.passages_removed(
            project_id, source_indexes.passage_keys(SourcePassage.objects.filter(document=document))
        )
        document.delete()
