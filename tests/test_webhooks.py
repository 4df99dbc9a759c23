"""Webhook deliveries against real HTTP receivers on 127.0.0.1 started (and stopped) by each
test: Standard Webhooks signatures checked by the reference library, retries after 500s and
timeouts, no duplicates, order, corrections and kills, WordPress- and Ghost-shaped receivers."""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks import Webhook

from publishing import flush, services
from publishing.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    DestinationKind,
    RemoteObject,
)
from tests.publishing_helpers import Receiver, approved_draft, start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_receivers_allowed")]


def make_due() -> None:
    """Let the backoff time pass (the tests do not wait hours)."""
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(next_attempt_at=timezone.now())


def generic(cast: dict, url: str) -> tuple[Destination, str]:
    destination, secret = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=url
    )
    assert secret is not None and secret.startswith("whsec_")
    return destination, secret


def test_signed_deliveries_retry_after_500s_and_timeouts_in_order_without_duplicates(
    cast: dict, receivers: list[Receiver], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publishing import tasks

    settings.PUBLISHING_READ_TIMEOUT = 0.5
    scheduled: list[float] = []
    monkeypatch.setattr(
        tasks.destination_flush,
        "apply_async",
        lambda args, countdown: scheduled.append(countdown),
    )
    # A receiver that fails, then hangs past the timeout, then accepts; it dedupes on
    # webhook-id, as the specification asks receivers to.
    script = ["500", "hang", "ok"]
    processed: dict[str, dict] = {}
    verified: list[str] = []
    release = threading.Event()

    def respond(handler: Any, body: bytes) -> tuple[int, Any]:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        payload = Webhook(secret).verify(body, headers)  # raises on a bad signature
        verified.append(headers["webhook-id"])
        step = script.pop(0) if script else "ok"
        if step == "500":
            return 500, {"error": "database down"}
        if step == "hang":
            release.wait(3)
            return 200, {}
        processed.setdefault(headers["webhook-id"], payload)
        return 200, {"ok": True}

    receiver = start(receivers, respond)
    destination, secret = generic(cast, receiver.url + "/hooks")
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])

    # first try: 500, the delivery waits with its next try set
    assert flush.destination_flush(destination.pk) == 0
    first = Delivery.objects.get(version__number=1)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert first.next_attempt_at > timezone.now() + timedelta(seconds=5)
    # and the retry task is queued for then (exponential backoff: 10 s, then 30 s, ...)
    assert 9 < scheduled[-1] <= 10.1
    # a correction meanwhile waits behind it (in order), even once due
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The tournament had forty players, not thirty.</p>",
        note="Typo",
    )
    make_due()
    # second try: the receiver hangs past the read timeout
    assert flush.destination_flush(destination.pk) == 0
    release.set()
    first.refresh_from_db()
    assert first.attempts == 2 and "Timed out" in first.last_error
    assert 29 < scheduled[-1] <= 30.1
    assert Delivery.objects.get(version__number=2).attempts == 0
    # third try: both go, the publication before its correction
    make_due()
    assert flush.destination_flush(destination.pk) == 2
    assert list(Delivery.objects.values_list("status", flat=True)) == ["delivered"] * 2
    key1 = publication.versions.get(number=1).idempotency_key
    key2 = publication.versions.get(number=2).idempotency_key
    # every attempt carried the same id per version, verified by the reference library
    assert verified == [key1, key1, key1, key2]
    assert list(processed) == [key1, key2]
    assert processed[key1]["type"] == "publication.published"
    assert processed[key2]["type"] == "publication.corrected"
    assert processed[key2]["data"]["body_text"] == "The tournament had forty players, not thirty."
    assert processed[key2]["data"]["correction_note"] == "Typo"
    # a kill propagates too
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    assert flush.destination_flush(destination.pk) == 1
    assert processed[publication.versions.get(number=3).idempotency_key]["type"] == (
        "publication.unpublished"
    )
    # a tampered signature is refused by the same library (the check can fail)
    last = receiver.requests[-1]
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(last["body"] + b" ", last["headers"])


def test_a_receiver_that_is_down_gets_everything_in_order_when_it_is_back(
    cast: dict, receivers: list[Receiver]
) -> None:
    got: list[str] = []
    receiver = start(
        receivers, lambda h, body: (got.append(json.loads(body)["type"]), (204, {}))[1]
    )
    destination, _ = generic(cast, receiver.url)
    receiver.stop()
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    flush.destination_flush(destination.pk)
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The second round was played on Sunday morning.</p>",
        note="Update",
    )
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Pulled")
    head = Delivery.objects.order_by("sequence").first()
    assert head.last_error == "Could not connect to the receiver."
    assert Delivery.objects.filter(status="pending").count() == 3
    # the periodic task finds nothing due while the head waits for its retry
    assert flush.due_destinations() == []
    receiver.start()  # back, on the same port
    make_due()
    assert flush.due_destinations() == [destination.pk]
    assert flush.destination_flush(destination.pk) == 3
    assert got == ["publication.published", "publication.corrected", "publication.unpublished"]


def test_a_disabled_destination_keeps_its_deliveries_until_it_is_enabled(
    cast: dict, receivers: list[Receiver]
) -> None:
    got: list[str] = []
    receiver = start(
        receivers, lambda h, body: (got.append(json.loads(body)["type"]), (200, {}))[1]
    )
    destination, _ = generic(cast, receiver.url)
    services.destination_set_enabled(destination=destination, user=cast["alice"], enabled=False)
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Pulled")
    assert flush.destination_flush(destination.pk) == 0 and got == []
    assert flush.due_destinations() == []
    services.destination_set_enabled(destination=destination, user=cast["alice"], enabled=True)
    assert flush.destination_flush(destination.pk) == 2
    assert got == ["publication.published", "publication.unpublished"]


def test_retries_run_out_into_failed_and_retry_now_sends_again(
    cast: dict, receivers: list[Receiver], settings: Any
) -> None:
    settings.PUBLISHING_RETRY_DELAYS = [1]
    answers = [503, 503, 200]
    receiver = start(receivers, lambda h, b: (answers.pop(0), {}))
    destination, _ = generic(cast, receiver.url)
    services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    flush.destination_flush(destination.pk)
    make_due()
    flush.destination_flush(destination.pk)
    failed = Delivery.objects.get()
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 2, None)
    with pytest.raises(Exception, match="role"):
        services.delivery_retry_now(delivery=failed, user=cast["charlie"])
    services.delivery_retry_now(delivery=failed, user=cast["bob"])
    assert flush.destination_flush(destination.pk) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("delivered", 3)
    assert list(failed.attempt_log.values_list("status_code", flat=True)) == [503, 503, 200]


class WordPress:
    """A WordPress-shaped REST API: basic auth with an application password, posts created by
    POST /wp-json/wp/v2/posts and updated by POST /wp-json/wp/v2/posts/<id>, found by slug."""

    def __init__(self, *, lose_first_answer: bool = False) -> None:
        self.posts: dict[int, dict] = {}
        self.lose_first_answer = lose_first_answer
        self.errors: list[str] = []

    def __call__(self, handler: Any, body: bytes) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(b"editor-bot:abcd efgh ijkl mnop").decode()
        if handler.headers.get("Authorization") != expected:
            return 401, {"code": "rest_not_logged_in"}
        path = handler.path.split("?")[0]
        if handler.command == "GET":
            slug = handler.path.split("slug=")[1].split("&")[0]
            return 200, [
                {"id": pid, **post} for pid, post in self.posts.items() if post["slug"] == slug
            ]
        fields = json.loads(body)
        if path == "/wp-json/wp/v2/posts":
            for name in ("title", "content", "status", "slug"):
                if not fields.get(name):
                    self.errors.append(f"missing {name}")
                    return 400, {"code": "rest_missing_callback_param", "param": name}
            post_id = 100 + len(self.posts) + 1
            self.posts[post_id] = fields
            if self.lose_first_answer:
                self.lose_first_answer = False
                return 502, {"error": "gateway lost the answer"}
            return 201, {"id": post_id, "link": f"https://blog.example/?p={post_id}", **fields}
        post_id = int(path.rsplit("/", 1)[1])
        if post_id not in self.posts:
            return 404, {"code": "rest_post_invalid_id"}
        self.posts[post_id].update(fields)
        return 200, {"id": post_id, **self.posts[post_id]}


def test_wordpress_posts_are_created_then_updated_by_their_remote_id_and_never_twice(
    cast: dict, receivers: list[Receiver]
) -> None:
    site = WordPress(lose_first_answer=True)
    receiver = start(receivers, site)
    destination, shown = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Blog",
        kind=DestinationKind.WORDPRESS,
        url=receiver.url,
        username="editor-bot",
        secret="abcd efgh ijkl mnop",
    )
    assert shown is None  # a typed secret is never echoed back
    publication = services.publication_publish(
        draft=approved_draft(cast), user=cast["bob"], tags=["chess"]
    )
    flush.destination_flush(destination.pk)  # the post is made, the answer lost (502)
    make_due()
    flush.destination_flush(destination.pk)  # the retry finds it by slug and updates it
    assert len(site.posts) == 1 and not site.errors
    remote = RemoteObject.objects.get(destination=destination, publication=publication)
    post_id = int(remote.remote_id)
    assert site.posts[post_id]["status"] == "publish"
    assert site.posts[post_id]["title"] == "Chess club turns 100"
    assert "AI language model" in site.posts[post_id]["content"]
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The chess club first met in 1926, not 1925.</p>",
        note="Fix",
    )
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    assert flush.destination_flush(destination.pk) == 2
    assert len(site.posts) == 1
    assert site.posts[post_id]["content"].startswith(
        "<p>The chess club first met in 1926, not 1925.</p>"
    )
    assert site.posts[post_id]["status"] == "draft"


class Ghost:
    """A Ghost-shaped Admin API: a JWT signed with the Admin API key, posts with updated_at
    collision checks (an update carrying a stale updated_at is refused with 409)."""

    def __init__(self, key_id: str, secret_hex: str) -> None:
        self.key_id, self.secret = key_id, bytes.fromhex(secret_hex)
        self.posts: dict[str, dict] = {}
        self.clock = 0

    def __call__(self, handler: Any, body: bytes) -> tuple[int, Any]:
        scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
        try:
            assert scheme == "Ghost"
            assert jwt.get_unverified_header(token)["kid"] == self.key_id
            jwt.decode(token, self.secret, algorithms=["HS256"], audience="/admin/")
        except Exception:
            return 401, {"errors": [{"type": "UnauthorizedError"}]}
        path = handler.path.split("?")[0]
        if handler.command == "GET" and "/slug/" in path:
            return 404, {"errors": [{"type": "NotFoundError"}]}
        self.clock += 1
        stamp = f"2026-01-01T00:00:{self.clock:02d}.000Z"
        if handler.command == "POST":
            post = json.loads(body)["posts"][0]
            post_id = f"ghost{len(self.posts) + 1}"
            self.posts[post_id] = {**post, "id": post_id, "updated_at": stamp}
            return 201, {"posts": [self.posts[post_id]]}
        post_id = path.rstrip("/").rsplit("/", 1)[1]
        if handler.command == "GET":
            return 200, {"posts": [self.posts[post_id]]}
        post = json.loads(body)["posts"][0]
        if post.get("updated_at") != self.posts[post_id]["updated_at"]:
            return 409, {"errors": [{"type": "UpdateCollisionError"}]}
        self.posts[post_id].update({**post, "updated_at": stamp})
        return 200, {"posts": [self.posts[post_id]]}


def test_ghost_posts_use_the_admin_jwt_and_carry_updated_at_on_updates(
    cast: dict, receivers: list[Receiver]
) -> None:
    site = Ghost("6489a1b2c3d4", "a1" * 32)
    receiver = start(receivers, site)
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Ghost",
        kind=DestinationKind.GHOST,
        url=receiver.url,
        secret=f"6489a1b2c3d4:{'a1' * 32}",
    )
    publication = services.publication_publish(
        draft=approved_draft(cast), user=cast["bob"], tags=["chess", "club"]
    )
    services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The chess club meets every Tuesday in the old town hall.</p>",
        note="Rewrite",
    )
    assert flush.destination_flush(destination.pk) == 2
    (post,) = site.posts.values()
    assert post["status"] == "published" and post["html"].startswith(
        "<p>The chess club meets every Tuesday in the old town hall.</p>"
    )
    assert [t["name"] for t in post["tags"]] == ["chess", "club"]
    remote = RemoteObject.objects.get(destination=destination)
    assert (remote.remote_id, remote.remote_updated_at) == (post["id"], post["updated_at"])
    # someone edits the post in Ghost: our stale updated_at is refused (409), the current one
    # is fetched and the next version still lands
    post["updated_at"] = "2026-02-02T00:00:00.000Z"
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Pulled")
    assert flush.destination_flush(destination.pk) == 1
    assert post["status"] == "draft"
    assert Delivery.objects.filter(status="delivered").count() == 3
    assert [r["method"] for r in receiver.requests][-3:] == ["PUT", "GET", "PUT"]


def test_secrets_are_encrypted_never_shown_again_nor_logged(
    cast: dict, receivers: list[Receiver], caplog: pytest.LogCaptureFixture, client: Any
) -> None:
    receiver = start(receivers, lambda h, b: (401, {"error": "bad credentials"}))
    password = "wxyz 1234 abcd 9876"
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Blog",
        kind="wordpress",
        url=receiver.url,
        username="bot",
        secret=password,
    )
    assert password not in destination.secret_encrypted
    services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    with caplog.at_level(logging.DEBUG):
        flush.destination_flush(destination.pk)
    failed = Delivery.objects.get()
    assert failed.status == "failed" and failed.last_status_code == 401  # not worth retrying
    assert password not in caplog.text
    assert password not in failed.last_error
    client.force_login(cast["alice"])
    page = client.get("/p/newsroom/destinations/").content.decode()
    assert "Blog" in page and password not in page and destination.secret_hint in page
    # bad input names the field and keeps what was typed (but not the secret)
    response = client.post(
        "/p/newsroom/destinations/",
        {"name": "Ghost", "kind": "ghost", "url": "ftp://x", "secret": "not-a-key"},
    )
    text = response.content.decode()
    assert response.status_code == 200 and "url" in text and "ftp://x" in text
    assert "not-a-key" not in text
    with pytest.raises(ValidationError) as bad:
        services.destination_create(
            project=cast["newsroom"],
            user=cast["alice"],
            name="G",
            kind="ghost",
            url="https://g.example",
            secret="nokey",
        )
    assert "secret" in bad.value.message_dict
    # viewers see the list, but cannot add
    client.force_login(cast["dave"])
    assert client.post("/p/newsroom/destinations/", {"name": "X"}).status_code == 403
