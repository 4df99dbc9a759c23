"""The archive: importing text files, folders, zips, CSV and JSON Lines (bad rows reported with
their line, the rest imported, nothing imported twice), the management command, the upload page
run by the worker with its progress endpoint, deleting documents, the paraphrase index, and
keeping each process's plagiarism indexes in step with the database."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from generation.models import Draft
from review import archive, services, source_indexes, tasks
from review.checks import plagiarism, semantic
from review.lifecycle import DraftStatus
from review.models import (
    ArchiveDocument,
    CheckResult,
    ImportRun,
    ImportStatus,
    IndexState,
    PassageSentence,
    SourcePassage,
    SourceRemoval,
)
from tests.conftest import wait_for
from tests.factories import (
    ARCHIVE,
    FLOOD,
    HARBOUR,
    LIBRARY,
    UNRELATED,
    checked,
    logged_in,
    make_archive,
    make_draft,
    reset_indexes,
    run_held_checks,
)


@pytest.fixture(autouse=True)
def _review_env(settings: Any, tmp_path: Path) -> Any:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    reset_indexes()
    yield
    reset_indexes()


def doc(n: int) -> dict[str, str]:
    return ARCHIVE[n]


def import_file(project: Any, path: Path, fmt: str, **kwargs: Any) -> ImportRun:
    return services.import_path(project=project, path=path, fmt=fmt, **kwargs)


def errors_of(run: ImportRun) -> list[tuple[str, str]]:
    return [(e["line"], e["message"]) for e in run.errors]


def lexical_best(draft: Draft) -> float:
    row = draft.checks.filter(kind="lexical").order_by("-draft_version").first()
    assert row is not None and row.status == "ok", row and row.reason
    return row.scores["max_similarity"]


# --- Text files ---------------------------------------------------------------------------------


def _text_files(root: Path) -> Path:
    root.mkdir()
    (root / "bridge.txt").write_text(f"{doc(HARBOUR)['title']}\n\n{doc(HARBOUR)['text']}\n")
    (root / "notes").mkdir()
    (root / "notes" / "flood-story.md").write_text(doc(FLOOD)["text"])
    (root / "latin1.txt").write_bytes("Caf\xe9 society reopens".encode("latin-1"))
    (root / "blank.txt").write_text("  \n\n  ")
    (root / "photo.png").write_bytes(b"\x89PNG not a text")
    return root


def test_a_folder_of_text_files_is_imported_one_document_per_file(
    cast: dict, tmp_path: Path
) -> None:
    folder = _text_files(tmp_path / "stories")
    run = import_file(cast["newsroom"], folder, "text", defaults={"license": "© Port Herald"})
    assert run.status == ImportStatus.SUCCEEDED
    assert (run.total, run.processed, run.imported, run.duplicates) == (4, 4, 2, 0)
    # the file names tell which files to fix; the picture is not a text file
    # (the message ends with the encoding the bytes look like: "(it looks like cp1250)")
    assert [(where, message.split(" (")[0]) for where, message in errors_of(run)] == [
        ("blank.txt", "empty text"),
        ("latin1.txt", "not valid UTF-8 or GB18030"),
    ]
    by_title = {d.title: d for d in ArchiveDocument.objects.filter(project=cast["newsroom"])}
    # a short first line followed by more text is the title; otherwise the file name is
    assert set(by_title) == {doc(HARBOUR)["title"], "flood-story"}
    assert by_title[doc(HARBOUR)["title"]].text == doc(HARBOUR)["text"]
    assert by_title["flood-story"].text == doc(FLOOD)["text"]
    assert {d.license for d in by_title.values()} == {"© Port Herald"}
    assert all(d.import_run_id == run.pk for d in by_title.values())
    # each document is cut into passages whose offsets point into its text
    for document in by_title.values():
        passages = list(document.passages.order_by("number"))
        assert passages and all(p.kind == "archive" for p in passages)
        assert all(document.text[p.start : p.end] == p.text for p in passages)
        assert [p.number for p in passages] == list(range(len(passages)))


def test_a_zip_of_text_files_and_a_single_file_import_the_same_way(
    cast: dict, tmp_path: Path
) -> None:
    folder = _text_files(tmp_path / "stories")
    bundle = tmp_path / "stories.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for file in folder.rglob("*"):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    run = import_file(cast["newsroom"], bundle, "text")
    assert (run.imported, run.total) == (2, 4)
    # (the message ends with the encoding the bytes look like: "(it looks like cp1250)")
    assert [(where, message.split(" (")[0]) for where, message in errors_of(run)] == [
        ("blank.txt", "empty text"),
        ("latin1.txt", "not valid UTF-8 or GB18030"),
    ]
    single = import_file(cast["other"], folder / "bridge.txt", "text")
    assert (single.imported, single.errors) == (1, [])
    assert ArchiveDocument.objects.get(project=cast["other"]).title == doc(HARBOUR)["title"]


# --- CSV and JSON Lines -------------------------------------------------------------------------

CSV_ROWS = [
    ("headline", "body", "byline", "date", "link"),
    (doc(HARBOUR)["title"], doc(HARBOUR)["text"], "Mina Ortega", "2021-03-03", ""),
    ("Empty story", "", "Nobody", "2021-01-01", ""),
    ("Two lines", "First line of a story.\nSecond line of the same story.", "Ann", "", ""),
    (doc(FLOOD)["title"], doc(FLOOD)["text"], "Sam Reyes", "January 2022", ""),
    ("Bad link", doc(LIBRARY)["text"], "Priya", "2023-09-08", "javascript:alert(1)"),
]


def _csv_bytes(rows: list[tuple[str, ...]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def test_csv_with_a_column_mapping_imports_every_good_row_and_lists_the_bad_ones(
    cast: dict, tmp_path: Path
) -> None:
    data = _csv_bytes(CSV_ROWS)
    # a row with bytes that are not UTF-8 and one with more values than columns, at the end
    data += b'"Latin-1","Caf\xe9 society",X,,\n"Extra","Some text",Y,,,surplus\n'
    path = tmp_path / "stories.csv"
    path.write_bytes(data)
    mapping = archive.parse_mapping(
        "text=body,title=headline,author=byline,published_date=date,source_url=link"
    )
    run = import_file(cast["newsroom"], path, "csv", mapping=mapping, defaults={"license": "CC0"})
    assert run.status == ImportStatus.SUCCEEDED
    # the quoted two-line body moves every later line number by one
    assert errors_of(run) == [
        ("line 3", "empty text"),
        ("line 6", "published_date 'January 2022' is not a date (YYYY-MM-DD); left out"),
        ("line 7", "source_url 'javascript:alert(1)' is not an http(s) address; left out"),
        ("line 8", "not valid UTF-8"),
        ("line 9", "more values than columns"),
    ]
    assert (run.processed, run.imported) == (7, 4)
    documents = {d.title: d for d in ArchiveDocument.objects.filter(project=cast["newsroom"])}
    assert set(documents) == {doc(HARBOUR)["title"], "Two lines", doc(FLOOD)["title"], "Bad link"}
    harbour = documents[doc(HARBOUR)["title"]]
    assert (harbour.author, harbour.license, str(harbour.published_date)) == (
        "Mina Ortega",
        "CC0",
        "2021-03-03",
    )
    assert documents["Two lines"].text == "First line of a story.\nSecond line of the same story."
    # a value that could not be read is left out; the document is still imported
    assert documents[doc(FLOOD)["title"]].published_date is None
    assert documents["Bad link"].source_url == ""


def test_csv_without_the_mapped_text_column_reports_every_row(cast: dict, tmp_path: Path) -> None:
    path = tmp_path / "stories.csv"
    path.write_bytes(_csv_bytes(CSV_ROWS[:3]))
    run = import_file(cast["newsroom"], path, "csv", mapping={"text": "content"})
    assert errors_of(run) == [
        ("line 2", "missing column 'content'"),
        ("line 3", "missing column 'content'"),
    ]
    assert run.imported == 0 and run.status == ImportStatus.SUCCEEDED


def test_jsonl_imports_good_lines_and_reports_each_bad_line_by_number(
    cast: dict, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"headline": doc(HARBOUR)["title"], "body": doc(HARBOUR)["text"]}).encode(),
        json.dumps({"headline": "No body here"}).encode(),
        b'{"headline": "broken", "body": "unterminated',
        b"",
        '{"body": "Caf\xe9"}'.encode("latin-1"),
        b"[1, 2, 3]",
        json.dumps({"body": "   "}).encode(),
        json.dumps({"body": doc(FLOOD)["text"], "extra": {"nested": True}}).encode(),
        json.dumps({"body": 12345678}).encode(),
    ]
    path = tmp_path / "stories.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    run = import_file(
        cast["newsroom"], path, "jsonl", mapping={"text": "body", "title": "headline"}
    )
    assert errors_of(run) == [
        ("line 2", "missing column 'body'"),
        ("line 3", "not valid JSON (Invalid control character at)"),
        ("line 5", "not valid UTF-8"),
        ("line 6", "not a JSON object"),
        ("line 7", "empty text"),
    ]
    assert (run.total, run.processed, run.imported) == (8, 8, 3)
    texts = set(
        ArchiveDocument.objects.filter(project=cast["newsroom"]).values_list("text", flat=True)
    )
    assert texts == {doc(HARBOUR)["text"], doc(FLOOD)["text"], "12345678"}


def test_an_unknown_mapping_field_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown field 'body'"):
        archive.parse_mapping("body=text")
    with pytest.raises(ValueError, match="field=column"):
        archive.parse_mapping("text")


# --- Re-import ----------------------------------------------------------------------------------


def test_importing_the_same_documents_again_changes_nothing(cast: dict, tmp_path: Path) -> None:
    project = cast["newsroom"]
    path = tmp_path / "archive.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in ARCHIVE))
    first = import_file(project, path, "jsonl")
    assert (first.imported, first.duplicates) == (len(ARCHIVE), 0)
    counts = (ArchiveDocument.objects.count(), SourcePassage.objects.count())
    state = IndexState.objects.values_list("version", "epoch").get(project=project)
    # the same file again, and the same texts with other whitespace and other titles
    again = import_file(project, path, "jsonl")
    respaced = tmp_path / "respaced.jsonl"
    respaced.write_text(
        "".join(
            json.dumps({"title": "Another title", "text": "  " + d["text"].replace(" ", "\n  ")})
            + "\n"
            for d in ARCHIVE
        )
    )
    third = import_file(project, respaced, "jsonl")
    for run in (again, third):
        assert (run.imported, run.duplicates, run.errors) == (0, len(ARCHIVE), [])
    assert (ArchiveDocument.objects.count(), SourcePassage.objects.count()) == counts
    # the indexes have nothing to catch up on
    assert IndexState.objects.values_list("version", "epoch").get(project=project) == state
    # another project has an archive of its own
    other = import_file(cast["other"], path, "jsonl")
    assert other.imported == len(ARCHIVE)


def test_a_document_repeated_within_one_file_is_stored_once(cast: dict, tmp_path: Path) -> None:
    path = tmp_path / "twice.jsonl"
    path.write_text(json.dumps(doc(HARBOUR)) + "\n" + json.dumps(doc(HARBOUR)) + "\n")
    run = import_file(cast["newsroom"], path, "jsonl")
    assert (run.imported, run.duplicates) == (1, 1)


def test_imports_larger_than_a_chunk_count_across_chunks(
    cast: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "CHUNK", 3)
    rows = [{"text": f"Story number {n}: {UNRELATED}"} for n in range(7)] + [
        {"text": f"Story number 1: {UNRELATED}"},  # a duplicate of a row in an earlier chunk
        {"text": ""},
    ]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[int] = []
    run = import_file(
        cast["newsroom"], path, "jsonl", on_progress=lambda p: seen.append(p.processed)
    )
    assert seen == [3, 6, 9, 9]
    assert (run.imported, run.duplicates, errors_of(run)) == (7, 1, [("line 9", "empty text")])


# --- The management command ---------------------------------------------------------------------


def test_the_management_command_imports_and_prints_a_summary_with_each_problem(
    cast: dict, tmp_path: Path, hold_queue: list, django_capture_on_commit_callbacks: Any
) -> None:
    path = tmp_path / "stories.csv"
    path.write_bytes(_csv_bytes(CSV_ROWS))
    out, err = io.StringIO(), io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "archive_import",
            "newsroom",
            str(path),
            "--map",
            "text=body,title=headline,author=byline,published_date=date",
            "--license",
            "© Port Herald",
            stdout=out,
            stderr=err,
        )
    lines = out.getvalue().splitlines()
    assert lines == [
        f"{path}: 4 imported, 0 already in the archive, 2 problem(s).",
        "  line 3: empty text",
        "  line 6: published_date 'January 2022' is not a date (YYYY-MM-DD); left out",
        "Some rows were not imported (see above).",
    ]
    assert "stories.csv" in err.getvalue()  # the progress bar
    assert set(ArchiveDocument.objects.values_list("license", flat=True)) == {"© Port Herald"}
    # the worker is asked to build the paraphrase index
    assert (cast["newsroom"].pk,) in hold_queue
    # the second time everything is already there
    out = io.StringIO()
    call_command(
        "archive_import", "newsroom", str(path), "--map", "text=body", stdout=out, stderr=err
    )
    assert out.getvalue().splitlines()[0] == (
        f"{path}: 0 imported, 4 already in the archive, 1 problem(s)."
    )


def test_the_management_command_embeds_on_request(cast: dict, tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in ARCHIVE[:3]))
    out = io.StringIO()
    call_command(
        "archive_import", "newsroom", str(path), "--embed", stdout=out, stderr=io.StringIO()
    )
    assert out.getvalue().splitlines() == [
        f"{path}: 3 imported, 0 already in the archive, 0 problem(s)."
    ]
    assert not SourcePassage.objects.filter(embedded_at__isnull=True).exists()
    expected = sum(len(semantic.index_passages(d["text"])) for d in ARCHIVE[:3])
    assert PassageSentence.objects.count() == expected


def test_the_management_command_refuses_bad_arguments(cast: dict, tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text(json.dumps(doc(HARBOUR)) + "\n")
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    with pytest.raises(CommandError, match="No project with slug 'nowhere'"):
        call_command("archive_import", "nowhere", str(path), **quiet)
    with pytest.raises(CommandError, match="Unknown field 'body'"):
        call_command("archive_import", "newsroom", str(path), "--map", "body=x", **quiet)
    with pytest.raises(CommandError, match="does not exist"):
        call_command("archive_import", "newsroom", str(tmp_path / "missing.csv"), **quiet)
    odd = tmp_path / "archive.xml"
    odd.write_text("<xml/>")
    with pytest.raises(CommandError, match="Cannot tell the format"):
        call_command("archive_import", "newsroom", str(odd), **quiet)
    assert not ArchiveDocument.objects.exists()


# --- The upload page ----------------------------------------------------------------------------


def _jsonl_upload(documents: list[dict[str, str]], *extra: bytes) -> SimpleUploadedFile:
    body = b"".join(json.dumps(d).encode() + b"\n" for d in documents) + b"".join(extra)
    return SimpleUploadedFile("stories.jsonl", body, content_type="application/jsonl")


def test_an_admin_upload_is_imported_by_the_worker_and_the_status_endpoint_follows_it(
    worker: None, cast: dict, settings: Any
) -> None:
    client = logged_in(cast["alice"])
    response = client.post(
        "/p/newsroom/archive/import/",
        {
            "file": _jsonl_upload(
                [{"title": d["title"], "text": d["text"]} for d in ARCHIVE[:4]], b"{broken\n"
            ),
            "format": "jsonl",
            "mapping": "",
            "default_license": "© Port Herald",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/p/newsroom/archive/"
    run = ImportRun.objects.get(project=cast["newsroom"])
    url = f"/p/newsroom/archive/imports/{run.pk}/"

    def finished() -> dict | None:
        status = client.get(url).json()
        return status if status["status"] in {"succeeded", "failed"} else None

    status = wait_for(finished, timeout=60)
    assert status == {
        "id": run.pk,
        "status": "succeeded",
        "total": 5,
        "processed": 5,
        "imported": 4,
        "duplicates": 0,
        "percent": 100,
        "errors": [
            {
                "line": "line 5",
                "message": "not valid JSON (Expecting property name enclosed in double quotes)",
            }
        ],
        "error_count": 1,
        "error": "",
        "encodings": {"UTF-8": 5},
    }
    assert set(ArchiveDocument.objects.values_list("license", flat=True)) == {"© Port Herald"}
    run.refresh_from_db()
    assert run.created_by == cast["alice"] and run.finished_at is not None
    # the uploaded file was kept until read, then deleted
    uploads = Path(settings.MEDIA_ROOT) / "imports"
    assert uploads.is_dir() and list(uploads.iterdir()) == []
    # then the worker builds the paraphrase index in the background
    wait_for(lambda: not SourcePassage.objects.filter(embedded_at__isnull=True).exists())
    assert PassageSentence.objects.count() == sum(
        len(semantic.index_passages(d["text"])) for d in ARCHIVE[:4]
    )
    # and the archive page lists the run and its documents
    page = client.get("/p/newsroom/archive/").content.decode()
    assert "stories.jsonl" in page and doc(HARBOUR)["title"] in page
    assert 'data-status="succeeded"' in page


def test_the_status_endpoint_reports_progress_while_the_import_runs(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentstudio import realtime

    queued: list[int] = []
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", queued.append)
    monkeypatch.setattr(tasks.passages_embed, "delay", lambda *a: None)
    monkeypatch.setattr(archive, "CHUNK", 2)
    client = logged_in(cast["alice"])
    client.post(
        "/p/newsroom/archive/import/",
        {"file": _jsonl_upload(ARCHIVE[:5]), "format": "jsonl"},
    )
    [run_id] = queued
    url = f"/p/newsroom/archive/imports/{run_id}/"
    before = client.get(url).json()
    assert (before["status"], before["processed"], before["percent"]) == ("queued", 0, 0)
    # what a page polling the endpoint sees each time the import reports progress
    seen: list[tuple[str, int, int, int]] = []
    publish = realtime.publish_project_event

    def watch(project_id: int, payload: dict) -> None:
        if payload.get("kind") == "import" and "processed" in payload:
            status = client.get(url).json()
            seen.append((status["status"], status["processed"], status["total"], status["percent"]))
        publish(project_id, payload)

    monkeypatch.setattr(realtime, "publish_project_event", watch)
    services.import_run_execute(run_id=run_id)
    assert seen == [
        ("running", 2, 5, 40),
        ("running", 4, 5, 80),
        ("running", 5, 5, 100),
    ]
    assert client.get(url).json()["status"] == "succeeded"
    # a redelivered task finds the run claimed and does nothing
    services.import_run_execute(run_id=run_id)
    assert ArchiveDocument.objects.count() == 5


def test_an_upload_that_cannot_be_read_fails_with_the_reason(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.archive_import, "delay_on_commit", queued.append)
    monkeypatch.setattr(tasks.passages_embed, "delay", lambda *a: None)
    client = logged_in(cast["alice"])
    upload = SimpleUploadedFile("stories.zip", b"PK\x03\x04 this is no zip")
    client.post("/p/newsroom/archive/import/", {"file": upload, "format": "text"})
    [run_id] = queued
    services.import_run_execute(run_id=run_id)
    status = client.get(f"/p/newsroom/archive/imports/{run_id}/").json()
    assert status["status"] == "failed"
    assert status["error"].startswith("BadZipFile:")


def test_the_upload_form_reports_each_bad_field(cast: dict) -> None:
    client = logged_in(cast["alice"])
    response = client.post(
        "/p/newsroom/archive/import/",
        {
            "file": SimpleUploadedFile("empty.csv", b""),
            "format": "xml",
            "mapping": "body=text",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "format: Choose one of: text, csv, jsonl." in page
    assert "mapping: Unknown field &#x27;body&#x27;" in page
    assert "file: Choose a non-empty file." in page
    assert not ImportRun.objects.exists()


@pytest.mark.parametrize("user", ["bob", "charlie", "dave"])
def test_members_below_admin_cannot_import_or_delete(cast: dict, user: str) -> None:
    run = make_archive(cast["newsroom"], ARCHIVE[:1], embed=False)
    document = ArchiveDocument.objects.get()
    client = logged_in(cast[user])
    upload = {"file": _jsonl_upload(ARCHIVE[1:2]), "format": "jsonl"}
    assert client.post("/p/newsroom/archive/import/", upload).status_code == 403
    assert client.post(f"/p/newsroom/archive/{document.pk}/delete/").status_code == 403
    assert ImportRun.objects.count() == 1 and ArchiveDocument.objects.count() == 1
    # but they may read the archive and follow imports
    assert client.get("/p/newsroom/archive/").status_code == 200
    assert client.get(f"/p/newsroom/archive/imports/{run.pk}/").status_code == 200
    assert client.get(f"/p/newsroom/archive/{document.pk}/").status_code == 200
    page = client.get("/p/newsroom/archive/").content.decode()
    assert 'id="import-form"' not in page


def test_non_members_get_404_from_every_archive_page(cast: dict) -> None:
    run = make_archive(cast["newsroom"], ARCHIVE[:1], embed=False)
    document = ArchiveDocument.objects.get()
    client = logged_in(cast["eve"])  # admin of another project
    for url in [
        "/p/newsroom/archive/",
        f"/p/newsroom/archive/imports/{run.pk}/",
        f"/p/newsroom/archive/{document.pk}/",
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post("/p/newsroom/archive/import/", {"format": "jsonl"}).status_code == 404
    assert client.post(f"/p/newsroom/archive/{document.pk}/delete/").status_code == 404
    # nor can they reach it through their own project
    assert client.get(f"/p/other/archive/{document.pk}/").status_code == 404
    assert client.get(f"/p/other/archive/imports/{run.pk}/").status_code == 404
    assert client.post(f"/p/other/archive/{document.pk}/delete/").status_code == 404
    assert ArchiveDocument.objects.count() == 1


# --- Deleting, publishing, and the indexes following the database ------------------------------


def test_a_deleted_document_is_logged_as_removed_and_no_longer_matches(
    cast: dict, hold_queue: list
) -> None:
    project = cast["newsroom"]
    make_archive(project)
    text = f"{UNRELATED}\n\n{doc(HARBOUR)['text']}"
    draft = checked(make_draft(project, cast["bob"], text), hold_queue)
    assert draft.status == DraftStatus.HELD and lexical_best(draft) == 100.0
    epoch = IndexState.objects.get(project=project).epoch
    harbour = ArchiveDocument.objects.get(title=doc(HARBOUR)["title"])
    harbour_passages = list(
        SourcePassage.objects.filter(document=harbour).values_list("pk", flat=True)
    )
    # when an admin removes it from the archive
    response = logged_in(cast["alice"]).post(f"/p/newsroom/archive/{harbour.pk}/delete/")
    assert response.status_code == 302
    assert not SourcePassage.objects.filter(document_id=harbour.pk).exists()
    # logged for every process to apply; nothing is rebuilt (the epoch stays)
    assert IndexState.objects.get(project=project).epoch == epoch
    assert list(SourceRemoval.objects.filter(project=project).values_list("key", flat=True)) == [
        f"a:{pk}" for pk in harbour_passages
    ]
    # then the same draft, checked again, copies nothing
    services.draft_checks_rerun(draft=draft, user=cast["bob"])
    draft = check_held(draft, hold_queue)
    assert lexical_best(draft) == 0.0
    newest = draft.checks.get(kind="semantic", draft_version=draft.version - 1)
    assert newest.scores["paraphrased_sentences"] == 0
    assert draft.status == DraftStatus.AWAITING_REVIEW
    # and the index holds the other documents
    assert len(source_indexes.indexes_for(project.pk).lexical) == len(ARCHIVE) - 1


def check_held(draft: Draft, held: list) -> Draft:
    run_held_checks(held)
    draft.refresh_from_db()
    return draft


def test_an_unpublished_draft_stops_being_a_source(cast: dict, hold_queue: list) -> None:
    from review.lifecycle import draft_transition

    project, bob = cast["newsroom"], cast["bob"]
    published = checked(make_draft(project, bob, UNRELATED), hold_queue)
    for action in ["approve", "publish"]:
        published = draft_transition(draft=published, action=action, user=bob)
    passages = SourcePassage.objects.filter(draft=published)
    assert [p.kind for p in passages] == ["published"]
    assert lexical_best(checked(make_draft(project, bob, UNRELATED), hold_queue)) == 100.0
    epoch = IndexState.objects.get(project=project).epoch
    draft_transition(draft=published, action="unpublish", user=bob)
    assert not SourcePassage.objects.filter(draft=published).exists()
    assert IndexState.objects.get(project=project).epoch == epoch  # no rebuild
    assert SourceRemoval.objects.filter(project=project, key=f"p:{passages[0].pk}").exists()
    assert lexical_best(checked(make_draft(project, bob, UNRELATED), hold_queue)) == 0.0


def test_documents_imported_after_the_index_was_built_are_found(
    cast: dict, hold_queue: list
) -> None:
    project = cast["newsroom"]
    make_archive(project, ARCHIVE[:2])
    text = f"{UNRELATED}\n\n{doc(LIBRARY)['text']}"
    assert lexical_best(checked(make_draft(project, cast["bob"], text), hold_queue)) == 0.0
    # the index of this process catches up with the new rows, without a rebuild
    epoch = IndexState.objects.get(project=project).epoch
    make_archive(project, [doc(LIBRARY)])
    assert IndexState.objects.get(project=project).epoch == epoch
    draft = checked(make_draft(project, cast["bob"], text), hold_queue)
    assert lexical_best(draft) == 100.0
    assert draft.checks.get(kind="semantic").scores["paraphrased_sentences"] == 4
    # and a process that starts now builds the same index from the database (or, with Redis,
    # finds the lexical one already shared)
    source_indexes.forget_all()
    assert lexical_best(checked(make_draft(project, cast["bob"], text), hold_queue)) == 100.0


def test_an_index_write_that_fails_is_made_good_by_the_next_check(
    cast: dict, hold_queue: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = cast["newsroom"]
    make_archive(project, ARCHIVE[1:])
    # the index is built, then a document arrives and adding it to the index fails
    checked(make_draft(project, cast["bob"], UNRELATED), hold_queue)
    make_archive(project, [doc(HARBOUR)])
    original = plagiarism.LexicalIndex.add_many
    failures = [ConnectionError("Redis is unreachable")]

    def flaky(self: Any, items: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return original(self, items, **kwargs)

    monkeypatch.setattr(plagiarism.LexicalIndex, "add_many", flaky)
    text = f"{UNRELATED}\n\n{doc(HARBOUR)['text']}"
    first = checked(make_draft(project, cast["bob"], text), hold_queue)
    lexical = first.checks.get(kind="lexical")
    assert (lexical.status, lexical.reason) == ("not_run", "ConnectionError: Redis is unreachable")
    assert first.status == DraftStatus.HELD
    # the next check finds the copy: the passages that failed to go in were not skipped
    second = checked(make_draft(project, cast["bob"], text), hold_queue)
    assert lexical_best(second) == 100.0


# --- The paraphrase index -----------------------------------------------------------------------


def test_passages_embed_stores_sentence_vectors_in_batches_and_the_index_finds_them(
    cast: dict, hold_queue: list
) -> None:
    project = cast["newsroom"]
    make_archive(project, embed=False)
    assert SourcePassage.objects.filter(embedded_at__isnull=True).count() == len(ARCHIVE)
    version = IndexState.objects.get(project=project).version
    left = services.passages_embed(project_id=project.pk, limit=3)
    assert left == len(ARCHIVE) - 3
    assert IndexState.objects.get(project=project).version == version + 1
    while left:
        left = services.passages_embed(project_id=project.pk, limit=3)
    assert services.passages_embed(project_id=project.pk) == 0
    # one row per sentence of four words or more, with its offsets in the passage
    for passage in SourcePassage.objects.all():
        pieces = semantic.index_passages(passage.text)
        rows = list(passage.sentences.order_by("number"))
        assert [(r.number, r.start, r.end) for r in rows] == [
            (p.number, p.start, p.end) for p in pieces
        ]
        assert all(len(bytes(r.vector)) == 384 * 2 for r in rows)  # float16
        assert passage.embedded_at is not None
    # the semantic index of this process holds them, and a sentence finds itself
    project_indexes = source_indexes.indexes_for(project.pk)
    assert len(project_indexes.semantic) == PassageSentence.objects.count()
    embedder = services.get_embedder()
    flood_passage = SourcePassage.objects.get(document__title=doc(FLOOD)["title"])
    sentence = semantic.index_passages(flood_passage.text)[2]
    [[(key, score), *_]] = project_indexes.semantic.search(embedder.encode([sentence.text]), k=3)
    assert key == f"a:{flood_passage.pk}#{sentence.number}" and score > 0.99


def test_drafts_checked_before_the_archive_is_embedded_say_so(cast: dict, hold_queue: list) -> None:
    project = cast["newsroom"]
    make_archive(project, embed=False)
    draft = checked(make_draft(project, cast["bob"], UNRELATED), hold_queue)
    semantic_result = draft.checks.get(kind="semantic")
    # a partial run is a real result against what is indexed, saying how much it covered
    assert semantic_result.status == "ok"
    assert semantic_result.reason.startswith("Checked against 0% of the archive: import running")
    assert semantic_result.scores["passages_pending"] == len(ARCHIVE)
    assert semantic_result.scores["coverage"] == 0.0
    assert semantic_result.details["partial"] is True
    # so an unrelated draft is not held for it
    assert draft.status == DraftStatus.AWAITING_REVIEW
    # when indexing finishes, the draft's checks run again by themselves, against everything
    from review.services import embedding

    hold_queue.clear()
    while embedding.embed_chain_step(project_id=project.pk).again:
        pass
    assert any(isinstance(item, tuple) and item[0] == draft.pk for item in hold_queue)
    draft = check_held(draft, hold_queue)
    rerun = CheckResult.objects.filter(draft=draft, kind="semantic").latest("draft_version")
    assert rerun.status == "ok" and rerun.scores["coverage"] == 1.0
    assert rerun.details["partial"] is False and not rerun.reason
    assert draft.status == DraftStatus.AWAITING_REVIEW


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_commit_in_id_order_so_the_index_misses_nothing(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two imports into one project at once (two workers): the second waits for the first to
    commit before it writes, so no passage ever appears below what an index has caught up to.
    (SQLite lets one writer in at a time anyway; this needs PostgreSQL's concurrency.)"""
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: commits cannot overtake each other there")
    project = cast["newsroom"]
    make_archive(project, ARCHIVE[3:], embed=False)
    source_indexes.indexes_for(project.pk)
    inserted, release, second_done = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []
    original_bump = source_indexes.bump

    def slow_bump(project_id: int, **kwargs: Any) -> None:
        # The first import pauses after writing its rows, before it records the change.
        if threading.current_thread().name == "first-import":
            inserted.set()
            assert release.wait(timeout=60)
        original_bump(project_id, **kwargs)

    monkeypatch.setattr(source_indexes, "bump", slow_bump)

    def run_import(documents: list[dict[str, str]]) -> None:
        try:
            run = ImportRun.objects.create(project=project, source_name="t", format="jsonl")
            archive.import_rows(run=run, rows=[archive.RawRow("row", d) for d in documents])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            inserted.set()
        finally:
            connections.close_all()
            if threading.current_thread().name == "second-import":
                second_done.set()

    def blocked_on_a_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    first = threading.Thread(target=run_import, args=([doc(HARBOUR)],), name="first-import")
    first.start()
    assert inserted.wait(timeout=60) and not failures
    # the first import has written its rows but not committed; a second one starts
    second = threading.Thread(target=run_import, args=([doc(LIBRARY)],), name="second-import")
    second.start()
    wait_for(lambda: second_done.is_set() or blocked_on_a_lock())
    # a check happens now and catches up with whatever is committed
    source_indexes.indexes_for(project.pk)
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not failures, failures
    passages = SourcePassage.objects.filter(
        document__title__in=[doc(HARBOUR)["title"], doc(LIBRARY)["title"]]
    )
    keys = [source_indexes.passage_key_of(p.kind, p.pk) for p in passages]
    lexical = source_indexes.indexes_for(project.pk).lexical
    assert len(keys) == 2 and all(key in lexical for key in keys), keys


def test_the_demo_archive_rows_come_from_the_state_of_the_union_with_their_provenance(
    cast: dict,
) -> None:
    from review import setup

    rows = setup.sotu_rows()
    assert len(rows) > 5000
    assert all(len(row.fields["text"].split()) >= 12 for row in rows)
    first = rows[0].fields
    assert first["license"] == setup.SOTU_LICENSE
    assert first["citation"].endswith(", 1790") and first["published_date"] == "1790-01-01"
    # a slice imports cleanly, with dates and citations
    run = services.import_rows_direct(
        project=cast["newsroom"], rows=rows[:20], source_name=setup.SOTU_SOURCE
    )
    assert (run.imported, run.errors) == (20, [])
    dates = set(ArchiveDocument.objects.values_list("published_date", flat=True))
    assert {str(d) for d in dates} == {"1790-01-01"}
