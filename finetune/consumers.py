"""Websocket consumer for a fine-tuning run's live progress (project admins only).

On connect it sends the run as it is (the whole curve so far), then every progress point and
status change of the run's group; the client drops points it already has by step number.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from contentstudio.consumers import StudioConsumer
from finetune import live, selectors


class FineTuneRunConsumer(StudioConsumer):
    async def groups_for(self, user: Any) -> list[str] | None:
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        run = await database_sync_to_async(selectors.run_for_admin)(user=user, run_id=run_id)
        if run is None:
            return None
        self.run_id = run.pk
        return [live.run_group(run.pk)]

    async def on_joined(self) -> None:
        await self.send_snapshot()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("action") == "resync":
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        state = await database_sync_to_async(self._state)()
        await self.send_json({"type": live.RUN_STATUS, "run": state, "snapshot": True})

    def _state(self) -> dict[str, Any]:
        # Only reads: staleness is the periodic sweep's decision, never a watcher's.
        run = selectors.run_get(run_id=self.run_id)
        return selectors.run_state(run, history=True)

    async def finetune_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def finetune_status(self, event: dict[str, Any]) -> None:
        await self.send_json(event)
