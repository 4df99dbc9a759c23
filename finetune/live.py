"""Live progress of fine-tuning runs: the group name, event types and payloads.

Published through the studio's one real-time publisher; the run's row is the source of truth
(a client that connects late gets the whole curve from it, then the live tail, and drops points
it already has by their step number).
"""

from __future__ import annotations

from typing import Any, TypedDict

from contentstudio import realtime

RUN_PROGRESS = "finetune.progress"
RUN_STATUS = "finetune.status"


def run_group(run_id: int) -> str:
    return f"finetune.{run_id}"


class ProgressEvent(TypedDict):
    type: str
    phase: str
    step: int
    total_steps: int
    epoch: float
    seconds_left: float | None
    tokens_per_second: float | None
    point: dict[str, Any] | None


class StatusEvent(TypedDict):
    type: str
    run: dict[str, Any]


def publish_progress(run_id: int, event: ProgressEvent) -> None:
    realtime.publisher.publish(run_group(run_id), dict(event))


def publish_status(run_id: int, run: dict[str, Any]) -> None:
    event: StatusEvent = {"type": RUN_STATUS, "run": run}
    realtime.publisher.publish(run_group(run_id), dict(event))


def publish_project_event(project_id: int, payload: dict[str, Any]) -> None:
    realtime.publish_project_event(project_id, payload)
