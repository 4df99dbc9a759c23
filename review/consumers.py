"""Websocket for everything that changes in a project: drafts arriving and moving, check
results, import and indexing progress. The queue and the draft page listen to it."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from contentstudio.models import Project
from contentstudio.selectors import membership_role
from generation import stream

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


def _project_for(user: Any, slug: str) -> Project | None:
    project = Project.objects.filter(slug=slug).first()
    if project is None or membership_role(user=user, project=project) is None:
        return None
    return project


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        project = await database_sync_to_async(_project_for)(user, slug)
        if project is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = stream.project_group(project.pk)
        stream.publisher.bind_consumer_loop(asyncio.get_running_loop())
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "project": slug})

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def project_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "event", **event["payload"]})


def _project_ids(user: Any) -> list[int]:
    from review.queue import visible_projects

    return list(visible_projects(user=user).values_list("pk", flat=True))


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """The queue spans every project of the user: listen to all of their project groups."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined = [
            stream.project_group(pk) for pk in await database_sync_to_async(_project_ids)(user)
        ]
        stream.publisher.bind_consumer_loop(asyncio.get_running_loop())
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "projects": len(self.groups_joined)})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def project_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "event", **event["payload"]})
