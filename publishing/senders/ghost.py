"""Ghost: the Admin API with an Admin API key (a short-lived JWT per request). An update must
carry the post's current ``updated_at``; when someone edited the post in Ghost meanwhile, the
current one is fetched and our version applied over it (ours is the newer editorial state)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests

from publishing.models import Delivery, VersionKind
from publishing.senders.base import (
    USER_AGENT,
    Outcome,
    body_with_disclosure,
    from_response,
    never_reached,
    plain,
    remote,
    slug,
    timeout,
)


def ghost_token(admin_key: str, *, now: int | None = None) -> str:
    """Ghost's Admin API JWT: HS256 with the key's hex secret, ``kid`` the key id, audience
    ``/admin/``, valid five minutes."""
    key_id, _, hex_secret = admin_key.partition(":")
    iat = int(now if now is not None else time.time())
    return jwt.encode(
        {"iat": iat, "exp": iat + 300, "aud": "/admin/"},
        bytes.fromhex(hex_secret),
        algorithm="HS256",
        headers={"kid": key_id},
    )


def send(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    base = delivery.destination.url.rstrip("/") + "/ghost/api/admin/posts/"
    version = delivery.version

    def headers() -> dict[str, str]:
        return {
            "authorization": f"Ghost {ghost_token(secret)}",
            "accept-version": "v5.0",
            "user-agent": USER_AGENT,
            "idempotency-key": version.idempotency_key,
        }

    known = remote(delivery)
    remote_id = known.remote_id if known else None
    updated_at = known.remote_updated_at if known else ""
    if remote_id is None and delivery.attempts > 0:
        found = session.get(f"{base}slug/{slug(delivery)}/", headers=headers(), timeout=timeout())
        if found.ok:
            post = found.json()["posts"][0]
            remote_id, updated_at = str(post["id"]), str(post.get("updated_at", ""))
    if version.kind == VersionKind.KILL:
        if remote_id is None:
            return never_reached()
        post: dict[str, Any] = {"status": "draft"}
    else:
        # Ghost treats title, excerpt and tag names as text (its admin and themes escape
        # them): they go as plain text, escaped once by Ghost; the html is sanitised.
        post = {
            "title": plain(version.headline),
            "html": body_with_disclosure(version),
            "custom_excerpt": plain(version.summary)[:300],
            "tags": [{"name": plain(tag)[:191]} for tag in version.tags],
            "status": "published",
            "slug": slug(delivery),
        }
    if remote_id:
        # Ghost's collision check: an update must carry the post's current updated_at.
        post["updated_at"] = updated_at
        response = session.put(
            f"{base}{remote_id}/?source=html",
            json={"posts": [post]},
            headers=headers(),
            timeout=timeout(),
        )
        if response.status_code == 409:
            current = session.get(f"{base}{remote_id}/", headers=headers(), timeout=timeout())
            if current.ok:
                post["updated_at"] = str(current.json()["posts"][0].get("updated_at", ""))
                response = session.put(
                    f"{base}{remote_id}/?source=html",
                    json={"posts": [post]},
                    headers=headers(),
                    timeout=timeout(),
                )
    else:
        response = session.post(
            f"{base}?source=html", json={"posts": [post]}, headers=headers(), timeout=timeout()
        )
    outcome = from_response(response)
    if outcome.ok:
        saved = response.json()["posts"][0]
        outcome.remote_id = str(saved["id"])
        outcome.remote_updated_at = str(saved.get("updated_at", ""))
        outcome.remote_url = str(saved.get("url", ""))[:1000]
    return outcome
