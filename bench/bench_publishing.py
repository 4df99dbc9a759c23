"""Benchmark of publishing: the export API's deep pages and the webhook delivery path.

Run from the repo root: ``.venv/bin/python bench/bench_publishing.py``. Prints one ``name: value``
line per figure on stdout; details on stderr.

* ``export_deep_page_ratio``: p50 time of the LAST page when a token-authenticated client pages
  through 10,000 publications (``GET /api/v1/publications/?project=...``, 50 a page, following
  the ``next`` links) / p50 time of the FIRST page. Goal <= 1.2: keyset cursors cost the same
  at any depth. On stderr, the same deep page fetched with OFFSET (what a LimitOffset API would
  do) for comparison.
* ``webhook_overhead_ratio``: delivering 500 signed webhooks through the product's task path (the
  ``destination_flush`` Celery task on a real worker thread over the in-memory broker: payload
  built from the stored version, Standard Webhooks signature, attempt logged, delivery row
  updated) / posting the same 500 payloads directly with one ``requests.Session`` to the same
  receiver. Goal <= 2.

Each request goes through Django's test ``Client`` (every middleware, token authentication, the
real view). The database is a fresh temporary SQLite file, as the studio runs embedded (the
bench ignores DATABASE_URL and REDIS_URL so it never writes to a shared database); the rows are
bulk-created directly. The receiver is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_PUBLICATIONS = 10_000
N_WEBHOOKS = 100 if QUICK else 500
REPS = 7 if QUICK else 21


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(tmp: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "contentstudio.settings"
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ["SQLITE_PATH"] = str(tmp / "publishing.sqlite3")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    # The receiver is local: allowed by name (the studio refuses its own network by default).
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0, interactive=False)


def build(n: int) -> tuple[Any, Any, list[Any]]:
    """A project with ``n`` published publications (each with a draft and a version)."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from contentstudio.services import project_create
    from generation.models import Candidate, Draft, GenerationJob, LanguageModel
    from publishing.models import Publication, PublicationVersion
    from review.lifecycle import DraftStatus

    user = get_user_model().objects.create_user("bench-admin", password="bench-password-1")
    project = project_create(name="Bench desk", slug="bench", admin=user)
    model = LanguageModel.objects.create(name="bench", source_kind="local", source="/none")
    job = GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="p", n_candidates=1, base_seed=1
    )
    text = "The harbour festival drew crowds to the quay for music and food. " * 20
    Candidate.objects.bulk_create(
        [Candidate(job=job, index=i, seed=i, status="finished", text=text) for i in range(n)],
        batch_size=2000,
    )
    candidates = list(Candidate.objects.filter(job=job).order_by("index"))
    Draft.objects.bulk_create(
        [
            Draft(
                project=project,
                job=job,
                candidate=c,
                title=f"Story {c.index}",
                model_output=text,
                body=f"<p>{text}</p>",
                status=DraftStatus.PUBLISHED,
                model=model,
                model_name="bench",
                model_source="/none",
                prompt="p",
                settings={},
                seed=c.seed,
            )
            for c in candidates
        ],
        batch_size=2000,
    )
    drafts = list(Draft.objects.filter(job=job).order_by("pk"))
    start = timezone.now() - timedelta(days=30)
    Publication.objects.bulk_create(
        [
            Publication(
                project=project,
                draft=d,
                status="published",
                headline=d.title,
                current_version=1,
                first_published_at=start + timedelta(seconds=i * 60),
                # Many share a timestamp, as a bulk import would: the cursor must not care.
                updated_at=start + timedelta(seconds=(i // 5) * 60),
                tags=["bench"],
            )
            for i, d in enumerate(drafts)
        ],
        batch_size=2000,
    )
    publications = list(Publication.objects.filter(project=project).order_by("pk"))
    PublicationVersion.objects.bulk_create(
        [
            PublicationVersion(
                publication=p,
                number=1,
                kind="publish",
                headline=p.headline,
                summary="",
                body_html=f"<p>{text}</p>",
                body_text=text,
                tags=["bench"],
                byline="bench-admin, with AI assistance",
                ai_disclosure="Drafted with AI.",
                digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/"
                "trainedAlgorithmicMedia",
                provenance={"model": {"name": "bench"}},
            )
            for p in publications
        ],
        batch_size=2000,
    )
    return user, project, publications


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def bench_export(user: Any, project: Any) -> float:
    from django.db import connection
    from django.test import Client

    from contentstudio import tokens

    _, key = tokens.token_create(project=project, user=user, name="bench", scope="read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    first_url = f"/api/v1/publications/?project={project.slug}&page_size=50"
    url, pages, last_url = first_url, 0, first_url
    started = time.perf_counter()
    while url:
        body = client.get(url).json()
        pages += 1
        assert body["results"], "an empty page before the end"
        last_url = url
        url = body["next"].replace("http://testserver", "") if body["next"] else None
    log(f"paged through {pages} pages in {time.perf_counter() - started:.1f} s")
    assert pages == N_PUBLICATIONS // 50, pages

    def timed(target: str) -> float:
        t = time.perf_counter()
        response = client.get(target)
        assert response.status_code == 200
        return time.perf_counter() - t

    first, last = [], []
    for _ in range(REPS):  # alternate, so a busy moment of the machine hits both alike
        first.append(timed(first_url))
        last.append(timed(last_url))
    log(f"first page p50 {p50(first) * 1000:.1f} ms, last page p50 {p50(last) * 1000:.1f} ms")
    # For comparison: the deep page by OFFSET (not what the API does).
    with connection.cursor() as cursor:
        offset = []
        for _ in range(REPS):
            t = time.perf_counter()
            cursor.execute(
                "SELECT id FROM publishing_publication WHERE project_id = %s "
                "ORDER BY updated_at DESC, id DESC LIMIT 51 OFFSET %s",
                [project.pk, N_PUBLICATIONS - 50],
            )
            cursor.fetchall()
            offset.append(time.perf_counter() - t)
        keyset = []
        for _ in range(REPS):
            t = time.perf_counter()
            cursor.execute(
                "SELECT id FROM publishing_publication WHERE project_id = %s "
                "ORDER BY updated_at DESC, id DESC LIMIT 51",
                [project.pk],
            )
            cursor.fetchall()
            keyset.append(time.perf_counter() - t)
    log(
        f"ids query alone: first page {p50(keyset) * 1000:.2f} ms, page {pages} by OFFSET "
        f"{p50(offset) * 1000:.2f} ms ({p50(offset) / p50(keyset):.1f}x)"
    )
    return p50(last) / p50(first)


class _Sink(BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with _Sink.lock:
            _Sink.count += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def bench_webhooks(user: Any, project: Any, publications: list[Any]) -> float:
    import requests
    from celery.signals import task_postrun
    from django.utils import timezone

    from contentstudio.embedded import start_embedded_worker, stop_embedded_worker
    from publishing import services, tasks
    from publishing.models import (
        Delivery,
        DeliveryAttempt,
        DeliveryStatus,
        PublicationVersion,
    )
    from publishing.senders import generic as webhook

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    destination, secret = services.destination_create(
        project=project, user=user, name="sink", kind="generic", url=url
    )
    versions = list(
        PublicationVersion.objects.filter(publication__in=publications[:N_WEBHOOKS])
        .select_related("publication__project")
        .order_by("pk")
    )
    Delivery.objects.bulk_create(
        [
            Delivery(
                destination=destination,
                publication=v.publication,
                version=v,
                sequence=i + 1,
                event_type="publication.published",
                next_attempt_at=timezone.now(),
            )
            for i, v in enumerate(versions)
        ]
    )
    # The direct baseline: the same bodies, signed, posted one after another.
    bodies = [
        webhook.webhook_body(d)
        for d in Delivery.objects.filter(destination=destination)
        .select_related("version__publication__project")
        .order_by("sequence")
    ]
    assert secret is not None

    def direct_round() -> float:
        session = requests.Session()
        started = time.perf_counter()
        for body, version in zip(bodies, versions, strict=True):
            headers = webhook.webhook_headers(secret, msg_id=version.idempotency_key, body=body)
            assert session.post(url, data=body.encode(), headers=headers, timeout=10).ok
        return time.perf_counter() - started

    finished = threading.Event()

    def on_postrun(sender: Any = None, **kwargs: Any) -> None:
        if sender is not None and sender.name == tasks.destination_flush.name:
            finished.set()

    def task_round() -> float:
        # Everything waits to be sent again, as after a publication of 500 items.
        DeliveryAttempt.objects.filter(delivery__destination=destination).delete()
        Delivery.objects.filter(destination=destination).update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        _Sink.count = 0
        finished.clear()
        started = time.perf_counter()
        tasks.destination_flush.delay(destination.pk)
        # The end is the task's own end (no polling of the database beside the worker).
        if not finished.wait(600):
            raise SystemExit("the worker did not finish in 10 minutes")
        elapsed = time.perf_counter() - started
        delivered = Delivery.objects.filter(
            destination=destination, status=DeliveryStatus.DELIVERED
        ).count()
        assert delivered == len(bodies) == _Sink.count, (delivered, _Sink.count)
        return elapsed

    # The task path: one flush task on a real worker thread drains the destination in order.
    # Rounds alternate with the direct posts, so a busy moment of the machine hits both alike.
    start_embedded_worker(["publish"])
    task_postrun.connect(on_postrun, weak=False)
    direct_times, task_times = [], []
    try:
        time.sleep(1.0)  # let the worker connect
        for _ in range(2 if QUICK else 3):
            direct_times.append(direct_round())
            task_times.append(task_round())
    finally:
        task_postrun.disconnect(on_postrun)
        stop_embedded_worker()
        server.shutdown()
    direct, through_task = p50(direct_times), p50(task_times)
    log(f"direct: {len(bodies)} posts, p50 of {len(direct_times)} rounds {direct:.2f} s")
    log(f"task path: {len(bodies)} deliveries, p50 {through_task:.2f} s")
    return through_task / direct


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-publishing-") as tmp:
        prepare(Path(tmp))
        started = time.perf_counter()
        user, project, publications = build(N_PUBLICATIONS)
        log(f"{N_PUBLICATIONS} publications written in {time.perf_counter() - started:.1f} s")
        export = bench_export(user, project)
        webhooks = bench_webhooks(user, project, publications)
        print(f"export_deep_page_ratio: {export:.2f}")
        print(f"webhook_overhead_ratio: {webhooks:.2f}")


if __name__ == "__main__":
    main()
