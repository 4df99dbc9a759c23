"""What the fine-tuning app hears from review: every approval keeps an edit pair; an approval
its approver undoes withdraws it.

``review.signals.draft_approved`` is sent after the approval committed, so keeping the pair can
never undo it; a failure is logged and recorded for the fine-tuning pages (services).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.dispatch import receiver

from finetune import services
from review.signals import draft_approval_undone, draft_approved

logger = logging.getLogger(__name__)


@receiver(draft_approved, dispatch_uid="finetune.pair_on_approval")
def keep_pair_on_approval(
    sender: Any, *, draft_id: int, actor: Any, approved_at: datetime, **kwargs: Any
) -> None:
    services.edit_pair_keep(draft_id=draft_id, approved_by=actor, approved_at=approved_at)


@receiver(draft_approval_undone, dispatch_uid="finetune.pair_withdrawn_on_undo")
def withdraw_pair_on_undo(
    sender: Any, *, draft_id: int, approved_version: int, **kwargs: Any
) -> None:
    # After the undo committed: a failure here must not turn the undo into an error page.
    try:
        services.edit_pair_withdraw(draft_id=draft_id, draft_version=approved_version)
    except Exception:
        logger.exception("could not withdraw the edit pair of draft %s", draft_id)
