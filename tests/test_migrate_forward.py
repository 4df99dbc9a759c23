"""A database made by an earlier release migrates forward with nothing lost.

The earlier release's own code (``git archive`` of ``BASE_COMMIT``, the last commit before the
apps moved) creates a SQLite database, fills it through its own services (a project, people, an
approved and published draft with its version and deliveries, a destination, an edit pair, a
fine-tune run), and the current code then runs ``migrate`` on that file. Every row of every
table the old schema had must still be there with the same values, and the current models must
read every row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The last landed commit before issue 18 moved publishing and fine-tuning to top-level apps.
BASE_COMMIT = "5cc5860"

FILL = """
from django.contrib.auth import get_user_model
from contentstudio.models import Role
from contentstudio.services import membership_set, project_create
from generation.finetune.models import FineTuneRun  # the previous release's paths
from generation.models import LanguageModel
from review.publishing import services as publishing
from tests.publishing_helpers import approved_draft

users = get_user_model().objects
alice = users.create_user("alice", password="alice-password-1")
bob = users.create_user("bob", password="bob-password-1")
newsroom = project_create(name="Newsroom", slug="newsroom", admin=alice)
membership_set(project=newsroom, user=bob, role=Role.EDITOR)
publishing.destination_create(
    project=newsroom, user=alice, name="Hook", kind="generic", url="https://example.org/hook"
)
draft = approved_draft({"newsroom": newsroom, "bob": bob})
publishing.publication_publish(draft=draft, user=bob, tags=["local"], summary="A summary.")
FineTuneRun.objects.create(
    project=newsroom, created_by=alice, base_model=LanguageModel.objects.get(),
    data={"archive": True}, settings={"max_steps": 1}, status="failed", error="test",
)
"""

READ_ALL = """
import json
from django.apps import apps
counts = {}
for model in apps.get_models():
    if model._meta.app_label in {"contentstudio", "generation", "review", "publishing",
                                  "finetune"}:
        rows = list(model.objects.all())  # every row must load through the current model
        counts[model._meta.db_table] = len(rows)
print("COUNTS" + json.dumps(counts))
"""


def _env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        CONTENTSTUDIO_DATA_DIR=str(data_dir),
        SQLITE_PATH=str(data_dir / "studio.sqlite3"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _run(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _snapshot(path: Path) -> dict[str, list[dict]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            table: [dict(row) for row in db.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]  # noqa: S608
            for table in tables
        }


def _base_tree(tmp_path: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", BASE_COMMIT],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {BASE_COMMIT} is not in this clone: {archive.stderr.decode()[:200]}")
    tree = tmp_path / "base"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.mark.slow
def test_a_database_of_the_previous_release_migrates_forward_without_losing_rows(
    tmp_path: Path,
) -> None:
    # given: a database made and filled by the previous release's own code
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = _env(data_dir)
    base = _base_tree(tmp_path)
    _run(base, env, "migrate", "--no-input", "-v", "0")
    _run(base, env, "shell", "-c", FILL)
    before = _snapshot(data_dir / "studio.sqlite3")
    assert before["publishing_publicationversion"] and before["finetune_editpair"]

    # when: the current code migrates it
    _run(ROOT, env, "migrate", "--no-input", "-v", "0")

    # then: every old row is there with its old values, and the current models read them all
    after = _snapshot(data_dir / "studio.sqlite3")
    for table, rows in before.items():
        if table == "django_migrations":
            continue
        assert table in after, f"table {table} disappeared"
        # New rows may follow (content types and permissions of new models); the old ones
        # come first, unchanged.
        kept = after[table]
        assert len(kept) >= len(rows), f"{table}: {len(rows)} rows before, {len(kept)} after"
        for old, new in zip(rows, kept[: len(rows)], strict=True):
            assert {k: new.get(k) for k in old} == old, f"{table}: a row changed"
    out = _run(ROOT, env, "shell", "-c", READ_ALL)
    counts = json.loads(out.split("COUNTS", 1)[1])
    for table, rows in before.items():
        if table in counts:
            assert counts[table] >= len(rows), table
