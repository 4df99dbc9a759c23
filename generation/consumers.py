"""Websocket consumer for a job's live stream.

Authenticates in connect (membership of the job's project, any role), joins the job's group,
then sends the text so far; after that every frame of the group. The client asks for a fresh
snapshot ({"action": "resync"}) when it sees a gap in the numbered frames.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from generation import selectors, stream

# Close codes: 4401 not logged in, 4404 no such job or not a member (no leak which).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class JobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        except (KeyError, ValueError):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        job = await database_sync_to_async(selectors.job_for_user)(user=user, job_id=job_id)
        if job is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.job_id = job_id
        self.group = stream.job_group(job_id)
        stream.publisher.bind_consumer_loop(asyncio.get_running_loop())
        # Join first, then read the snapshot: any frame after the snapshot reaches us.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

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
