"""What publishing hears from review: a draft published or unpublished by review's own page,
API or bulk action (publishing's services move drafts themselves and write the version with
the move; for those the catch-up finds it written and does nothing).

Runs on commit, after the draft's move is durable: a failure here cannot undo it, so it is
logged with the draft's id (an error in the log, and the draft page shows no publication)
rather than raised into the request that moved the draft.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from publishing import services
from review import signals

logger = logging.getLogger(__name__)


@receiver(signals.draft_published, dispatch_uid="publishing.catch_up_published")
def on_draft_published(sender: Any, *, draft_id: int, actor: Any, **kwargs: Any) -> None:
    try:
        services.publication_catch_up_published(draft_id=draft_id, user=actor)
    except Exception:
        logger.exception("draft %s is published but its publication could not be written", draft_id)


@receiver(signals.draft_unpublished, dispatch_uid="publishing.catch_up_unpublished")
def on_draft_unpublished(
    sender: Any, *, draft_id: int, actor: Any, reason: str = "", **kwargs: Any
) -> None:
    try:
        services.publication_catch_up_unpublished(draft_id=draft_id, user=actor, reason=reason)
    except Exception:
        logger.exception(
            "draft %s is unpublished but its kill version could not be written", draft_id
        )
