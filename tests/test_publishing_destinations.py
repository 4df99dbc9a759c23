"""What admins do to destinations is audited: created, disabled, enabled, deleted, each with the
person and what the destination pointed at, never its secret; the row outlives the destination.
Only admins act, through the services and the page alike, and a refused act leaves no row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from contentstudio.errors import PermissionDenied
from publishing import services
from publishing.models import Destination, DestinationEvent

pytestmark = pytest.mark.django_db

PASSWORD = "wxyz 1234 abcd 9876"


def trail(project: Any) -> list[tuple[str, str, str | None, int | None]]:
    return [
        (e.action, e.name, e.actor.username if e.actor else None, e.destination_id)
        for e in DestinationEvent.objects.filter(project=project).order_by("pk")
    ]


def test_create_disable_enable_and_delete_each_leave_an_audit_row_without_the_secret(
    cast: dict,
) -> None:
    alice, newsroom = cast["alice"], cast["newsroom"]
    blog, _ = services.destination_create(
        project=newsroom,
        user=alice,
        name="Blog",
        kind="wordpress",
        url="https://blog.example",
        username="bot",
        secret=PASSWORD,
    )
    hook, generated = services.destination_create(
        project=newsroom, user=alice, name="Hook", kind="generic", url="https://hook.example/in"
    )
    services.destination_set_enabled(destination=blog, user=alice, enabled=False)
    # asking for the state it is in already changes nothing and logs nothing
    services.destination_set_enabled(destination=blog, user=alice, enabled=False)
    services.destination_set_enabled(destination=blog, user=alice, enabled=True)
    blog_id = blog.pk
    services.destination_delete(destination=blog, user=alice)

    assert not Destination.objects.filter(pk=blog_id).exists()
    # the rows stay after the delete, naming the destination; its link is cleared
    assert trail(newsroom) == [
        ("create", "Blog", "alice", None),
        ("create", "Hook", "alice", hook.pk),
        ("disable", "Blog", "alice", None),
        ("enable", "Blog", "alice", None),
        ("delete", "Blog", "alice", None),
    ]
    created = DestinationEvent.objects.filter(action="create", name="Blog").get()
    assert created.data == {"kind": "wordpress", "url": "https://blog.example", "username": "bot"}
    # no secret, generated or typed, nor its hint, is in any audit row
    everything = json.dumps(list(DestinationEvent.objects.values_list("data", flat=True)))
    assert generated is not None
    for secret in (PASSWORD, generated, generated.removeprefix("whsec_")):
        assert secret not in everything
    assert hook.secret_hint not in everything


@pytest.mark.parametrize("who", ["bob", "charlie", "dave"])
def test_only_admins_change_destinations_and_a_refusal_leaves_no_row(cast: dict, who: str) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Hook",
        kind="generic",
        url="https://h.example",
    )
    before = DestinationEvent.objects.count()
    with pytest.raises(PermissionDenied):
        services.destination_create(
            project=cast["newsroom"],
            user=cast[who],
            name="X",
            kind="generic",
            url="https://x.example",
        )
    with pytest.raises(PermissionDenied):
        services.destination_set_enabled(destination=destination, user=cast[who], enabled=False)
    with pytest.raises(PermissionDenied):
        services.destination_delete(destination=destination, user=cast[who])
    client = Client()
    client.force_login(cast[who])
    url = f"/p/newsroom/destinations/{destination.pk}/action/"
    assert client.post(url, {"action": "delete"}).status_code == 403
    assert DestinationEvent.objects.count() == before
    destination.refresh_from_db()
    assert destination.enabled


def test_the_destinations_page_writes_the_same_audit_rows(cast: dict) -> None:
    client = Client()
    client.force_login(cast["alice"])
    response = client.post(
        "/p/newsroom/destinations/",
        {
            "name": "Ghost",
            "kind": "ghost",
            "url": "https://g.example",
            "secret": "ab12:" + "cd" * 16,
        },
    )
    assert response.status_code == 302
    destination = Destination.objects.get(name="Ghost")
    url = f"/p/newsroom/destinations/{destination.pk}/action/"
    assert client.post(url, {"action": "disable"}).status_code == 302
    assert client.post(url, {"action": "delete"}).status_code == 302
    assert [a for a, *_ in trail(cast["newsroom"])] == ["create", "disable", "delete"]
    assert "cd" * 16 not in json.dumps(
        list(DestinationEvent.objects.values_list("data", flat=True))
    )
    # another project's admin sees none of it
    assert not DestinationEvent.objects.filter(project=cast["other"]).exists()
