"""A pool per queue (issue 22, item 8): a full ``generate`` queue and a hanging receiver delay
no check and no delivery to another system.

Here in the embedded studio (a worker thread per queue, the test's own worker fixture); the same
with ``make worker``'s processes on Redis is in tests/test_faults.py. The assertions are about
order, not time: the check and the other delivery finish while every generation job is still
blocked and the hanging receiver still has its request.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from django.conf import settings as django_settings

from generation import runner, services
from generation.models import GenerationJob, JobStatus
from publishing import services as publishing
from publishing.models import Delivery, DeliveryStatus
from review import services as review_services
from review.lifecycle import DraftStatus
from tests.conftest import wait_for
from tests.factories import make_draft
from tests.publishing_helpers import Receiver, approved_draft


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every generation job blocks at its first decoding step (the model ran that step) until
    the gate opens: the generate queue is as busy as it gets."""
    opened = threading.Event()
    original = runner._Recorder.on_step

    def on_step(self: Any, deltas: list[str | None]) -> None:
        opened.wait(120)
        original(self, deltas)

    monkeypatch.setattr(runner._Recorder, "on_step", on_step)
    yield opened
    opened.set()


@pytest.mark.skipif(
    bool(os.environ.get("REDIS_URL")),
    reason="on Redis the pools are make worker's processes: tests/test_faults.py covers them",
)
def test_a_full_generate_queue_and_a_hanging_receiver_hold_back_no_check_or_delivery(
    worker: None,
    cast: dict,
    language_model: Any,
    news_template: Any,
    gate: threading.Event,
    settings: Any,
) -> None:
    settings.PUBLISHING_READ_TIMEOUT = 60.0  # the hanging receiver holds its request that long
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]  # the receivers are local
    hanging = threading.Event()
    release = threading.Event()

    def hang(handler: Any, body: bytes) -> tuple[int, Any]:
        hanging.set()
        release.wait(90)
        return 200, {"ok": True}

    slow = Receiver(hang).start()
    fast = Receiver(lambda handler, body: (200, {"ok": True})).start()
    try:
        # given every generate slot taken by a job that does not end, and more jobs waiting
        jobs = [
            services.job_create(
                project=cast["newsroom"],
                user=cast["bob"],
                template_version=news_template,
                variables={"headline": f"Story {n}", "lede": "A lede."},
                settings={"max_new_tokens": 8},
                n_candidates=1,
                base_seed=n,
            )
            for n in range(django_settings.GENERATION_CONCURRENCY + 2)
        ]
        wait_for(
            lambda: (
                GenerationJob.objects.filter(status=JobStatus.RUNNING).count()
                == django_settings.GENERATION_CONCURRENCY
            ),
            timeout=120,
        )
        # and a receiver that hangs on a delivery
        publishing.destination_create(
            project=cast["newsroom"], user=cast["alice"], name="Slow", kind="generic", url=slow.url
        )
        publishing.publication_publish(draft=approved_draft(cast, title="First"), user=cast["bob"])
        assert hanging.wait(60), "the slow receiver got nothing"

        # when a draft is written and another system gets a publication
        draft = review_services.draft_checks_start(
            draft=make_draft(cast["newsroom"], cast["bob"], "The ferry timetable changes today.")
        )
        fast_destination, _ = publishing.destination_create(
            project=cast["newsroom"], user=cast["alice"], name="Fast", kind="generic", url=fast.url
        )
        publishing.publication_publish(draft=approved_draft(cast, title="Second"), user=cast["bob"])

        # then the draft is checked and the other system has its delivery...
        wait_for(
            lambda: (
                draft.__class__.objects.get(pk=draft.pk).status
                in {DraftStatus.AWAITING_REVIEW, DraftStatus.HELD}
            ),
            timeout=120,
        )
        wait_for(
            lambda: Delivery.objects.filter(
                destination=fast_destination, status=DeliveryStatus.DELIVERED
            ).exists(),
            timeout=90,
        )
        # ...while no generation job has ended and the slow receiver still holds its request
        states = list(
            GenerationJob.objects.filter(pk__in=[j.pk for j in jobs]).values_list(
                "status", flat=True
            )
        )
        assert JobStatus.SUCCEEDED not in states and JobStatus.QUEUED in states, states
        assert not release.is_set()
        assert (
            not Delivery.objects.exclude(destination=fast_destination)
            .filter(attempts__gt=0)
            .exists()
        )
    finally:
        gate.set()
        release.set()
    # and everything else finishes once they let go
    wait_for(
        lambda: not GenerationJob.objects.exclude(status=JobStatus.SUCCEEDED).exists(), timeout=180
    )
    wait_for(
        lambda: not Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists(), timeout=90
    )
    slow.stop()
    fast.stop()
