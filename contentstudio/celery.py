"""The Celery application. Settings come from Django's (CELERY_*)."""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

app = Celery("contentstudio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def configure_torch_threads(threads: int) -> int:
    """Set torch's intra-op threads for this process (0: one per core); returns the count."""
    import torch

    count = threads or os.cpu_count() or 1
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def _configure_worker_process() -> None:
    from django.conf import settings

    configure_torch_threads(settings.TORCH_THREADS)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


@worker_process_init.connect
def _on_process_init(**kwargs) -> None:
    _configure_worker_process()


@worker_ready.connect
def _on_ready(sender=None, **kwargs) -> None:
    _configure_worker_process()
    from contentstudio import liveness

    try:
        queues = list(sender.app.amqp.queues.consume_from)
        liveness.worker_started(name=getattr(sender, "hostname", "") or "", queues=queues)
    except Exception:  # the heartbeat row must not keep a worker from working
        logging.getLogger(__name__).exception("the worker's heartbeat could not start")


@worker_shutdown.connect
def _on_shutdown(sender=None, **kwargs) -> None:
    from contentstudio import liveness

    try:
        liveness.worker_stopped(name=getattr(sender, "hostname", "") or "")
    except Exception:
        logging.getLogger(__name__).exception("the worker's heartbeat could not stop")
