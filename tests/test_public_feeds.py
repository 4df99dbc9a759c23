"""Feeds for ordinary readers: opt-in per project (admins only), anonymous when open and 404
otherwise, valid JSON Feed 1.1 and Atom whose links are the public articles, never the studio,
and nothing that is not live in the project."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contentstudio.models import Role
from contentstudio.services import membership_set
from publishing import services
from publishing.models import FeedSettings, Publication, PublicationVersion
from tests.publishing_helpers import approved_draft, sources_indexed

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://news.example.com/articles/"


def _publish(cast: dict, title: str, project: str = "newsroom") -> Publication:
    draft = approved_draft(cast, title=title)
    if project != "newsroom":
        membership_set(project=cast[project], user=cast["bob"], role=Role.EDITOR)
        draft.project = cast[project]
        draft.save(update_fields=["project"])
    return services.publication_publish(draft=draft, user=cast["bob"], tags=["local"])


def _logged_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=f"{username}-password-1")
    return client


def _open_feed(cast: dict, base: str = BASE) -> None:
    response = _logged_in("alice").post(
        "/p/newsroom/feed/", {"public": "on", "public_base_url": base}
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def test_the_public_feed_is_not_found_until_an_admin_opens_it(cast: dict) -> None:
    _publish(cast, "Harbour festival")
    anonymous = Client()
    # closed by default: no settings row at all
    assert anonymous.get("/feeds/newsroom/feed.json").status_code == 404
    assert anonymous.get("/feeds/newsroom/feed.atom").status_code == 404
    # the members' feed still wants a session or a token
    assert anonymous.get("/api/v1/projects/newsroom/feed.json").status_code in (401, 403)
    # an editor cannot open it; a viewer sees the page but no form
    assert (
        _logged_in("bob")
        .post("/p/newsroom/feed/", {"public": "on", "public_base_url": BASE})
        .status_code
        == 403
    )
    assert not FeedSettings.objects.filter(public=True).exists()
    page = _logged_in("dave").get("/p/newsroom/feed/")
    assert page.status_code == 200 and b"Not public" in page.content
    assert b'name="public_base_url"' not in page.content
    # a public feed without a public base URL is refused, naming the field
    refused = _logged_in("alice").post("/p/newsroom/feed/", {"public": "on", "public_base_url": ""})
    assert refused.status_code == 200 and b"Public base URL" in refused.content
    assert anonymous.get("/feeds/newsroom/feed.json").status_code == 404
    # opened, then closed again: 404 again
    _open_feed(cast)
    assert anonymous.get("/feeds/newsroom/feed.json").status_code == 200
    assert (
        _logged_in("alice").post("/p/newsroom/feed/", {"public_base_url": BASE}).status_code == 302
    )
    assert anonymous.get("/feeds/newsroom/feed.json").status_code == 404
    assert anonymous.get("/feeds/newsroom/feed.atom").status_code == 404
    # another project's feed stays closed when this one is open
    _open_feed(cast)
    assert anonymous.get("/feeds/other/feed.json").status_code == 404


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_an_anonymous_reader_gets_valid_feeds_of_live_items_linking_to_the_public_site(
    cast: dict,
) -> None:
    # given a live publication, a corrected one, a scheduled one, an unpublished one, and one
    # live in another project (whose feed is public too)
    live = _publish(cast, "Harbour festival")
    corrected = _publish(cast, "Market day")
    sources_indexed(cast["newsroom"])  # a correction is checked against every source
    services.publication_correct(
        publication=corrected,
        user=cast["bob"],
        body="<p>The club's founder was a schoolteacher.</p>",
        note="Fix",
    )
    services.publication_schedule(
        draft=approved_draft(cast, title="Scheduled secret"),
        user=cast["bob"],
        when=timezone.now() + timedelta(days=2),
    )
    killed = _publish(cast, "Taken down story")
    services.publication_unpublish(publication=killed, user=cast["bob"], reason="Legal")
    _publish(cast, "Other desk story", project="other")
    FeedSettings.objects.create(
        project=cast["other"], public=True, public_base_url="https://other.example.org/"
    )
    # the first version is written just before the publication is stamped: make the gap plain
    PublicationVersion.objects.filter(publication=live, number=1).update(
        created_at=live.first_published_at - timedelta(minutes=5)
    )
    _open_feed(cast)
    anonymous = Client()

    # JSON Feed 1.1
    response = anonymous.get("/feeds/newsroom/feed.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/feed+json")
    assert response["ETag"]
    feed = json.loads(response.content)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str) and feed["title"] == "Newsroom"
    assert feed["feed_url"].endswith("/feeds/newsroom/feed.json")
    assert feed["home_page_url"] == BASE
    assert isinstance(feed["items"], list)
    titles = [item["title"] for item in feed["items"]]
    assert sorted(titles) == ["Harbour festival", "Market day"]
    for item in feed["items"]:
        # required: id (a string), and content_html or content_text
        assert isinstance(item["id"], str) and item["id"]
        assert item.get("content_html") or item.get("content_text")
        publication = Publication.objects.get(headline=item["title"])
        assert item["url"] == f"{BASE}{publication.guid}"
        assert "/p/newsroom/" not in json.dumps(item) and "testserver" not in item["url"]
        assert _dt(item["date_modified"]) >= _dt(item["date_published"])
    by_title = {item["title"]: item for item in feed["items"]}
    assert (
        by_title["Market day"]["content_html"] == "<p>The club's founder was a schoolteacher.</p>"
    )
    assert _dt(by_title["Market day"]["date_modified"]) > _dt(
        by_title["Market day"]["date_published"]
    )
    # private items never appear, whatever the field
    text = response.content.decode()
    for private in ("Scheduled secret", "Taken down story", "Other desk story", "other.example"):
        assert private not in text
    # the client's copy is still good
    again = anonymous.get("/feeds/newsroom/feed.json", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304

    # Atom, parsed as XML
    atom = anonymous.get("/feeds/newsroom/feed.atom")
    assert atom.status_code == 200 and atom["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(atom.content)  # noqa: S314 (our own output, in a test)
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert root.find(f"{ATOM}{required}") is not None, required
    entries = root.findall(f"{ATOM}entry")
    assert sorted(e.findtext(f"{ATOM}title") for e in entries) == sorted(titles)
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert entry.findtext(f"{ATOM}{required}"), required
        publication = Publication.objects.get(headline=entry.findtext(f"{ATOM}title"))
        assert entry.findtext(f"{ATOM}id") == f"urn:uuid:{publication.guid}"
        links = [link.get("href") for link in entry.findall(f"{ATOM}link")]
        assert links == [f"{BASE}{publication.guid}"]
        assert _dt(entry.findtext(f"{ATOM}updated")) >= _dt(entry.findtext(f"{ATOM}published"))
    for private in ("Scheduled secret", "Taken down story", "Other desk story"):
        assert private not in atom.content.decode()


def test_the_public_base_url_may_place_the_slug_and_id_and_members_feeds_use_it(
    cast: dict,
) -> None:
    publication = _publish(cast, "Harbour festival opens")
    _open_feed(cast, base="https://news.example.com/{slug}-{guid}.html")
    feed = json.loads(Client().get("/feeds/newsroom/feed.json").content)
    expected = f"https://news.example.com/harbour-festival-opens-{publication.guid}.html"
    assert feed["items"][0]["url"] == expected
    assert feed["home_page_url"] == "https://news.example.com/"
    members = json.loads(_logged_in("dave").get("/api/v1/projects/newsroom/feed.json").content)
    assert members["items"][0]["url"] == expected
    # a base URL that is not an address is refused with the field's name
    refused = _logged_in("alice").post(
        "/p/newsroom/feed/", {"public": "on", "public_base_url": "javascript:alert(1)"}
    )
    assert refused.status_code == 200 and b"Public base URL" in refused.content
    assert FeedSettings.objects.get(project=cast["newsroom"]).public_base_url.startswith("https://")


def test_members_feed_links_to_the_studio_page_until_a_public_base_url_is_set(
    cast: dict,
) -> None:
    publication = _publish(cast, "Harbour festival")
    feed = json.loads(_logged_in("dave").get("/api/v1/projects/newsroom/feed.json").content)
    assert feed["items"][0]["url"] == (
        f"http://testserver/p/newsroom/publications/{publication.pk}/"
    )
    # the link opens a real page for that member
    assert _logged_in("dave").get(feed["items"][0]["url"]).status_code == 200
