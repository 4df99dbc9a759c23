"""Writes of destinations (project admins only): create, enable, disable, delete. Each writes a
DestinationEvent in the same durable transaction; the event names the destination and what it
pointed at, never its secret (encrypted in the row, shown once when it is generated)."""

from __future__ import annotations

import base64
import secrets as pysecrets
from typing import Any
from urllib.parse import urlparse

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from contentstudio.models import Project, Role
from contentstudio.selectors import require_role
from publishing import secrets as secret_box
from publishing.addresses import UnsafeAddress, check_url
from publishing.models import Destination, DestinationAction, DestinationEvent, DestinationKind


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()


def _validate_secret(kind: str, secret: str) -> None:
    if kind == DestinationKind.GHOST:
        key_id, _, hex_secret = secret.partition(":")
        try:
            bytes.fromhex(hex_secret)
        except ValueError:
            hex_secret = ""
        if not key_id or not hex_secret:
            raise ValidationError({"secret": "A Ghost Admin API key looks like <id>:<hex secret>."})
    elif kind == DestinationKind.GENERIC and secret:
        raw = secret.removeprefix("whsec_")
        try:
            decoded = base64.b64decode(raw + "==", validate=False)
        except ValueError:
            decoded = b""
        if len(decoded) < 16:
            raise ValidationError(
                {"secret": "A signing secret is whsec_ and at least 16 bytes in base64."}
            )
    elif kind == DestinationKind.WORDPRESS and not secret:
        raise ValidationError({"secret": "Enter the WordPress application password."})


def _described(destination: Destination) -> dict[str, Any]:
    """What an audit row says about a destination: where it points, never how it signs in."""
    return {"kind": destination.kind, "url": destination.url, "username": destination.username}


def _log(destination: Destination, *, user: AbstractBaseUser, action: str, data: dict) -> None:
    DestinationEvent.objects.create(
        project_id=destination.project_id,
        destination=destination,
        name=destination.name,
        actor=user,
        action=action,
        data=data,
    )


def destination_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    kind: str,
    url: str,
    username: str = "",
    secret: str = "",
) -> tuple[Destination, str | None]:
    """A new destination (project admins). For a generic webhook without a secret one is made;
    it is returned here, to be shown once, and never again."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    name, url, username, secret = (
        (name or "").strip(),
        (url or "").strip(),
        username.strip(),
        (secret or "").strip(),
    )
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the destination a name."
    if kind not in DestinationKind.values:
        errors["kind"] = f"Unknown kind {kind!r}."
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        errors["url"] = "Enter an http:// or https:// address."
    else:
        try:
            check_url(url)
        except UnsafeAddress as exc:
            errors["url"] = exc.reason
    if kind == DestinationKind.WORDPRESS and not username:
        errors["username"] = "WordPress needs the user name the application password belongs to."
    if Destination.objects.filter(project=project, name=name).exists():
        errors["name"] = f"This project already has a destination named {name!r}."
    if errors:
        raise ValidationError(errors)
    _validate_secret(kind, secret)
    generated = None
    if kind == DestinationKind.GENERIC and not secret:
        secret = generated = new_signing_secret()
    with transaction.atomic(durable=True):
        destination = Destination.objects.create(
            project=project,
            name=name,
            kind=kind,
            url=url,
            username=username,
            secret_encrypted=secret_box.encrypt(secret),
            secret_hint=secret_box.hint(secret),
            created_by=user,
        )
        _log(destination, user=user, action=DestinationAction.CREATE, data=_described(destination))
    return destination, generated


def destination_set_enabled(
    *, destination: Destination, user: AbstractBaseUser, enabled: bool
) -> Destination:
    """Turn deliveries to a destination on or off. Off, its deliveries wait in order; on, they
    go out at once. Asking for the state it is in already changes and logs nothing."""
    from publishing import tasks

    require_role(user=user, project=destination.project, minimum=Role.ADMIN)
    with transaction.atomic(durable=True):
        changed = Destination.objects.filter(pk=destination.pk, enabled=not enabled).update(
            enabled=enabled
        )
        if changed:
            action = DestinationAction.ENABLE if enabled else DestinationAction.DISABLE
            _log(destination, user=user, action=action, data={})
            if enabled:
                # What waited while it was off goes out now, in order.
                transaction.on_commit(lambda: tasks.destination_flush.delay(destination.pk))
    destination.refresh_from_db()
    return destination


def destination_delete(*, destination: Destination, user: AbstractBaseUser) -> None:
    """Delete a destination with its deliveries and their log; the audit row stays (it keeps
    the name and address)."""
    require_role(user=user, project=destination.project, minimum=Role.ADMIN)
    with transaction.atomic(durable=True):
        _log(destination, user=user, action=DestinationAction.DELETE, data=_described(destination))
        destination.delete()
