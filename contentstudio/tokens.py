"""Per-project API tokens: created and revoked by project admins, shown once, stored hashed.

A request sends ``Authorization: Bearer cs_<key>``. The key is 32 random bytes (url-safe
base64); only its SHA-256 is stored, so a database leak gives no usable key, and a plain hash is
enough (the key has 256 bits of entropy: nothing to brute-force, unlike a password). The
authenticated user is the token's creator with the token attached; ``membership_role`` then
limits it to the token's project and scope.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from contentstudio.errors import InvalidTransition
from contentstudio.models import ApiToken, Membership, Project, Role, TokenScope
from contentstudio.selectors import TOKEN_ATTRIBUTE, require_role

KEY_PREFIX = "cs_"
# last_used_at is written at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def token_create(
    *, project: Project, user: AbstractBaseUser, name: str, scope: str
) -> tuple[ApiToken, str]:
    """A new token and its key. The key is returned here and never again."""
    require_role(user=user, project=project, minimum=Role.ADMIN)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name (what uses it)."})
    if len(name) > 100:
        raise ValidationError({"name": "At most 100 characters."})
    if scope not in TokenScope.values:
        raise ValidationError({"scope": f"Unknown scope {scope!r}: use read or read_write."})
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project,
        name=name,
        prefix=key[:10],
        key_hash=_hash(key),
        scope=scope,
        created_by=user,
    )
    return token, key


def token_revoke(*, token: ApiToken, user: AbstractBaseUser) -> ApiToken:
    require_role(user=user, project=token.project, minimum=Role.ADMIN)
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    )
    if updated != 1:
        raise InvalidTransition("This token was already revoked.")
    token.refresh_from_db()
    return token


def token_authenticate(key: str) -> ApiToken | None:
    if not key.startswith(KEY_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("created_by", "project")
        .filter(key_hash=_hash(key), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer cs_...``. Requests without it fall through to the session."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        key = key.strip()
        if not key:
            raise exceptions.AuthenticationFailed("The Authorization header has no token.")
        token = token_authenticate(key)
        if token is None or not token.created_by.is_active:
            # Never echo the key: it may be a real one pasted into the wrong place.
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        creator = token.created_by
        if not creator.is_superuser and not (
            Membership.objects.filter(user=creator, project=token.project).exists()
        ):
            raise exceptions.AuthenticationFailed(
                "This token's creator no longer belongs to its project: ask an admin for a new one."
            )
        user = token.created_by
        setattr(user, TOKEN_ATTRIBUTE, token)
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
