"""Sending one delivery to one destination: one module per kind of destination, each with a
``send(delivery, secret, session) -> Outcome``. Senders make HTTP calls and read the remote
ids; they never change a delivery (the flush records the outcome) and never run inside a
transaction."""

from __future__ import annotations

import requests

from publishing import secrets as secret_box
from publishing.addresses import GuardedSession, UnsafeAddress, check_url
from publishing.models import Delivery, DestinationKind
from publishing.redaction import redact, secret_forms
from publishing.senders import generic, ghost, wordpress
from publishing.senders.base import Outcome

SENDERS = {
    DestinationKind.GENERIC: generic.send,
    DestinationKind.WORDPRESS: wordpress.send,
    DestinationKind.GHOST: ghost.send,
}


def attempt(
    delivery: Delivery, *, session: requests.Session | None = None, secret: str | None = None
) -> Outcome:
    """One try, outside any transaction. Errors become an Outcome (never an exception), with a
    message that names what failed but never a secret: the answer is redacted of the
    destination's credentials and anything shaped like one. An address on the studio's own
    network is refused before anything is sent (and on every redirect)."""
    session = session or GuardedSession()
    try:
        if secret is None:
            secret = secret_box.decrypt(delivery.destination.secret_encrypted)
        check_url(delivery.destination.url)
        outcome = SENDERS[DestinationKind(delivery.destination.kind)](delivery, secret, session)
    except UnsafeAddress as exc:
        return Outcome(ok=False, error=f"Refused: {exc.reason}", retryable=False)
    except requests.Timeout:
        return Outcome(ok=False, error="Timed out waiting for the receiver.")
    except requests.ConnectionError:
        return Outcome(ok=False, error="Could not connect to the receiver.")
    except (ValueError, KeyError, TypeError) as exc:
        # A 2xx answer we could not read (no id), or an unreadable secret: retry, say why.
        outcome = Outcome(
            ok=False, error=f"Unexpected answer or setting: {type(exc).__name__}: {exc}"
        )
    if outcome.error:
        forms = secret_forms(secret=secret or "", username=delivery.destination.username)
        outcome.error = redact(outcome.error, secrets=forms)
    return outcome


__all__ = ["SENDERS", "Outcome", "attempt"]
