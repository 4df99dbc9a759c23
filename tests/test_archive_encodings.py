"""Archive imports keep their encoding right and say what they detected: UTF-8, UTF-8 with a
byte-order mark, UTF-16 with its mark and GB18030 files are read into the same text; any other
encoding is refused naming what it looks like; each document's language is detected and the
Archive page shows both (and filters by language)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from review import archive, services
from review.models import ArchiveDocument, ImportRun, ImportStatus
from tests.test_archive import _review_env  # noqa: F401 - the same environment (autouse)

# Chinese prose with a character outside GBK (U+3400, four bytes in GB18030) and full-width
# punctuation; and English.
CHINESE = (
    "港口大桥将于明年秋天重建。市议会周二投票通过了这项计划，预计耗资三千万元。"
    "市长说：“这座桥每天有两万名通勤者使用。”工程师在桥墩中发现了㐀形裂缝。"
)
CHINESE_TWO = "图书馆将延长周末开放时间。新的阅览室配备了电脑和打印机，供市民免费使用。"
ENGLISH = (
    "The library will open longer on weekends. The new reading room has computers and "
    "printers that residents may use free of charge."
)


def documents(project: Any) -> dict[str, ArchiveDocument]:
    return {d.title: d for d in ArchiveDocument.objects.filter(project=project)}


def test_text_files_in_utf8_bom_and_gb18030_are_read_and_the_encodings_reported(
    cast: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "stories"
    folder.mkdir()
    (folder / "bridge-gb.txt").write_bytes(f"港口大桥\n\n{CHINESE}".encode("gb18030"))
    (folder / "library-bom.txt").write_bytes(f"图书馆\n\n{CHINESE_TWO}".encode("utf-8-sig"))
    (folder / "library-en.txt").write_bytes(f"Library hours\n\n{ENGLISH}".encode())
    (folder / "library-utf16.txt").write_bytes(
        f"Weekend hours\n\n{ENGLISH} Again.".encode("utf-16")
    )
    (folder / "cafe-latin1.txt").write_bytes(
        "Café society\n\nThe café reopens on the square après the summer.".encode("cp1252")
    )
    # the GB18030 bytes really are not UTF-8, and the BOM file starts with its mark
    assert not _is_utf8((folder / "bridge-gb.txt").read_bytes())
    assert (folder / "library-bom.txt").read_bytes().startswith(b"\xef\xbb\xbf")

    run = services.import_path(project=cast["newsroom"], path=folder, fmt="text")

    assert run.status == ImportStatus.SUCCEEDED and run.imported == 4
    stored = documents(cast["newsroom"])
    assert stored["港口大桥"].text == CHINESE  # the four-byte character survives
    assert stored["图书馆"].text == CHINESE_TWO  # no BOM left in the text
    assert stored["Library hours"].text == ENGLISH
    assert stored["Weekend hours"].text == f"{ENGLISH} Again."
    assert {t: d.language for t, d in stored.items()} == {
        "港口大桥": "zh",
        "图书馆": "zh",
        "Library hours": "en",
        "Weekend hours": "en",
    }
    assert run.encodings == {"GB18030": 1, "UTF-8 with BOM": 1, "UTF-8": 1, "UTF-16": 1}
    # a single-byte encoding is refused, naming what it looks like, and nothing garbled is stored
    [(where, message)] = [(e["line"], e["message"]) for e in run.errors]
    assert where == "cafe-latin1.txt"
    assert message.startswith("not valid UTF-8 or GB18030 (it looks like ")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_gb18030_csv_and_a_bom_jsonl_are_read_whole(cast: dict, tmp_path: Path) -> None:
    out = io.StringIO()
    csv.writer(out).writerows(
        [("标题", "正文"), ("港口大桥", CHINESE), ("图书馆", CHINESE_TWO), ("Library", ENGLISH)]
    )
    gb_csv = tmp_path / "stories.csv"
    gb_csv.write_bytes(out.getvalue().encode("gb18030"))
    run = services.import_path(
        project=cast["newsroom"], path=gb_csv, fmt="csv", mapping={"text": "正文", "title": "标题"}
    )
    assert (run.imported, run.errors, run.encodings) == (3, [], {"GB18030": 3})
    stored = documents(cast["newsroom"])
    assert stored["港口大桥"].text == CHINESE and stored["港口大桥"].language == "zh"
    assert stored["Library"].language == "en"

    lines = [json.dumps({"title": "桥", "text": CHINESE}, ensure_ascii=False)]
    lines.append(json.dumps({"title": "Library", "text": ENGLISH}))
    bom_jsonl = tmp_path / "stories.jsonl"
    bom_jsonl.write_bytes("\n".join(lines).encode("utf-8-sig"))
    run = services.import_path(project=cast["other"], path=bom_jsonl, fmt="jsonl")
    assert (run.imported, run.errors, run.encodings) == (2, [], {"UTF-8 with BOM": 2})
    assert documents(cast["other"])["桥"].text == CHINESE


def test_a_mostly_utf8_csv_still_reports_its_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "stories.csv"
    path.write_bytes(f"title,text\nOne,{ENGLISH}\n".encode() + b"Two,Caf\xe9 society\n")
    # not GB18030 (a strict decode fails), so UTF-8 with the bad row named
    assert archive.file_encoding(path) == archive.UTF8
    rows = list(archive.rows_from_path(path, "csv", {}))
    assert [r.error for r in rows] == [None, "not valid UTF-8"]


def test_the_uploaded_gb18030_file_shows_its_encoding_and_the_archive_filters_by_language(
    worker: None, cast: dict
) -> None:
    from tests.conftest import wait_for

    client = Client()
    client.force_login(cast["alice"])
    bundle = f"港口大桥\n\n{CHINESE}".encode("gb18030")
    response = client.post(
        "/p/newsroom/archive/import/",
        {"file": SimpleUploadedFile("bridge.txt", bundle), "format": "text"},
    )
    assert response.status_code == 302
    run = ImportRun.objects.get(project=cast["newsroom"])
    wait_for(lambda: ImportRun.objects.get(pk=run.pk).status == ImportStatus.SUCCEEDED)
    status = client.get(f"/p/newsroom/archive/imports/{run.pk}/").json()
    assert status["encodings"] == {"GB18030": 1}
    services.import_rows_direct(
        project=cast["newsroom"],
        rows=[archive.RawRow("row 1", {"title": "Library", "text": ENGLISH})],
        source_name="rows",
    )
    page = client.get("/p/newsroom/archive/").content.decode()
    assert "GB18030" in page
    assert '<option value="zh"' in page and '<option value="en"' in page
    only_zh = client.get("/p/newsroom/archive/?language=zh").content.decode()
    assert "港口大桥" in only_zh and "Library" not in only_zh
    document = ArchiveDocument.objects.get(title="港口大桥")
    detail = client.get(f"/p/newsroom/archive/{document.pk}/").content.decode()
    assert 'data-language="zh"' in detail and "Chinese (zh)" in detail
