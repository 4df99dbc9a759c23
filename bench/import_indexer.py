"""The import side of the benchmarks that check drafts while an archive is being indexed
(``bench_scale.py`` and ``bench_store.py``, part B): Django on a throwaway database, a project to
import into, and the other worker process that imports the rows and runs the embedding chain
with the real services until it is told to stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def django_setup(*, tmp_env: str, prefix: str, threads: int) -> None:
    """Django with no embedded worker, its indexes in the folder ``$tmp_env`` (made with
    ``prefix`` when unset) and, unless ``DATABASE_URL`` names a database, a SQLite file there;
    torch on ``threads`` threads."""
    tmp = Path(os.environ.setdefault(tmp_env, tempfile.mkdtemp(prefix=prefix)))
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ["CONTENTSTUDIO_INDEX_DIR"] = str(tmp / "indexes")
    if not os.environ.get("DATABASE_URL"):
        os.environ.pop("REDIS_URL", None)
        os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
    import django

    django.setup()
    import torch

    torch.set_num_threads(threads)


def run_indexer(project_id: str, rows: list[Any]) -> None:
    """The other worker: imports ``rows`` into the project, then runs the embedding chain (the
    real services) until told to stop (a line on stdin) or done."""
    from contentstudio.models import Project
    from review import services
    from review.services import embedding

    project = Project.objects.get(pk=int(project_id))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    services.import_rows_direct(project=project, rows=rows, source_name="bench import")
    while not stop.is_set() and embedding.embed_chain_step(project_id=project.pk).again:
        pass


def bench_project() -> tuple[Any, Any]:
    """Migrates, then makes a user and a project of their own (the user its admin) for this run;
    the embedding model is loaded before anything is measured. Returns (user, project)."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth import get_user_model

    from contentstudio.models import Membership, Project, Role
    from review import services

    stamp = f"{os.getpid()}-{int(time.time())}"
    user = get_user_model().objects.create_user(f"bench-{stamp}", password="x")
    project = Project.objects.create(name=f"Bench {stamp}", slug=f"bench-{stamp}")
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    services.get_embedder().encode(["warm up the model"])
    return user, project


def passage_counts(project: Any) -> tuple[int, int]:
    """(passages embedded, passages imported) of ``project`` so far."""
    from review.models import SourcePassage

    passages = SourcePassage.objects.filter(project=project)
    return passages.filter(embedded_at__isnull=False).count(), passages.count()


def start_indexer(script: str, project: Any) -> subprocess.Popen:
    """``script --indexer <project id>`` in a process of its own (its ``--indexer`` entry calls
    :func:`run_indexer`)."""
    return subprocess.Popen(
        [sys.executable, script, "--indexer", str(project.pk)],
        stdin=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )


def stop_indexer(indexer: subprocess.Popen, *, timeout: float, kill: bool = False) -> None:
    """Tells the indexer to stop and waits ``timeout`` seconds for it; with ``kill``, one still
    running then is killed (it reads the stop line between import batches only)."""
    if indexer.poll() is None:
        indexer.stdin.write("stop\n")  # type: ignore[union-attr]
        indexer.stdin.flush()  # type: ignore[union-attr]
    if not kill:
        indexer.wait(timeout=timeout)
        return
    try:
        indexer.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        indexer.kill()
        indexer.wait(timeout=60)
