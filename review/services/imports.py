"""Archive imports: an uploaded file kept and imported by a task, a local path, or rows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from contentstudio import realtime
from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from review import archive, indexes
from review.models import (
    ArchiveDocument,
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
            realtime.publish_project_event(
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
    realtime.publish_project_event(run.project_id, {"kind": "import", "id": run.pk, "done": True})


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
        indexes.lock(project_id)
        indexes.passages_removed(
            project_id, indexes.passage_keys(SourcePassage.objects.filter(document=document))
        )
        document.delete()
