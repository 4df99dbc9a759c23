"""The generic kind: our JSON to any HTTPS endpoint, signed as the Standard Webhooks
specification says (``webhook-id`` is the version's idempotency key, so receivers dedupe)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import requests

from publishing import formats
from publishing.models import Delivery
from publishing.senders.base import USER_AGENT, Outcome, from_response, timeout


def sign(secret: str, *, msg_id: str, timestamp: int, body: str) -> str:
    """The Standard Webhooks signature: base64 HMAC-SHA256 of ``id.timestamp.body`` with the
    secret (``whsec_`` + base64 key), versioned ``v1,``."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, *, msg_id: str, body: str, now: float | None = None) -> dict:
    timestamp = int(now if now is not None else time.time())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id=msg_id, timestamp=timestamp, body=body),
        # For receivers that dedupe on the common header instead of webhook-id.
        "idempotency-key": msg_id,
    }


def webhook_body(delivery: Delivery) -> str:
    """The payload as the spec shapes it: type, timestamp, data (our JSON of the version)."""
    payload = {
        "type": delivery.event_type,
        "timestamp": delivery.version.created_at.isoformat(),
        "data": formats.publication_json(delivery.version),
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def send(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    body = webhook_body(delivery)
    headers = webhook_headers(secret, msg_id=delivery.version.idempotency_key, body=body)
    response = session.post(
        delivery.destination.url, data=body.encode(), headers=headers, timeout=timeout()
    )
    return from_response(response)
