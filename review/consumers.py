"""Websockets for what changes in projects: drafts arriving and moving, check results, import
and indexing progress. The draft page listens to its project; the queue to all of the user's."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from contentstudio import realtime
from contentstudio.consumers import StudioConsumer
from contentstudio.models import Project
from contentstudio.selectors import membership_role


def _project_group(user: Any, slug: str) -> list[str] | None:
    project = Project.objects.filter(slug=slug).first()
    if project is None or membership_role(user=user, project=project) is None:
        return None
    return [realtime.project_group(project.pk)]


def _queue_groups(user: Any) -> list[str]:
    from review.queue import visible_projects

    return [
        realtime.project_group(pk)
        for pk in visible_projects(user=user).values_list("pk", flat=True)
    ]


class ProjectConsumer(StudioConsumer):
    async def groups_for(self, user: Any) -> list[str] | None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        return await database_sync_to_async(_project_group)(user, slug)

    async def on_joined(self) -> None:
        await self.send_json(
            {"type": "hello", "project": self.scope["url_route"]["kwargs"]["slug"]}
        )

    async def project_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "event", **event["payload"]})


class QueueConsumer(ProjectConsumer):
    """The queue spans every project of the user (as of connecting; the page reconnects)."""

    async def groups_for(self, user: Any) -> list[str] | None:
        groups = await database_sync_to_async(_queue_groups)(user)
        # A user of no project has no queue to watch: refuse rather than hold an idle socket.
        return groups or None

    async def on_joined(self) -> None:
        await self.send_json({"type": "hello", "projects": len(self.joined)})
