"""The embedded studio's workers: every start serves every queue, a worker that dies is started
again, and every page says so while it is down (issue 22, item 6).

The start race: each embedded worker's Celery app used to repoint one process-wide trace
registry at itself while it was built; a task received meanwhile by a worker already running
found no tracer and the worker died (``TypeError: 'NoneType' object is not callable`` in
``fast_trace_task``, about one start in three), leaving drafts *Checking* with nothing on any
page. The first test starts the real studio (uvicorn serving the ASGI application, whose
import starts the workers) again and again, each time with a job waiting, as when someone asks
for a draft while the studio restarts; the others break a running worker the way Celery dies
(an error in its consumer) and watch it come back.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from contentstudio import embedded
from generation import services
from generation.models import Draft, GenerationJob, JobStatus
from review import tasks as review_tasks
from review.lifecycle import DraftStatus
from review.models import CheckRun
from tests import processes
from tests.conftest import wait_for
from tests.factories import make_draft

CHECKED = {DraftStatus.AWAITING_REVIEW, DraftStatus.HELD}
# Each start costs 10-40 s (Django, torch and the check models load in the new process).
STARTS = int(os.environ.get("CONTENTSTUDIO_TEST_STUDIO_STARTS", "8"))


# With REDIS_URL the studio runs `make worker`'s processes, not embedded workers: the tests'
# shared in-process worker is only a harness there, and breaking it would stop every test after.
EMBEDDED_ONLY = pytest.mark.skipif(
    bool(os.environ.get("REDIS_URL")), reason="the embedded studio runs without services"
)


@pytest.mark.slow
@EMBEDDED_ONLY
def test_every_start_of_the_embedded_studio_checks_the_first_draft(
    transactional_db: None,
    cast: dict,
    language_model: Any,
    news_template: Any,
    hold_queue: list,
    tmp_path: Path,
) -> None:
    assert connection.vendor == "sqlite"
    env = processes.required_settings(
        {
            **processes.db_env(),
            "CONTENTSTUDIO_EMBED_THREADS": "1",
            "CONTENTSTUDIO_CHECKS_START_GRACE": "3600",  # the on-commit start, not the sweep's
            "LOG_LEVEL": "WARNING",
        }
    )
    log = tmp_path / "studio.log"
    for start in range(STARTS):
        # given a job asked for while the studio is down (its message is lost with the old
        # process: the generate worker's start sends it again)
        job = services.job_create(
            project=cast["newsroom"],
            user=cast["bob"],
            template_version=news_template,
            variables={"headline": "Harbour reopens", "lede": "The pier is repaired."},
            settings={"max_new_tokens": 8},
            n_candidates=1,
            base_seed=start,
        )
        # when the studio starts; then its first draft is written and checked
        _start_and_see_checked(job, env=env, log=log, start=start)
    text = log.read_text()
    assert "Unrecoverable error" not in text, text[-3000:]
    assert "'NoneType' object is not callable" not in text


def _start_and_see_checked(job: GenerationJob, *, env: dict, log: Path, start: int) -> None:
    server, url = processes.start_studio(env=env, log=log)
    try:
        assert server.poll() is None, log.read_text()[-3000:]
        with urllib.request.urlopen(f"{url}/login/", timeout=30) as response:  # noqa: S310
            assert response.status == 200

        def checked() -> bool:
            drafts = Draft.objects.filter(job=job)
            return (
                GenerationJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
                and drafts.exists()
                and all(d.status in CHECKED for d in drafts)
            )

        try:
            wait_for(lambda: checked() or server.poll() is not None, timeout=180)
        except AssertionError:
            raise AssertionError(
                f"start {start + 1}: job {GenerationJob.objects.get(pk=job.pk).status}, "
                f"drafts {list(Draft.objects.filter(job=job).values_list('status'))}\n"
                f"{log.read_text()[-3000:]}"
            ) from None
        assert checked(), log.read_text()[-3000:]
        # by the worker of each queue, under its own name
        run = CheckRun.objects.get(draft=Draft.objects.get(job=job))
        assert run.worker.startswith("embedded-review@"), run.worker
        assert GenerationJob.objects.get(pk=job.pk).worker.startswith("embedded-generate@")
    finally:
        processes.kill(server)


def _review_worker() -> Any:
    [supervised] = [s for s in embedded._supervised if s.queues == ["review"]]
    return supervised


def _break(supervised: Any) -> None:
    """Make the running review worker die as Celery workers die: an error escaping its
    consumer while it takes a message (the next check it receives)."""
    consumer = supervised.worker.consumer

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TypeError("'NoneType' object is not callable")

    consumer.strategies[review_tasks.draft_check.name] = broken


def _draft_sent_to_check(cast: dict, text: str) -> Draft:
    from review import services as review_services

    draft = make_draft(cast["newsroom"], cast["bob"], text)
    return review_services.draft_checks_start(draft=draft)


@EMBEDDED_ONLY
def test_a_dead_worker_is_shown_on_every_page_and_started_again(
    worker: None, cast: dict, settings: Any, make_user: Any
) -> None:
    root = make_user("root", is_staff=True)
    settings.EMBEDDED_WORKER_RESTART_DELAY = 3600.0  # stays down until someone acts
    supervised = _review_worker()
    wait_for(lambda: supervised.state.state == "running", timeout=60)
    restarts = supervised.state.restarts

    # given the review worker dies on the next check it takes
    _break(supervised)
    draft = _draft_sent_to_check(cast, "The harbour reopened on Monday after repairs.")
    wait_for(lambda: supervised.state.state == "down", timeout=60)
    assert "TypeError" in supervised.state.error
    assert Draft.objects.get(pk=draft.pk).status == DraftStatus.CHECKING

    # then every page says what is down: to an editor, what it stops
    editor = Client()
    editor.force_login(cast["bob"])
    for path in ["/projects/", "/queue/", "/p/newsroom/"]:
        page = editor.get(path).content.decode()
        assert 'id="worker-alerts"' in page, path
        assert "The review worker stopped: drafts are not checked" in page
        assert "TypeError" not in page and "Start the workers now" not in page
    # to staff, why, and a button that starts it
    admin = Client()
    admin.force_login(root)
    page = admin.get("/p/newsroom/").content.decode()
    assert "TypeError" in page and "Start the workers now" in page
    workers_page = admin.get("/workers/").content.decode()
    assert 'data-state="down"' in workers_page and "embedded-review@" in workers_page
    # only staff may see the workers or restart them
    assert editor.get("/workers/").status_code == 403
    assert editor.post("/workers/restart/").status_code == 403
    assert _review_worker().state.state == "down"

    # when staff start it
    response = admin.post("/workers/restart/", {"next": "/p/newsroom/"})
    assert response.status_code == 302 and response["Location"] == "/p/newsroom/"
    # then it runs again, the message it died on is checked, and the banner is gone
    wait_for(lambda: supervised.state.state == "running", timeout=60)
    assert supervised.state.restarts == restarts + 1
    wait_for(lambda: Draft.objects.get(pk=draft.pk).status in CHECKED, timeout=120)
    assert 'id="worker-alerts"' not in editor.get("/p/newsroom/").content.decode()
    assert CheckRun.objects.get(draft=draft).worker == supervised.hostname


@EMBEDDED_ONLY
def test_a_dead_worker_starts_again_by_itself(worker: None, cast: dict, settings: Any) -> None:
    settings.EMBEDDED_WORKER_RESTART_DELAY = 0.2
    supervised = _review_worker()
    wait_for(lambda: supervised.state.state == "running", timeout=60)
    restarts = supervised.state.restarts
    down: list[str] = []
    # given the review worker dies on the next check it takes
    _break(supervised)
    draft = _draft_sent_to_check(cast, "The council approved the new bus timetable on Friday.")
    # when nobody does anything
    deadline = time.monotonic() + 60
    while supervised.state.restarts == restarts and time.monotonic() < deadline:
        down.append(supervised.state.state)
        time.sleep(0.01)
    # then it was down a moment, started again, and the draft is checked
    assert "down" in down
    wait_for(lambda: supervised.state.state == "running", timeout=60)
    assert supervised.state.restarts == restarts + 1
    wait_for(lambda: Draft.objects.get(pk=draft.pk).status in CHECKED, timeout=120)
