"""The base of every websocket consumer: authentication in connect, groups, close codes."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from contentstudio import realtime

# 4401 not logged in; 4404 no such object or not a member (never tell which).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class StudioConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses implement ``groups_for(user)``: the groups to join, or None to refuse."""

    joined: list[str]

    async def groups_for(self, user: Any) -> list[str] | None:
        raise NotImplementedError

    async def authenticated_user(self) -> Any | None:
        """The signed-in user, with the publisher bound to this loop; None once refused."""
        self.joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return None
        # The in-memory layer only reaches consumers of this loop: the publisher must use it.
        realtime.publisher.bind_consumer_loop(asyncio.get_running_loop())
        return user

    async def connect(self) -> None:
        user = await self.authenticated_user()
        if user is None:
            return
        groups = await self.groups_for(user)
        if groups is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        # Join before sending any state: every frame published after that state arrives.
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups
        await self.accept()
        await self.on_joined()

    async def refuse(self, code: int) -> None:
        """Accept, then close with ``code``: closing before the handshake completes reaches the
        browser as a bare HTTP 403 (close code 1006), which a page cannot tell from a network
        failure, so it would retry for ever. The close code tells it to stop and say why."""
        await self.accept()
        await self.close(code=code)

    async def on_joined(self) -> None:
        """Send the state so far (called once the groups are joined)."""

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
