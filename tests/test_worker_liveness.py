"""Worker processes (Redis set-ups) write heartbeats; every page warns while a queue has no live
worker, and staff see every worker on /workers/ (issue 22, item 6).

Here the heartbeat rows are written by the same functions the workers call at start and
shutdown; tests/test_faults.py kills real worker processes and watches their rows go silent.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from contentstudio import liveness
from contentstudio.models import WorkerBeat
from tests.test_settings import ROOT


def test_without_a_live_worker_for_a_queue_every_page_says_what_stops(
    transactional_db: None, cast: dict, settings: Any, make_user: Any
) -> None:
    settings.CELERY_EMBEDDED = False
    settings.WORKER_STALE_AFTER = 30.0
    settings.WORKER_HEARTBEAT_INTERVAL = 3600.0  # the test says when a worker beats
    root = make_user("root", is_staff=True)
    editor, admin = Client(), Client()
    editor.force_login(cast["bob"])
    admin.force_login(root)
    try:
        # given workers for generate and review beating, and none for publish yet
        liveness.worker_started(name="generate@host", queues=["generate"])
        liveness.worker_started(name="review@host", queues=["review"])
        cache.clear()
        # then every page says nothing is delivered, and only that
        page = editor.get("/p/newsroom/").content.decode()
        assert "No worker serves the publish queue" in page
        assert "generate queue" not in page and "review queue" not in page
        assert "make worker" not in page  # the remedy is for staff
        assert "No worker has reported for it yet" in admin.get("/queue/").content.decode()

        # when the review worker goes silent (killed: its beats stop) and publish comes up
        WorkerBeat.objects.filter(name="review@host").update(
            beat_at=timezone.now() - timezone.timedelta(seconds=60)
        )
        liveness.worker_started(name="publish@host", queues=["publish"])
        cache.clear()
        # then the pages say checks stop, with when the worker was last heard from (staff)
        page = admin.get("/projects/").content.decode()
        assert "No worker serves the review queue" in page
        assert "review@host was last heard from" in page and "(silent)" in page
        assert "publish queue" not in page
        workers = admin.get("/workers/").content.decode()
        assert 'data-worker="review@host" data-state="silent"' in workers
        assert 'data-worker="publish@host" data-state="running"' in workers
        assert editor.get("/workers/").status_code == 403

        # and a clean shutdown says "stopped", not "silent"
        liveness.worker_stopped(name="publish@host")
        assert WorkerBeat.objects.get(name="publish@host").stopped_at is not None
        cache.clear()
        assert "No worker serves the publish queue" in editor.get("/queue/").content.decode()
    finally:
        for name in ("generate@host", "review@host", "publish@host"):
            liveness.worker_stopped(name=name)


def test_make_worker_runs_one_process_per_queue_and_beat_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contentstudio.workers", "--print"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "x", "CONTENTSTUDIO_PUBLISH_CONCURRENCY": "6"},
    )
    assert result.returncode == 0, result.stderr
    commands = [line.split() for line in result.stdout.splitlines()]
    queues = [c[c.index("-Q") + 1] for c in commands]
    assert queues == ["generate", "review", "publish"]
    pools = {
        c[c.index("-Q") + 1]: (c[c.index("--pool") + 1], c[c.index("--concurrency") + 1])
        for c in commands
    }
    assert pools == {
        "generate": ("threads", "2"),
        "review": ("threads", "2"),
        "publish": ("threads", "6"),
    }
    assert [c[c.index("-Q") + 1] for c in commands if "--beat" in c] == ["review"]
    makefile = (ROOT / "Makefile").read_text()
    worker_recipe = makefile.split("\nworker:", 1)[1].split("\n\n", 1)[0]
    assert "contentstudio.workers" in worker_recipe and "-Q generate,review,publish" not in makefile
