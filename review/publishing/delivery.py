"""Sending deliveries: signing (Standard Webhooks), the three kinds of destination, and the
flush that sends one destination's deliveries in order, one at a time, with backoff.

No HTTP call runs inside a transaction. A destination's deliveries go out strictly in sequence:
while the oldest waits for its retry, the newer ones wait behind it (a correction never reaches
a site before the story it corrects), and when the receiver is back they all go, in order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from review.publishing import formats
from review.publishing import secrets as secret_box
from review.publishing.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    DestinationKind,
    RemoteObject,
    VersionKind,
)

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
USER_AGENT = "ContentStudio-Webhooks/1"
# Status codes worth retrying: the receiver is down, overloaded or asks us to wait.
RETRYABLE = {408, 409, 425, 429}


# --- Signing ----------------------------------------------------------------------------------


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


# --- Sending one delivery ---------------------------------------------------------------------


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


def _timeout() -> tuple[float, float]:
    return (settings.PUBLISHING_CONNECT_TIMEOUT, settings.PUBLISHING_READ_TIMEOUT)


def _from_response(response: requests.Response) -> Outcome:
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


def _send_generic(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    body = webhook_body(delivery)
    headers = webhook_headers(secret, msg_id=delivery.version.idempotency_key, body=body)
    response = session.post(
        delivery.destination.url, data=body.encode(), headers=headers, timeout=_timeout()
    )
    return _from_response(response)


def _remote(delivery: Delivery) -> RemoteObject | None:
    return RemoteObject.objects.filter(
        destination_id=delivery.destination_id, publication_id=delivery.publication_id
    ).first()


def _slug(delivery: Delivery) -> str:
    # Deterministic, so a retry whose first try reached the site finds that post again.
    return f"cs-{delivery.publication.guid.hex}"


def _send_wordpress(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    base = delivery.destination.url.rstrip("/") + "/wp-json/wp/v2/posts"
    auth = (delivery.destination.username, secret)
    version = delivery.version
    remote = _remote(delivery)
    remote_id = remote.remote_id if remote else None
    headers = {"user-agent": USER_AGENT, "idempotency-key": version.idempotency_key}
    if remote_id is None and delivery.attempts > 0:
        # An earlier try may have created the post and lost the answer: look for it first.
        found = session.get(
            base,
            params={"slug": _slug(delivery), "status": "publish,draft"},
            auth=auth,
            headers=headers,
            timeout=_timeout(),
        )
        if found.ok and isinstance(found.json(), list) and found.json():
            remote_id = str(found.json()[0]["id"])
    if version.kind == VersionKind.KILL:
        if remote_id is None:
            return Outcome(ok=True, extra={"note": "never reached this site: nothing to take down"})
        fields: dict[str, Any] = {"status": "draft"}
    else:
        fields = {
            "title": version.headline,
            "content": version.body_html + f"<p><em>{_escape(version.ai_disclosure)}</em></p>",
            "excerpt": version.summary,
            "status": "publish",
            "slug": _slug(delivery),
        }
    url = f"{base}/{remote_id}" if remote_id else base
    response = session.post(url, json=fields, auth=auth, headers=headers, timeout=_timeout())
    outcome = _from_response(response)
    if outcome.ok:
        data = response.json()
        outcome.remote_id = str(data.get("id", remote_id or ""))
        outcome.remote_url = str(data.get("link", ""))[:1000]
    return outcome


def _send_ghost(delivery: Delivery, secret: str, session: requests.Session) -> Outcome:
    base = delivery.destination.url.rstrip("/") + "/ghost/api/admin/posts/"
    version = delivery.version

    def headers() -> dict[str, str]:
        return {
            "authorization": f"Ghost {ghost_token(secret)}",
            "accept-version": "v5.0",
            "user-agent": USER_AGENT,
            "idempotency-key": version.idempotency_key,
        }

    remote = _remote(delivery)
    remote_id = remote.remote_id if remote else None
    updated_at = remote.remote_updated_at if remote else ""
    if remote_id is None and delivery.attempts > 0:
        found = session.get(f"{base}slug/{_slug(delivery)}/", headers=headers(), timeout=_timeout())
        if found.ok:
            post = found.json()["posts"][0]
            remote_id, updated_at = str(post["id"]), str(post.get("updated_at", ""))
    if version.kind == VersionKind.KILL:
        if remote_id is None:
            return Outcome(ok=True, extra={"note": "never reached this site: nothing to take down"})
        post: dict[str, Any] = {"status": "draft"}
    else:
        post = {
            "title": version.headline,
            "html": version.body_html + f"<p><em>{_escape(version.ai_disclosure)}</em></p>",
            "custom_excerpt": version.summary[:300],
            "tags": [{"name": tag} for tag in version.tags],
            "status": "published",
            "slug": _slug(delivery),
        }
    if remote_id:
        # Ghost's collision check: an update must carry the post's current updated_at.
        post["updated_at"] = updated_at
        response = session.put(
            f"{base}{remote_id}/?source=html",
            json={"posts": [post]},
            headers=headers(),
            timeout=_timeout(),
        )
        if response.status_code == 409:
            # Someone edited the post in Ghost since our last write: take its current
            # updated_at and apply this version over it (ours is the newer editorial state).
            current = session.get(f"{base}{remote_id}/", headers=headers(), timeout=_timeout())
            if current.ok:
                post["updated_at"] = str(current.json()["posts"][0].get("updated_at", ""))
                response = session.put(
                    f"{base}{remote_id}/?source=html",
                    json={"posts": [post]},
                    headers=headers(),
                    timeout=_timeout(),
                )
    else:
        response = session.post(
            f"{base}?source=html", json={"posts": [post]}, headers=headers(), timeout=_timeout()
        )
    outcome = _from_response(response)
    if outcome.ok:
        saved = response.json()["posts"][0]
        outcome.remote_id = str(saved["id"])
        outcome.remote_updated_at = str(saved.get("updated_at", ""))
        outcome.remote_url = str(saved.get("url", ""))[:1000]
    return outcome


def _escape(text: str) -> str:
    from django.utils.html import escape

    return str(escape(text))


SENDERS = {
    DestinationKind.GENERIC: _send_generic,
    DestinationKind.WORDPRESS: _send_wordpress,
    DestinationKind.GHOST: _send_ghost,
}


def attempt(
    delivery: Delivery, *, session: requests.Session | None = None, secret: str | None = None
) -> Outcome:
    """One try, outside any transaction. Errors become an Outcome (never an exception), with a
    message that names what failed but never the secret."""
    session = session or requests.Session()
    try:
        if secret is None:
            secret = secret_box.decrypt(delivery.destination.secret_encrypted)
        return SENDERS[DestinationKind(delivery.destination.kind)](delivery, secret, session)
    except requests.Timeout:
        return Outcome(ok=False, error="Timed out waiting for the receiver.")
    except requests.ConnectionError:
        return Outcome(ok=False, error="Could not connect to the receiver.")
    except (ValueError, KeyError, TypeError) as exc:
        # A 2xx answer we could not read (no id), or an unreadable secret: retry, say why.
        return Outcome(ok=False, error=f"Unexpected answer or setting: {type(exc).__name__}: {exc}")


# --- The flush --------------------------------------------------------------------------------


def _claim(destination_id: int) -> bool:
    now = timezone.now()
    return (
        Destination.objects.filter(pk=destination_id, enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
        == 1
    )


def _release(destination_id: int) -> None:
    Destination.objects.filter(pk=destination_id).update(lease_until=None)


def _pending(destination_id: int) -> Any:
    return (
        Delivery.objects.filter(destination_id=destination_id, status=DeliveryStatus.PENDING)
        .select_related("version__publication__project")
        .order_by("sequence")
    )


def _next_batch(destination: Destination, size: int = 50) -> list[Delivery]:
    """The next deliveries in order, sharing one destination and one publication object each
    (building a model object per row per join was the flush's biggest cost)."""
    rows = list(_pending(destination.pk)[:size])
    for row in rows:
        row.destination = destination
        row.publication = row.version.publication
    return rows


def head(destination_id: int) -> Delivery | None:
    """The oldest delivery still to send to the destination."""
    row = _pending(destination_id).select_related("destination").first()
    if row is not None:
        row.publication = row.version.publication
    return row


def _superseded(delivery: Delivery) -> bool:
    if delivery.version.number >= delivery.publication.current_version:
        return False  # nothing newer exists
    return Delivery.objects.filter(
        destination_id=delivery.destination_id,
        publication_id=delivery.publication_id,
        version__number__gt=delivery.version.number,
        status=DeliveryStatus.DELIVERED,
    ).exists()


def retry_delay(attempts: int) -> int | None:
    """Seconds before the next try after ``attempts`` failed ones; None when they ran out."""
    delays = settings.PUBLISHING_RETRY_DELAYS
    return delays[attempts - 1] if attempts - 1 < len(delays) else None


def _record(delivery: Delivery, outcome: Outcome, duration_ms: int) -> str:
    """Log the attempt and move the delivery; returns its status now."""
    now = timezone.now()
    number = delivery.attempts + 1
    status = DeliveryStatus.PENDING
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            status_code=outcome.status_code,
            error=outcome.error[:1000],
            ok=outcome.ok,
            duration_ms=duration_ms,
        )
        fields: dict[str, Any] = {
            "attempts": number,
            "last_attempt_at": now,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error[:1000] or outcome.extra.get("note", ""),
        }
        if outcome.ok:
            status = DeliveryStatus.DELIVERED
            fields.update(status=status, delivered_at=now, next_attempt_at=None)
            if outcome.remote_id:
                RemoteObject.objects.update_or_create(
                    destination_id=delivery.destination_id,
                    publication_id=delivery.publication_id,
                    defaults={
                        "remote_id": outcome.remote_id,
                        "remote_updated_at": outcome.remote_updated_at,
                        "url": outcome.remote_url,
                    },
                )
        else:
            delay = retry_delay(number) if outcome.retryable else None
            if delay is None:
                status = DeliveryStatus.FAILED
                fields.update(status=status, next_attempt_at=None)
            else:
                fields["next_attempt_at"] = now + timedelta(seconds=delay)
        # Only a delivery still pending is changed: if a person acted on it meanwhile (it can
        # only have been "retry now", which keeps it pending) our outcome still applies.
        updated = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            **fields
        )
        if updated != 1:
            status = Delivery.objects.values_list("status", flat=True).get(pk=delivery.pk)
        project_id, pub_id = delivery.publication.project_id, delivery.publication_id
        transaction.on_commit(lambda: _announce_delivery(project_id, pub_id, delivery.pk))
    if not outcome.ok:
        logger.info(
            "delivery %s to destination %s failed (attempt %s): %s",
            delivery.pk,
            delivery.destination_id,
            number,
            outcome.error[:200],
        )
    return status


def _announce_delivery(project_id: int, publication_id: int, delivery_id: int) -> None:
    from contentstudio import realtime

    realtime.publish_project_event(
        project_id,
        {"kind": "delivery", "id": delivery_id, "publication": publication_id},
    )


# Successful plain deliveries are recorded in groups of this many (or after this long): at
# hundreds of deliveries a second the bookkeeping would otherwise cost more than the HTTP calls.
# A crash between sending and recording resends those few with the same webhook-id, which
# receivers dedupe (the Standard Webhooks contract), so nothing is lost or doubled.
BATCH_SIZE = 25
BATCH_SECONDS = 0.5


class _Successes:
    def __init__(self) -> None:
        self.items: list[tuple[Delivery, Outcome, int]] = []
        self.since = time.monotonic()

    def add(self, delivery: Delivery, outcome: Outcome, duration_ms: int) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((delivery, outcome, duration_ms))
        if len(self.items) >= BATCH_SIZE or time.monotonic() - self.since > BATCH_SECONDS:
            self.record()

    def record(self) -> None:
        if not self.items:
            return
        now = timezone.now()
        items, self.items = self.items, []
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(
                [
                    DeliveryAttempt(
                        delivery=d,
                        number=d.attempts + 1,
                        status_code=o.status_code,
                        ok=True,
                        duration_ms=ms,
                    )
                    for d, o, ms in items
                ]
            )
            by_code: dict[tuple[int | None, int], list[int]] = {}
            for d, o, _ in items:
                by_code.setdefault((o.status_code, d.attempts + 1), []).append(d.pk)
            for (code, attempts), ids in by_code.items():
                Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
                    status=DeliveryStatus.DELIVERED,
                    attempts=attempts,
                    last_attempt_at=now,
                    last_status_code=code,
                    last_error="",
                    delivered_at=now,
                    next_attempt_at=None,
                )
            announced = {(d.publication.project_id, d.publication_id, d.pk) for d, _, _ in items}
            transaction.on_commit(lambda: [_announce_delivery(*a) for a in sorted(announced)])


def _drain(destination_id: int, session: requests.Session) -> int:
    """Send due deliveries in sequence until one has to wait (or none is left). Reads them in
    batches (one query per 50), decrypts the secret once, records plain successes in groups."""
    successes = _Successes()
    try:
        return _drain_into(destination_id, session, successes)
    finally:
        successes.record()


def _drain_into(destination_id: int, session: requests.Session, successes: _Successes) -> int:
    sent = 0
    secret: str | None = None
    renewed = time.monotonic()
    destination = Destination.objects.get(pk=destination_id)
    while True:
        successes.record()  # the next read must see what was sent
        batch = _next_batch(destination)
        if not batch:
            return sent
        for delivery in batch:
            if delivery.next_attempt_at and delivery.next_attempt_at > timezone.now():
                return sent
            if _superseded(delivery):
                Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
                    status=DeliveryStatus.SUPERSEDED,
                    last_error="A newer version reached this destination first.",
                )
                continue
            if secret is None:
                try:
                    secret = secret_box.decrypt(delivery.destination.secret_encrypted)
                except ValueError as exc:
                    _record(delivery, Outcome(ok=False, error=str(exc)), 0)
                    return sent
            started = time.perf_counter()
            outcome = attempt(delivery, session=session, secret=secret)
            duration = int((time.perf_counter() - started) * 1000)
            if outcome.ok and not outcome.remote_id and not outcome.extra:
                successes.add(delivery, outcome, duration)
                sent += 1
            else:
                successes.record()  # keep the log in order
                status = _record(delivery, outcome, duration)
                if status == DeliveryStatus.PENDING:
                    return sent  # it waits for its retry, and everything behind it waits too
                sent += status == DeliveryStatus.DELIVERED
            if time.monotonic() - renewed > LEASE.total_seconds() / 4:
                Destination.objects.filter(pk=destination_id).update(
                    lease_until=timezone.now() + LEASE
                )
                renewed = time.monotonic()


def destination_flush(destination_id: int, *, session: requests.Session | None = None) -> int:
    """Send what is due to one destination, in order. Returns how many were delivered.

    Claimed by a lease (conditional UPDATE), so only one flush per destination runs at a time;
    a flush that finds the lease taken leaves the work to the holder, which looks again after
    releasing it. Side effects: attempts, delivery rows, remote ids; a retry task is scheduled
    for the head's next try.
    """
    from review.publishing import tasks

    session = session or requests.Session()
    sent = 0
    while _claim(destination_id):
        try:
            sent += _drain(destination_id, session)
        finally:
            _release(destination_id)
        waiting = head(destination_id)
        if waiting is None:
            break
        if waiting.next_attempt_at and waiting.next_attempt_at > timezone.now():
            countdown = (waiting.next_attempt_at - timezone.now()).total_seconds()
            tasks.destination_flush.apply_async(args=[destination_id], countdown=countdown + 0.05)
            break
        # Something became due while the lease was held: go round again.
    return sent


def due_destinations() -> list[int]:
    """Destinations with a delivery due now and no flush at work (for the periodic task)."""
    now = timezone.now()
    # Only a destination's head counts: deliveries behind a head that waits are not due.
    earlier = Delivery.objects.filter(
        destination_id=OuterRef("destination_id"),
        status=DeliveryStatus.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    return list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(~Exists(earlier))
        .filter(destination__enabled=True)
        .filter(Q(destination__lease_until__isnull=True) | Q(destination__lease_until__lt=now))
        .order_by()
        .values_list("destination_id", flat=True)
        .distinct()
    )
