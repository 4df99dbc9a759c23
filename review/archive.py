"""Importing archive documents: reading sources row by row, and storing them with their passages.

Sources: plain text files (one document each; a folder or a zip of them), CSV and JSON Lines with
a column mapping. A bad row (unreadable bytes, empty text, missing column, broken JSON) is
reported with its line number (or file name) and the rest are still imported; the same text
imported twice is stored once.

Files are read in the encoding they are in (:mod:`review.encodings`: UTF-8 with or without a
byte-order mark, UTF-16 with its mark, GB18030); the encodings read are counted per run
(``ImportRun.encodings``) and each document's language is detected as it is stored.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from contentstudio.html import html_to_text
from generation.models import Draft
from review import source_indexes
from review.checks.language import detect_language
from review.checks.plagiarism import split_passages
from review.encodings import CODECS, UTF8, UTF8_BOM, UTF16, decode_bytes, file_encoding
from review.models import (
    ArchiveDocument,
    ImportFormat,
    ImportRun,
    SourceKind,
    SourcePassage,
)

_validate_url = URLValidator(schemes=["http", "https"])

FIELDS = ("text", "title", "source_url", "citation", "author", "license", "published_date")
TEXT_SUFFIXES = {".txt", ".md", ".text"}
CHUNK = 200
MAX_ERRORS_KEPT = 1000


@dataclass
class RawRow:
    where: str  # "line 12" or a file name: what the person fixes
    fields: dict[str, Any] | None = None
    error: str | None = None
    encoding: str = ""  # how its bytes were read ("UTF-8", "GB18030"); "" for rows given as text


class ClaimLost(Exception):
    """The run is no longer this import's to write (another worker took it over)."""


@dataclass
class Progress:
    total: int = 0
    processed: int = 0
    imported: int = 0
    duplicates: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    encodings: dict[str, int] = field(default_factory=dict)


def content_hash(text: str) -> str:
    normalised = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()
    return hashlib.sha256(normalised.encode()).hexdigest()


def parse_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"text=body,title=headline"`` or a dict -> {field: column}; unknown fields refused."""
    if not spec:
        return {}
    pairs = (
        spec.items()
        if isinstance(spec, dict)
        else (part.split("=", 1) for part in spec.split(",") if part.strip())
    )
    mapping: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"Mapping entries look like field=column, got {'='.join(pair)!r}.")
        name, column = (p.strip() for p in pair)
        if name not in FIELDS:
            raise ValueError(f"Unknown field {name!r} in the mapping; fields: {', '.join(FIELDS)}.")
        mapping[name] = column
    return mapping


# --- Readers -----------------------------------------------------------------------------------


def _decode(raw: bytes, codec: str = "utf-8-sig") -> str | None:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        return None


def _map_fields(
    record: dict[str, Any], mapping: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    fields: dict[str, Any] = {}
    for name in FIELDS:
        column = mapping.get(name, name)
        if column in record:
            fields[name] = record[column]
        elif name == "text":
            return {}, f"missing column {column!r}"
    return fields, None


def read_text_files(paths: Iterable[tuple[str, bytes]]) -> Iterator[RawRow]:
    """One document per file: the title is the first line when short, else the file name."""
    for name, raw in paths:
        decoded = decode_bytes(raw)
        text = decoded.text
        if text is None:
            yield RawRow(name, error=decoded.error)
            continue
        first, _, rest = text.strip().partition("\n")
        title = first.strip() if 0 < len(first.strip()) <= 200 and rest.strip() else Path(name).stem
        body = rest.strip() if title == first.strip() else text
        yield RawRow(name, {"title": title, "text": body}, encoding=decoded.encoding)


def text_files_in(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES):
            yield str(file.relative_to(path)), file.read_bytes()
    elif path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            yield from zip_members(archive)
    else:
        yield path.name, path.read_bytes()


def zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        if not info.is_dir() and Path(info.filename).suffix.lower() in TEXT_SUFFIXES:
            yield info.filename, archive.read(info)


def read_csv(stream: BinaryIO, mapping: dict[str, str], encoding: str = UTF8) -> Iterator[RawRow]:
    # surrogateescape keeps undecodable bytes visible per row instead of aborting the file.
    codec = "utf-8-sig" if encoding in (UTF8, UTF8_BOM) else CODECS[encoding]
    text = io.TextIOWrapper(stream, encoding=codec, errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    if reader.fieldnames is None:
        return
    start = 2
    for record in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        values = [v for v in record.values() if isinstance(v, str)]
        if any(_has_surrogates(v) for v in values):
            yield RawRow(where, error=f"not valid {encoding}")
            continue
        if None in record:
            yield RawRow(where, error="more values than columns", encoding=encoding)
            continue
        fields, error = _map_fields(record, mapping)
        yield RawRow(where, fields if error is None else None, error, encoding=encoding)


def read_jsonl(stream: BinaryIO, mapping: dict[str, str], encoding: str = UTF8) -> Iterator[RawRow]:
    codec = "utf-8-sig" if encoding in (UTF8, UTF8_BOM) else CODECS[encoding]
    # UTF-16 splits into lines only once decoded; the other encodings never put a newline byte
    # inside a character, so a bad line is reported alone.
    lines: Iterable[bytes | str] = (
        io.TextIOWrapper(stream, encoding=codec, newline="") if encoding == UTF16 else stream
    )
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        if not raw.strip():
            continue
        line = raw if isinstance(raw, str) else _decode(raw, codec)
        if line is None:
            yield RawRow(where, error=f"not valid {encoding}")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRow(where, error=f"not valid JSON ({exc.msg})", encoding=encoding)
            continue
        if not isinstance(record, dict):
            yield RawRow(where, error="not a JSON object", encoding=encoding)
            continue
        fields, error = _map_fields(record, mapping)
        yield RawRow(where, fields if error is None else None, error, encoding=encoding)


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def count_rows(path: Path, fmt: str) -> int:
    """A quick total for the progress bar (exact for JSONL and text, close for CSV)."""
    if fmt == ImportFormat.TEXT:
        return sum(1 for _ in text_files_in(path))
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(0, lines - 1) if fmt == ImportFormat.CSV else lines


def rows_from_path(path: Path, fmt: str, mapping: dict[str, str]) -> Iterator[RawRow]:
    if fmt == ImportFormat.TEXT:
        yield from read_text_files(text_files_in(path))
    elif fmt == ImportFormat.CSV:
        encoding = file_encoding(path)
        with path.open("rb") as handle:
            yield from read_csv(handle, mapping, encoding)
    elif fmt == ImportFormat.JSONL:
        encoding = file_encoding(path)
        with path.open("rb") as handle:
            yield from read_jsonl(handle, mapping, encoding)
    else:
        raise ValueError(f"Unknown format {fmt!r}.")


# --- Storing ------------------------------------------------------------------------------------


def _clean(fields: dict[str, Any], defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The document's field values, and warnings for values dropped (never the text)."""
    values = {**{k: v for k, v in defaults.items() if k in FIELDS}, **fields}
    warnings: list[str] = []
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = values.get(name)
        if value is None:
            continue
        value = str(value).strip() if not isinstance(value, str) else value.strip()
        if name == "source_url" and value:
            # Pages link to it: only web addresses (a "javascript:" link would run a script).
            try:
                _validate_url(value)
            except ValidationError:
                warnings.append(f"source_url {value[:100]!r} is not an http(s) address; left out")
                continue
        if name == "published_date":
            if not value:
                continue
            try:
                out[name] = dt.date.fromisoformat(value[:10])
            except ValueError:
                warnings.append(f"published_date {value!r} is not a date (YYYY-MM-DD); left out")
            continue
        limit = ArchiveDocument._meta.get_field(name).max_length
        if limit and len(value) > limit:
            value = value[:limit]
        out[name] = value
    return out, warnings


def import_rows(
    *,
    run: ImportRun,
    rows: Iterable[RawRow],
    on_progress: Callable[[Progress], None] | None = None,
    progress: Progress | None = None,
    claim: dict[str, Any] | None = None,
) -> Progress:
    """Store the rows as documents with their passages, CHUNK rows per transaction.

    ``progress``: the counters so far (a run resumed after ``progress.processed`` rows; the
    rows given are the ones after those). Each chunk commits only while the run's stored
    ``processed`` is still the chunk's start and the run still matches ``claim`` (its worker):
    otherwise the chunk is rolled back and ClaimLost raised, so no row is stored twice.

    Side effects: ArchiveDocument and SourcePassage rows, the run's counters after every chunk,
    the project's index version (so the plagiarism indexes pick the passages up).
    """
    progress = progress or Progress(total=run.total)
    defaults = run.defaults or {}
    chunk: list[RawRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            _store_chunk(run, chunk, defaults, progress, claim or {})
            chunk = []
            if on_progress:
                on_progress(progress)
    if chunk:
        _store_chunk(run, chunk, defaults, progress, claim or {})
    if on_progress:
        on_progress(progress)
    return progress


def _store_chunk(
    run: ImportRun,
    chunk: list[RawRow],
    defaults: dict[str, Any],
    progress: Progress,
    claim: dict[str, Any],
) -> None:
    start = progress.processed

    def error(where: str, message: str) -> None:
        if len(progress.errors) < MAX_ERRORS_KEPT:
            progress.errors.append({"line": where, "message": message})

    candidates: list[tuple[RawRow, dict[str, Any], str]] = []
    for row in chunk:
        progress.processed += 1
        if row.encoding:
            progress.encodings[row.encoding] = progress.encodings.get(row.encoding, 0) + 1
        if row.error or row.fields is None:
            error(row.where, row.error or "unreadable")
            continue
        values, warnings = _clean(row.fields, defaults)
        for warning in warnings:
            error(row.where, warning)
        if not values.get("text"):
            error(row.where, "empty text")
            continue
        candidates.append((row, values, content_hash(values["text"])))

    with transaction.atomic():
        if candidates:
            # Before reading what exists: a concurrent import of the same project waits here
            # until this chunk commits, then sees its documents as duplicates.
            source_indexes.lock(run.project_id)
        existing = set(
            ArchiveDocument.objects.filter(
                project_id=run.project_id, content_hash__in=[h for _, _, h in candidates]
            ).values_list("content_hash", flat=True)
        )
        documents: list[ArchiveDocument] = []
        for _row, values, digest in candidates:
            if digest in existing:
                progress.duplicates += 1
                continue
            existing.add(digest)
            documents.append(
                ArchiveDocument(
                    project_id=run.project_id,
                    import_run=run,
                    content_hash=digest,
                    language=detect_language(values["text"]),
                    **values,
                )
            )
        ArchiveDocument.objects.bulk_create(documents)
        passages = [
            passage
            for document in documents
            for passage in _passages(
                document.text,
                project_id=run.project_id,
                kind=SourceKind.ARCHIVE,
                document=document,
            )
        ]
        SourcePassage.objects.bulk_create(passages, batch_size=1000)
        progress.imported += len(documents)
        # The rows' offset commits with their documents, and only from where it stood.
        stored = ImportRun.objects.filter(pk=run.pk, processed=start, **claim).update(
            processed=progress.processed,
            imported=progress.imported,
            duplicates=progress.duplicates,
            errors=progress.errors,
            encodings=progress.encodings,
        )
        if stored != 1:
            raise ClaimLost(f"import {run.pk} was taken over before row {start}")
        if documents:
            source_indexes.bump(run.project_id)


def _passages(text: str, *, project_id: int, kind: str, **source: Any) -> list[SourcePassage]:
    """The unsaved passages of a source text (``document=`` or ``draft=`` says whose)."""
    return [
        SourcePassage(
            project_id=project_id,
            kind=kind,
            number=number,
            start=start,
            end=end,
            text=text[start:end],
            **source,
        )
        for number, (start, end) in enumerate(split_passages(text))
    ]


def publication_add(draft: Draft) -> int:
    """A published draft becomes a source later drafts are compared against (call inside the
    publishing transaction)."""
    text = html_to_text(draft.body)
    source_indexes.lock(draft.project_id)
    old = SourcePassage.objects.filter(draft=draft)
    # A correction replaces the passages: the old ones go to the removal log, which every
    # process applies to its indexes (nothing is rebuilt); the new ones are caught up by id.
    source_indexes.passages_removed(draft.project_id, source_indexes.passage_keys(old))
    old.delete()
    passages = _passages(text, project_id=draft.project_id, kind=SourceKind.PUBLISHED, draft=draft)
    SourcePassage.objects.bulk_create(passages)
    source_indexes.bump(draft.project_id)
    return len(passages)


def publication_remove(draft: Draft) -> None:
    source_indexes.lock(draft.project_id)
    passages = SourcePassage.objects.filter(draft=draft)
    source_indexes.passages_removed(draft.project_id, source_indexes.passage_keys(passages))
    passages.delete()
