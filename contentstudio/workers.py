"""One worker pool per queue: the plan both set-ups run, and ``make worker``'s supervisor.

Generation takes the cores for minutes; a check takes a second; a delivery mostly waits on
someone else's server. Served by one pool, a busy ``generate`` queue or a hanging receiver held
back everything behind it (a "retry now" waited 26 s behind four jobs). Each queue therefore
gets a pool of its own, sized for two cores:

- ``generate``: ``GENERATION_CONCURRENCY`` threads sharing the loaded model, which uses every
  core itself (``TORCH_THREADS``);
- ``review``: ``REVIEW_CONCURRENCY`` threads (2: a check beside an import or an embedding batch);
- ``publish``: ``PUBLISH_CONCURRENCY`` light threads (4: most of their time is spent waiting).

The embedded studio runs each pool as a worker thread of the serving process
(``contentstudio.embedded``); ``make worker`` runs each as a process of its own
(``python -m contentstudio.workers``), restarts one that dies (with backoff), and runs beat in
the ``review`` process (the sweeps are on that queue).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

QUEUES = ("generate", "review", "publish")
# The queue whose process runs beat (every periodic sweep is sent to "review").
BEAT_QUEUE = "review"


@dataclass(frozen=True)
class WorkerPool:
    queue: str
    # Celery's pool: "solo" (the consumer runs the task itself) for one slot, else "threads".
    pool: str
    concurrency: int


def worker_pools(queues: list[str] | tuple[str, ...] = QUEUES) -> list[WorkerPool]:
    """The pool of each queue, from the settings."""
    from django.conf import settings

    sizes = {
        "generate": settings.GENERATION_CONCURRENCY,
        "review": settings.REVIEW_CONCURRENCY,
        "publish": settings.PUBLISH_CONCURRENCY,
    }
    unknown = sorted(set(queues) - set(sizes))
    if unknown:
        raise ValueError(f"Unknown queue(s) {', '.join(unknown)}; the queues: {', '.join(QUEUES)}.")
    return [
        WorkerPool(queue, "solo" if sizes[queue] == 1 else "threads", sizes[queue])
        for queue in queues
    ]


def celery_command(
    pool: WorkerPool,
    *,
    app: str = "contentstudio",
    beat_schedule: Path | None = None,
    loglevel: str = "INFO",
) -> list[str]:
    """The ``celery worker`` command line of one queue's process (``beat_schedule``: run beat
    in it, keeping its schedule there)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        pool.queue,
        # A stable name per queue and host: a process that comes back under it fails the
        # jobs its predecessor died with at once (generation.tasks).
        "-n",
        f"{pool.queue}@%h",
        "--pool",
        pool.pool,
        "--concurrency",
        str(pool.concurrency),
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        loglevel,
    ]
    if beat_schedule is not None:
        command += ["--beat", "--schedule", str(beat_schedule)]
    return command


class Supervisor:
    """Runs one process per queue; restarts one that exits (1 s, doubled while it keeps dying
    within a minute of its start, at most 60 s); stops them all on SIGINT/SIGTERM."""

    RESET_AFTER = 60.0
    MAX_DELAY = 60.0

    def __init__(self, commands: dict[str, list[str]], *, first_delay: float = 1.0) -> None:
        self.commands = commands
        self.first_delay = first_delay
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.delays = dict.fromkeys(commands, first_delay)
        self.due: dict[str, float] = {}
        self.stopping = threading.Event()

    def _start(self, queue: str) -> None:
        # Its own process group: a stop reaches the process and whatever it started (beat).
        self.processes[queue] = subprocess.Popen(self.commands[queue], start_new_session=True)
        self.started_at[queue] = time.monotonic()
        logger.info("worker %s started (pid %s)", queue, self.processes[queue].pid)

    def run(self) -> int:
        for queue in self.commands:
            self._start(queue)
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for queue, process in list(self.processes.items()):
                if process.poll() is None or queue in self.due:
                    continue
                ran = now - self.started_at[queue]
                if ran > self.RESET_AFTER:
                    self.delays[queue] = self.first_delay
                delay = self.delays[queue]
                logger.error(
                    "worker %s exited with %s after %.0f s; restarting in %.0f s",
                    queue,
                    process.returncode,
                    ran,
                    delay,
                )
                self.due[queue] = now + delay
                self.delays[queue] = min(delay * 2, self.MAX_DELAY)
            for queue, due in list(self.due.items()):
                if now >= due:
                    del self.due[queue]
                    self._start(queue)
        return self.stop()

    def stop(self) -> int:
        self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)  # a warm shutdown: tasks finish
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contentstudio.workers",
        description="One Celery worker process per queue (generate, review, publish), restarted "
        "when one dies.",
    )
    parser.add_argument("--queues", default=",".join(QUEUES), help="comma-separated (all three)")
    parser.add_argument("--app", default="contentstudio", help="the Celery app (contentstudio)")
    parser.add_argument("--schedule", type=Path, default=Path("var/celerybeat-schedule"))
    parser.add_argument("--no-beat", action="store_true", help="beat runs elsewhere")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--print", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
    import django

    django.setup()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pools = worker_pools([q.strip() for q in args.queues.split(",") if q.strip()])
    commands = {
        pool.queue: celery_command(
            pool,
            app=args.app,
            beat_schedule=(
                None if args.no_beat or pool.queue != BEAT_QUEUE else args.schedule.resolve()
            ),
            loglevel=args.loglevel,
        )
        for pool in pools
    }
    if args.print:
        for command in commands.values():
            print(" ".join(command))
        return 0
    args.schedule.parent.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(commands)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    logger.info(
        "workers on %s: %s",
        socket.gethostname(),
        ", ".join(f"{p.queue} ({p.pool}, {p.concurrency})" for p in pools),
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
