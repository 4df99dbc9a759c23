"""WordPress: the REST API with an application password; a post is created once, then updated
by the id WordPress gave it (found by its slug when the answer to the first try was lost)."""

from __future__ import annotations

from typing import Any

import requests

from publishing.models import Delivery, VersionKind
from publishing.senders.base import (
    USER_AGENT,
    Outcome,
    body_with_disclosure,
    from_response,
    html_text,
    never_reached,
    remote,
    slug,
    timeout,
)


def send(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    base = delivery.destination.url.rstrip("/") + "/wp-json/wp/v2/posts"
    auth = (delivery.destination.username, secret)
    version = delivery.version
    known = remote(delivery)
    remote_id = known.remote_id if known else None
    headers = {"user-agent": USER_AGENT, "idempotency-key": version.idempotency_key}
    if remote_id is None and delivery.attempts > 0:
        # An earlier try may have created the post and lost the answer: look for it first.
        found = session.get(
            base,
            params={"slug": slug(delivery), "status": "publish,draft"},
            auth=auth,
            headers=headers,
            timeout=timeout(),
        )
        if found.ok and isinstance(found.json(), list) and found.json():
            remote_id = str(found.json()[0]["id"])
    if version.kind == VersionKind.KILL:
        if remote_id is None:
            return never_reached()
        fields: dict[str, Any] = {"status": "draft"}
    else:
        # WordPress renders title and excerpt as HTML (unfiltered for its administrators):
        # they go as escaped text; the content is sanitised HTML.
        fields = {
            "title": html_text(version.headline),
            "content": body_with_disclosure(version),
            "excerpt": html_text(version.summary),
            "status": "publish",
            "slug": slug(delivery),
        }
    url = f"{base}/{remote_id}" if remote_id else base
    response = session.post(url, json=fields, auth=auth, headers=headers, timeout=timeout())
    outcome = from_response(response)
    if outcome.ok:
        data = response.json()
        outcome.remote_id = str(data.get("id", remote_id or ""))
        outcome.remote_url = str(data.get("link", ""))[:1000]
    return outcome
