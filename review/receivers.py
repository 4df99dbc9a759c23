"""The review app listens to the generation app (which never imports review)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from generation.models import Draft
from generation.signals import draft_created
from review import services


@receiver(draft_created, dispatch_uid="review.checks_on_new_draft")
def check_new_draft(sender: type, draft: Draft, **kwargs: Any) -> None:
    """Every new draft is screened before any person is asked to approve it."""
    services.draft_checks_start(draft=draft)
