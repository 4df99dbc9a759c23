"""Safety of deliveries: credentials a receiver echoes are redacted everywhere and its answer
shown to admins only; destinations on the studio's own network refused unless allowed by name;
WordPress and Ghost fields escaped or sanitised per receiving system; a success sends the
waiting backlog at once. Real HTTP receivers on 127.0.0.1 (tests/publishing_helpers.py)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import requests
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from publishing import flush, services
from publishing.addresses import GuardedSession, UnsafeAddress, check_url
from publishing.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryEvent,
    DeliveryStatus,
    DestinationKind,
    PublicationEvent,
)
from tests.publishing_helpers import Receiver, approved_draft, start

pytestmark = pytest.mark.django_db

APP_PASSWORD = "wxyz 1234 abcd 9876"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_credentials_a_receiver_echoes_are_in_no_stored_field_api_answer_or_log_line(
    cast: dict,
    receivers: list[Receiver],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    # given a WordPress-shaped receiver that refuses and echoes the request's credentials
    # (and other credential-shaped text it happens to hold)

    def echo(handler: Any, body: bytes) -> tuple[int, Any]:
        return 401, {
            "code": "rest_not_logged_in",
            "headers": {"Authorization": handler.headers.get("Authorization")},
            "debug": f"Authorization: {handler.headers.get('Authorization')} token={JWT} {WHSEC}",
            "password": APP_PASSWORD,
        }

    receiver = start(receivers, echo)
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Blog",
        kind=DestinationKind.WORDPRESS,
        url=receiver.url,
        username="editor-bot",
        secret=APP_PASSWORD,
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    # when the flush sends it (and it fails for good: 401)
    with caplog.at_level(logging.DEBUG):
        flush.destination_flush(destination.pk)
    sent = receiver.requests[0]["headers"]["authorization"]
    basic = base64.b64encode(f"editor-bot:{APP_PASSWORD}".encode()).decode()
    assert sent == f"Basic {basic}"  # the receiver did get (and echo) the credentials
    secrets = [APP_PASSWORD, APP_PASSWORD.replace(" ", ""), basic, JWT, WHSEC]
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_status_code == 401
    stored = [
        delivery.last_error,
        *DeliveryAttempt.objects.values_list("error", flat=True),
        json.dumps(list(DeliveryEvent.objects.values("data", "action"))),
        json.dumps(list(PublicationEvent.objects.values("data", "reason"))),
        caplog.text,
    ]
    # then no secret is anywhere, and the admin still sees that the answer was redacted
    for text in stored:
        for secret in secrets:
            assert secret not in text
    assert "[redacted]" in delivery.last_error and "rest_not_logged_in" in delivery.last_error
    # a viewer (and a token) sees what happened, not the receiver's answer; an admin sees it
    viewer = APIClient()
    viewer.force_authenticate(cast["dave"])
    answer = viewer.get(f"/api/v1/publications/{publication.pk}/deliveries/")
    assert answer.status_code == 200
    (row,) = answer.json()
    assert (
        row["last_error"].startswith("HTTP 401") and "rest_not_logged_in" not in row["last_error"]
    )
    admin = APIClient()
    admin.force_authenticate(cast["alice"])
    (admin_row,) = admin.get(f"/api/v1/publications/{publication.pk}/deliveries/").json()
    assert "rest_not_logged_in" in admin_row["last_error"]
    pages = {"viewer": Client(), "admin": Client()}
    pages["viewer"].force_login(cast["dave"])
    pages["admin"].force_login(cast["alice"])
    for who, client in pages.items():
        for url in [
            f"/p/newsroom/publications/{publication.pk}/",
            f"/p/newsroom/destinations/{destination.pk}/",
        ]:
            page = client.get(url)
            assert page.status_code == 200, url
            text = page.content.decode()
            assert all(secret not in text for secret in secrets)
            assert ("rest_not_logged_in" in text) == (who == "admin"), (who, url)


def test_a_destination_on_the_studios_own_network_is_refused_unless_allowed_by_name(
    cast: dict, receivers: list[Receiver], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = start(receivers, lambda h, b: (200, {"ok": True}))
    # given the default settings: no host allowed
    assert settings.DESTINATION_ALLOW_HOSTS == []
    for url in [
        receiver.url,
        "http://localhost:8000/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/",
    ]:
        with pytest.raises(ValidationError) as refused:
            services.destination_create(
                project=cast["newsroom"], user=cast["alice"], name="Local", kind="generic", url=url
            )
        assert list(refused.value.message_dict) == ["url"], url
        assert "CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS" in refused.value.message_dict["url"][0]
    # the page names the field and keeps the address typed
    client = Client()
    client.force_login(cast["alice"])
    page = client.post(
        "/p/newsroom/destinations/",
        {"name": "Local", "kind": "generic", "url": receiver.url},
    ).content.decode()
    assert "loopback" in page and receiver.url in page
    # when the host is allowed by name, it is made and delivered to
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Local", kind="generic", url=receiver.url
    )
    services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    assert flush.destination_flush(destination.pk) == 1
    # then a public name that later resolves to a private address is refused at send time,
    # before anything is sent, with the reason
    settings.DESTINATION_ALLOW_HOSTS = []
    destination.url = f"http://news.example.org:{receiver.port}/in"
    destination.save(update_fields=["url"])
    real = socket.getaddrinfo

    def rebound(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "news.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    before = len(receiver.requests)
    second = approved_draft(cast, title="Second")
    services.publication_publish(draft=second, user=cast["bob"])
    assert flush.destination_flush(destination.pk) == 0
    refused = Delivery.objects.get(publication__draft=second)
    assert refused.status == DeliveryStatus.FAILED
    assert "127.0.0.1, a loopback address" in refused.last_error
    assert len(receiver.requests) == before


def test_redirects_to_the_studios_own_network_are_refused(
    receivers: list[Receiver], settings: Any
) -> None:
    # given an allowed receiver that redirects to a loopback name that is not allowed
    target = start(receivers, lambda h, b: (200, {"secret": "internal"}))
    hop = start(
        receivers,
        lambda h, b: (302, {}, {"location": f"http://localhost:{target.port}/admin"}),
    )
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    # when it is followed, then the redirect is refused before it is sent
    with pytest.raises(UnsafeAddress, match="localhost resolves to"):
        GuardedSession().get(hop.url + "/in", timeout=5)
    assert target.requests == []
    # a plain session would have followed it (the check is what stops it)
    assert requests.get(hop.url + "/in", timeout=5).json() == {"secret": "internal"}
    check_url("https://93.184.216.34/in")  # a public address passes


XSS = [
    '<script>alert("t")</script>',
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(2)>',
    '<a href="javascript:alert(3)">x</a>',
    "<iframe src=//evil.example></iframe>",
]


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_before_sending(
    receivers: list[Receiver], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a name that resolves to a public address when checked, then to 127.0.0.1 (DNS
    # rebinding), and nothing allowed by name
    target = start(receivers, lambda h, b: (200, {"secret": "internal"}))
    settings.DESTINATION_ALLOW_HOSTS = []
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example.org":
            return real(host, port, *args, **kwargs)
        ip = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    # when a request is sent, then the connection to the private address is refused before
    # a byte reaches it
    with pytest.raises(UnsafeAddress, match=r"127\.0\.0\.1, a loopback address"):
        GuardedSession().post(f"http://rebind.example.org:{target.port}/in", json={}, timeout=5)
    assert target.requests == []


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def _dangerous(html: str) -> bool:
    """Whether a browser would run something in ``html``: a script-capable element, an event
    handler attribute or a javascript: link (escaped text is none of these)."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.found:
        if tag in {"script", "img", "svg", "iframe", "object", "embed", "style"}:
            return True
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                return True
    return False


def test_wordpress_and_ghost_fields_are_escaped_or_sanitised_for_each_system(
    cast: dict, receivers: list[Receiver], settings: Any
) -> None:
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    got: dict[str, list[dict]] = {"wp": [], "ghost": []}

    def wordpress(handler: Any, body: bytes) -> tuple[int, Any]:
        got["wp"].append(json.loads(body))
        return 201, {"id": len(got["wp"]), "link": "https://blog.example/p"}

    def ghost(handler: Any, body: bytes) -> tuple[int, Any]:
        post = json.loads(body)["posts"][0]
        got["ghost"].append(post)
        return 201, {"posts": [{**post, "id": f"g{len(got['ghost'])}", "updated_at": "t"}]}

    wp = start(receivers, wordpress)
    gh = start(receivers, ghost)
    services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="WP",
        kind=DestinationKind.WORDPRESS,
        url=wp.url,
        username="bot",
        secret=APP_PASSWORD,
    )
    services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Ghost",
        kind=DestinationKind.GHOST,
        url=gh.url,
        secret=f"6489a1b2c3d4:{'a1' * 32}",
    )
    for i, vector in enumerate(XSS):
        draft = approved_draft(cast, title=f"Title {vector}", text=f"Body {i}.\n\nMore {vector}")
        services.publication_publish(
            draft=draft, user=cast["bob"], summary=f"Summary {vector}", tags=[f"t{vector}"[:50]]
        )
    for destination_id in Delivery.objects.values_list("destination_id", flat=True).distinct():
        flush.destination_flush(destination_id)
    assert len(got["wp"]) == len(got["ghost"]) == len(XSS)
    for vector, post in zip(XSS, got["wp"], strict=True):
        # WordPress renders title and excerpt as HTML: escaped text, never markup
        for field in ("title", "excerpt", "content"):
            assert not _dangerous(post[field]), (field, post[field])
        assert post["title"] == "Title " + vector.replace("&", "&amp;").replace(
            "<", "&lt;"
        ).replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")
    for vector, post in zip(XSS, got["ghost"], strict=True):
        # Ghost treats title, excerpt and tags as text: sent as typed; the html is sanitised
        assert post["title"] == f"Title {vector}"
        assert post["custom_excerpt"] == f"Summary {vector}"
        assert not _dangerous(post["html"])


def test_a_dirty_stored_body_is_sanitised_again_before_it_goes_to_a_cms(
    cast: dict, receivers: list[Receiver], settings: Any
) -> None:
    from publishing.senders.base import body_with_disclosure

    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    version = publication.versions.get()
    version.body_html = '<p>Old row<script>alert(1)</script><img src=x onerror="a()"></p>'
    html = body_with_disclosure(version)
    assert not _dangerous(html) and "Old row" in html


def test_after_an_outage_one_success_sends_the_waiting_backlog_at_once(
    cast: dict, receivers: list[Receiver], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publishing import tasks

    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    settings.PUBLISHING_RETRY_DELAYS = [3600]  # a schedule set by the installation
    monkeypatch.setattr(tasks.destination_flush, "apply_async", lambda args, countdown: None)
    monkeypatch.setattr(tasks.destination_flush, "delay", lambda *a: None)
    up = {"on": False}
    receiver = start(receivers, lambda h, b: (200, {}) if up["on"] else (503, {"down": True}))
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=receiver.url
    )
    # given an outage: the first delivery fails until its retries run out, the next one
    # becomes the head, fails and waits for its next try (an hour away, per the setting)
    first = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    flush.destination_flush(destination.pk)
    head = Delivery.objects.get(publication=first)
    assert head.status == DeliveryStatus.PENDING
    assert head.next_attempt_at - timezone.now() > timedelta(minutes=59)
    Delivery.objects.filter(pk=head.pk).update(next_attempt_at=timezone.now())
    flush.destination_flush(destination.pk)
    head.refresh_from_db()
    assert head.status == DeliveryStatus.FAILED  # one delay in the schedule: two tries
    Delivery.objects.filter(pk=head.pk).update(next_attempt_at=None)
    backlog = [
        services.publication_publish(
            draft=approved_draft(cast, title=f"Story {i}"), user=cast["bob"]
        )
        for i in range(3)
    ]
    flush.destination_flush(destination.pk)
    waiting = Delivery.objects.get(publication=backlog[0])
    assert waiting.attempts == 1 and waiting.next_attempt_at > timezone.now() + timedelta(
        minutes=59
    )
    # when the receiver is back and a person sends the failed one again
    up["on"] = True
    services.delivery_retry_now(delivery=head, user=cast["bob"])
    flush.destination_flush(destination.pk)
    # then it and the whole backlog are delivered at once, in order, not an hour later
    statuses = dict(Delivery.objects.values_list("publication_id", "status"))
    assert statuses == {p.pk: DeliveryStatus.DELIVERED for p in [first, *backlog]}
    ordered = [json.loads(r["body"])["data"]["headline"] for r in receiver.requests[-4:]]
    assert ordered == ["Chess club turns 100", "Story 0", "Story 1", "Story 2"]


def test_retry_now_on_a_later_delivery_tries_the_destination_now(
    cast: dict, receivers: list[Receiver], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publishing import tasks

    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    monkeypatch.setattr(tasks.destination_flush, "apply_async", lambda args, countdown: None)
    monkeypatch.setattr(tasks.destination_flush, "delay", lambda *a: None)
    up = {"on": False}
    receiver = start(receivers, lambda h, b: (200, {}) if up["on"] else (503, {}))
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=receiver.url
    )
    publications = [
        services.publication_publish(
            draft=approved_draft(cast, title=f"Story {i}"), user=cast["bob"]
        )
        for i in range(2)
    ]
    flush.destination_flush(destination.pk)  # the head fails and waits; the other behind it
    # the pages say when the next try is
    client = Client()
    client.force_login(cast["dave"])
    page = client.get(f"/p/newsroom/publications/{publications[0].pk}/").content.decode()
    assert 'class="next-try"' in page
    page = client.get(f"/p/newsroom/destinations/{destination.pk}/").content.decode()
    assert 'class="next-try"' in page
    up["on"] = True
    later = Delivery.objects.get(publication=publications[1])
    services.delivery_retry_now(delivery=later, user=cast["bob"])
    assert flush.destination_flush(destination.pk) == 2
    assert not Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CONTENTSTUDIO_DELIVERY_RETRY_DELAYS": "10,5"}, "CONTENTSTUDIO_DELIVERY_RETRY_DELAYS"),
        ({"CONTENTSTUDIO_DELIVERY_RETRY_DELAYS": "ten"}, "CONTENTSTUDIO_DELIVERY_RETRY_DELAYS"),
        ({"CONTENTSTUDIO_DELIVERY_RETRY_DELAYS": "0,10"}, "CONTENTSTUDIO_DELIVERY_RETRY_DELAYS"),
        ({"CONTENTSTUDIO_DESTINATION_LEASE_S": "1"}, "CONTENTSTUDIO_DESTINATION_LEASE_S"),
    ],
)
def test_delivery_settings_are_read_from_the_environment_and_bad_ones_named(
    env: dict[str, str], named: str
) -> None:
    from tests.test_settings import start as start_studio

    bad = start_studio(env)
    assert bad.returncode != 0 and "ImproperlyConfigured" in bad.stderr and named in bad.stderr


def test_delivery_settings_read_from_the_environment() -> None:
    from tests.test_settings import ROOT

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.PUBLISHING_RETRY_DELAYS, s.PUBLISHING_DESTINATION_LEASE_S, "
            "s.DESTINATION_ALLOW_HOSTS)",
        ],
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "DJANGO_SETTINGS_MODULE": "contentstudio.settings",
            "CONTENTSTUDIO_DELIVERY_RETRY_DELAYS": "5, 20,80",
            "CONTENTSTUDIO_DESTINATION_LEASE_S": "30",
            "CONTENTSTUDIO_DESTINATION_ALLOW_HOSTS": "Intranet.Example., cms.local",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[5.0, 20.0, 80.0] 30.0 ['intranet.example', 'cms.local']"


def test_redaction_removes_credentials_and_keeps_the_words_around_them() -> None:
    from publishing.redaction import redact, secret_forms

    echoed = (
        "Invalid token provided; Authorization: Basic ZWRpdG9yLWJvdDp3eHl6IDEyMzQ= and "
        f'{{"Authorization": "Ghost {JWT}"}} bearer abcdefghijklmnopqrstuvwxyz {WHSEC} '
        f"authorization=secretvalue123 end; you sent {APP_PASSWORD.replace(' ', '')}"
    )
    text = redact(echoed, secrets=secret_forms(secret=APP_PASSWORD, username="editor-bot"))
    assert text == (
        "Invalid token provided; Authorization: [redacted] and "
        '{"Authorization": "[redacted]"} bearer [redacted] [redacted] '
        "authorization=[redacted] end; you sent [redacted]"
    )
    key = f"6489a1b2c3d4:{'a1' * 32}"
    assert redact(f"key {'a1' * 32} id", secrets=secret_forms(secret=key)) == "key [redacted] id"
