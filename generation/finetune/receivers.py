"""The fine-tuning app listens to review's audit trail: every approval keeps an edit pair.

Connected to ``review.DraftEvent`` by its label (``sender="review.DraftEvent"``), so this app
needs no import of review; the pair is written in the same transaction as the approval.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from generation.finetune import services


@receiver(post_save, sender="review.DraftEvent", dispatch_uid="finetune.pair_on_approval")
def keep_pair_on_approval(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    if created and instance.action == "approve":
        services.edit_pair_record(
            draft_id=instance.draft_id, approved_by=instance.actor, approved_at=instance.created_at
        )
