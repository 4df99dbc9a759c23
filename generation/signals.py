"""What the generation app announces. Other apps subscribe; generation imports none of them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent on commit after a job saved a finished candidate as a Draft. kwargs: draft.
draft_created = Signal()
