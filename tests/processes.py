"""Real worker processes for the fault tests: started on the test database, killed with SIGKILL.

A worker here is ``celery worker --beat`` in its own process group (beat runs in a child
process, as in a deployment), so a kill takes the whole group down at once, as a container's
OOM kill or a power cut would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def db_env() -> dict[str, str]:
    """The environment of a process that uses this test run's database."""
    env = dict(os.environ)
    env["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    env.setdefault("SECRET_KEY", "fault-test-secret-key-" + "x" * 30)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = settings_dict["NAME"]
    else:
        user = settings_dict["USER"] or "postgres"
        host = settings_dict["HOST"] or "127.0.0.1"
        port = settings_dict["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"
    return env


def side_redis_url() -> str:
    """A Redis database of its own for the workers of a fault test, so that the worker thread
    this pytest process may run on the usual broker never takes their tasks."""
    parsed = urlparse(os.environ["REDIS_URL"])
    db = int((parsed.path or "/0").strip("/") or 0)
    return urlunparse(parsed._replace(path=f"/{(db + 4) % 16}"))


def start_worker(
    *, name: str, env: dict[str, str], app: str = "contentstudio", log: Path
) -> subprocess.Popen[bytes]:
    """``celery worker --beat`` under ``name`` on every queue the studio uses."""
    handle = log.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            "generate,review,publish",
            "-n",
            name,
            "--pool",
            "threads",
            "--concurrency",
            "8",
            "--beat",
            "--schedule",
            str(log.with_suffix(f".{name.split('@')[0]}.beat")),
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: beat's child dies with it
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's whole process group (no handler runs, nothing is acknowledged)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        kill(proc)


def send(task: str, args: list[int], *, queue: str, broker: str) -> None:
    """Send a task to the workers' broker (what job_create does on commit, on their broker)."""
    from celery import Celery

    app = Celery("contentstudio-faults", broker=broker, set_as_current=False)
    with app.connection_for_write() as conn:
        app.send_task(task, args=args, queue=queue, connection=conn)


def purge(broker: str) -> None:
    import redis

    redis.Redis.from_url(broker).flushdb()


def required_settings(worker_env: dict[str, str]) -> dict[str, str]:
    """The settings a worker process needs to share this test run's models."""
    return {
        **worker_env,
        "TOXICITY_CHECKPOINT": settings.TOXICITY_CHECKPOINT,
        "TOXICITY_CONFIG_DIR": settings.TOXICITY_CONFIG_DIR,
        "TOXICITY_MODEL": "",
        "CONTENTSTUDIO_TORCH_THREADS": "1",
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(*, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The embedded studio as ``make serve`` runs it: uvicorn serving the ASGI application, whose
    import starts the embedded workers and beat in the same process. Returns it and its URL once
    it answers (or has exited: the caller looks at ``poll()``)."""
    import urllib.request

    port = free_port()
    handle = log.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "contentstudio.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        env={
            **env,
            "CONTENTSTUDIO_EMBEDDED_WORKER": "1",
            "CONTENTSTUDIO_EMBEDDED_BEAT": "1",
        },
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/login/", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    return proc, url
