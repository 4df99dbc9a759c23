"""What every sender shares: the outcome of one try, timeouts, reading an answer, the remote
post a destination made for a publication."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.utils.html import escape

from contentstudio.html import sanitize
from publishing.models import Delivery, PublicationVersion, RemoteObject

USER_AGENT = "ContentStudio-Webhooks/1"
# Status codes worth retrying: the receiver is down, overloaded or asks us to wait.
RETRYABLE = {408, 409, 425, 429}


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    retryable: bool = True
    remote_id: str | None = None
    remote_updated_at: str = ""
    remote_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def timeout() -> tuple[float, float]:
    return (settings.PUBLISHING_CONNECT_TIMEOUT, settings.PUBLISHING_READ_TIMEOUT)


def from_response(response: requests.Response) -> Outcome:
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, status_code=response.status_code)
    retryable = response.status_code >= 500 or response.status_code in RETRYABLE
    # The first bytes of the answer help whoever reads the log; never our request or secret.
    text = response.text[:300].strip()
    return Outcome(
        ok=False,
        status_code=response.status_code,
        error=f"HTTP {response.status_code}" + (f": {text}" if text else ""),
        retryable=retryable,
    )


def remote(delivery: Delivery) -> RemoteObject | None:
    return RemoteObject.objects.filter(
        destination_id=delivery.destination_id, publication_id=delivery.publication_id
    ).first()


def slug(delivery: Delivery) -> str:
    # Deterministic, so a retry whose first try reached the site finds that post again.
    return f"cs-{delivery.publication.guid.hex}"


def body_with_disclosure(version: PublicationVersion) -> str:
    """The HTML a CMS post carries: the text (sanitised again on the way out, whatever was
    stored), then the AI disclosure (escaped)."""
    return sanitize(version.body_html) + f"<p><em>{escape(version.ai_disclosure)}</em></p>"


def plain(text: str) -> str:
    """A one-line plain-text field (a title, an excerpt) as typed: markup in it stays text;
    control characters and runs of white space become one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def html_text(text: str) -> str:
    """A field a CMS renders as HTML (WordPress titles and excerpts): the plain text, escaped,
    so markup in a headline shows as the characters typed and never runs."""
    return escape(plain(text))


def never_reached() -> Outcome:
    """A kill of an item the site never received: nothing to take down there."""
    return Outcome(ok=True, extra={"note": "never reached this site: nothing to take down"})
