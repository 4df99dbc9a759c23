"""What the review app announces. Higher apps (publishing, finetune) subscribe; review imports
none of them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent on commit after an editor approved a draft. kwargs: draft_id, actor (the user),
# approved_at (the audit row's time).
draft_approved = Signal()

# Sent on commit after the approver took an approval back moments later (the queue's Undo).
# kwargs: draft_id, actor, approved_version (the draft's version while it was approved).
draft_approval_undone = Signal()

# Sent on commit after a draft moved approved -> published / published -> unpublished, whoever
# moved it (a higher app's service, review's own draft page or API). kwargs: draft_id, actor;
# draft_unpublished also reason.
draft_published = Signal()
draft_unpublished = Signal()
