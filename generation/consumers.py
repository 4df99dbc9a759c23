"""Websocket consumer for a job's live stream.

Authenticates in connect (membership of the job's project, any role), joins the job's group,
then sends the text so far; after that every frame of the group. The client asks for a fresh
snapshot ({"action": "resync"}) when it sees a gap in the numbered frames.

Connecting is on the path to a job's first token: a page opens its websocket right after the
submit, while the worker starts the job. So the check, the join and the snapshot take one trip
to the database thread, not two (each trip is a thread hand-off and, with SQLite's default
connection lifetime, a new connection; with a local model in the same process it also waits
for the interpreter lock a forward pass may hold).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from contentstudio import realtime
from contentstudio.consumers import CLOSE_NOT_FOUND, StudioConsumer
from generation import selectors


class JobConsumer(StudioConsumer):
    async def groups_for(self, user: Any) -> list[str] | None:
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await database_sync_to_async(selectors.job_for_user)(user=user, job_id=job_id)
        if job is None:
            return None
        self.job_id = job.pk
        return [realtime.job_group(job.pk)]

    async def connect(self) -> None:
        user = await self.authenticated_user()
        if user is None:
            return
        snapshot = await database_sync_to_async(self._join_and_snapshot)(user)
        if snapshot is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        await self.accept()
        # Frames published since the join wait in this consumer's channel until this handler
        # returns: they arrive after the snapshot, in order.
        await self.send_json(snapshot)

    def _join_and_snapshot(self, user: Any) -> dict[str, Any] | None:
        """In the database thread: the membership check, then the join (on the consumer's
        loop), then the state so far. Joining before reading the state means no frame published
        after that state is missed. None when the user may not watch this job."""
        job = selectors.job_for_user(user=user, job_id=self.scope["url_route"]["kwargs"]["job_id"])
        if job is None:
            return None
        self.job_id = job.pk
        group = realtime.job_group(job.pk)
        async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
        self.joined = [group]
        return selectors.job_snapshot(job_id=job.pk)

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
