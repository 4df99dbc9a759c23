"""Websocket consumer for a job's live stream.

Authenticates in connect (membership of the job's project, any role), joins the job's group,
then sends the text so far; after that every frame of the group. The client asks for a fresh
snapshot ({"action": "resync"}) when it sees a gap in the numbered frames.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from contentstudio import realtime
from contentstudio.consumers import StudioConsumer
from generation import selectors


class JobConsumer(StudioConsumer):
    async def groups_for(self, user: Any) -> list[str] | None:
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await database_sync_to_async(selectors.job_for_user)(user=user, job_id=job_id)
        if job is None:
            return None
        self.job_id = job.pk
        return [realtime.job_group(job.pk)]

    async def on_joined(self) -> None:
        await self.send_snapshot()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("action") == "resync":
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(selectors.job_snapshot)(job_id=self.job_id)
        await self.send_json(snapshot)

    async def job_tokens(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def job_status(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def job_draft(self, event: dict[str, Any]) -> None:
        await self.send_json(event)
