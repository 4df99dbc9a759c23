"""The Publications pages and the API tokens page, through Django's test client: roles,
filters, publish now or scheduled, corrections and kills, tokens shown once and revoked."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from contentstudio import tokens
from contentstudio.models import ApiToken
from publishing import services
from publishing.models import Publication, PublicationStatus
from tests.factories import logged_in
from tests.publishing_helpers import approved_draft

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_receivers_allowed")]


def test_editors_publish_from_the_page_and_viewers_and_reviewers_cannot(cast: dict) -> None:
    draft = approved_draft(cast)
    url = "/p/newsroom/publications/"
    for who in ("dave", "charlie"):
        page = logged_in(cast[who]).get(url).content.decode()
        assert "data-publish" not in page, f"{who} sees a publish button"
        refused = logged_in(cast[who]).post(f"{url}publish/", {"draft": draft.pk})
        assert refused.status_code == 403
    assert logged_in(cast["eve"]).get(url).status_code == 404
    bob = logged_in(cast["bob"])
    assert f'data-publish="{draft.pk}"' in bob.get(url).content.decode()
    response = bob.post(f"{url}publish/", {"draft": draft.pk, "tags": "chess, local"})
    publication = Publication.objects.get(draft=draft)
    assert response.status_code == 302 and response.url.endswith(f"/{publication.pk}/")
    assert publication.tags == ["chess", "local"]
    detail = bob.get(response.url).content.decode()
    assert "Chess club turns 100" in detail and "Publish a correction" in detail
    # The list shows it; a filter on another state hides it; a bad filter says why.
    assert "Chess club turns 100" in bob.get(url).content.decode()
    assert "Chess club turns 100" not in bob.get(url + "?state=unpublished").content.decode()
    bad = bob.get(url + "?updated_since=soon").content.decode()
    assert "updated_since" in bad and "ISO 8601" in bad


def test_scheduling_from_the_page_reads_the_browser_offset_and_refuses_the_past(
    cast: dict,
) -> None:
    draft = approved_draft(cast)
    bob = logged_in(cast["bob"])
    local = (timezone.now() + timedelta(hours=3)).astimezone(timezone.get_fixed_timezone(120))
    bob.post(
        "/p/newsroom/publications/publish/",
        {
            "draft": draft.pk,
            "scheduled_for": local.strftime("%Y-%m-%dT%H:%M"),
            "tz_offset": "-120",  # getTimezoneOffset() for UTC+2
        },
    )
    publication = Publication.objects.get(draft=draft)
    assert publication.status == PublicationStatus.SCHEDULED
    assert abs((publication.scheduled_for - local).total_seconds()) < 60
    other = approved_draft(cast, title="Old news")
    response = bob.post(
        "/p/newsroom/publications/publish/",
        {"draft": other.pk, "scheduled_for": "2020-01-01T10:00", "tz_offset": "0", "tags": "a, b"},
    )
    # refused with the reason next to the draft, what was typed still there
    page = response.content.decode()
    assert response.status_code == 400 and "in the past" in page
    assert 'value="a, b"' in page and 'value="2020-01-01T10:00"' in page
    assert not Publication.objects.filter(draft=other).exists()
    # publish now from the scheduled item
    bob.post(f"/p/newsroom/publications/{publication.pk}/action/", {"action": "publish_now"})
    publication.refresh_from_db()
    assert (publication.status, publication.current_version) == ("published", 1)


def test_corrections_and_kills_from_the_page_show_versions_with_their_diff(cast: dict) -> None:
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    bob = logged_in(cast["bob"])
    action = f"/p/newsroom/publications/{publication.pk}/action/"
    refused = bob.post(action, {"action": "correct", "body": "<p>My long corrected text</p>"})
    # refused with the reason, and nothing typed is lost
    assert refused.status_code == 400
    assert "note" in refused.content.decode()
    assert "My long corrected text" in refused.content.decode()
    bob.post(
        action,
        {
            "action": "correct",
            "body": "<p>The chess club <script>alert(1)</script>marked a century.</p>",
            "note": "Wording",
            "headline": "Chess club marks a century",
            "version": "1",
        },
    )
    page = bob.get(f"/p/newsroom/publications/{publication.pk}/").content.decode()
    assert "<ins>" in page and "Chess club marks a century" in page
    assert "<script>alert(1)</script>" not in page  # sanitised on the way in
    assert (
        logged_in(cast["charlie"]).post(action, {"action": "unpublish", "reason": "x"}).status_code
        == 403
    )
    bob.post(action, {"action": "unpublish", "reason": "Legal request"})
    publication.refresh_from_db()
    assert publication.status == "unpublished" and publication.current_version == 3


def test_admins_create_tokens_shown_once_and_revoke_them_in_the_browser(cast: dict) -> None:
    alice = logged_in(cast["alice"])
    assert logged_in(cast["bob"]).get("/p/newsroom/tokens/").status_code == 403
    assert logged_in(cast["eve"]).get("/p/newsroom/tokens/").status_code == 404
    missing = alice.post("/p/newsroom/tokens/", {"name": "", "scope": "read"}).content.decode()
    assert "name" in missing and "Give the token a name" in missing
    created = alice.post("/p/newsroom/tokens/", {"name": "Website", "scope": "read"})
    key = re.search(r'id="token-value">(cs_[^<]+)<', created.content.decode()).group(1)
    assert key not in alice.get("/p/newsroom/tokens/").content.decode()
    token = ApiToken.objects.get(name="Website")
    assert token.key_hash != key and key.startswith(token.prefix)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/publications/").status_code == 200
    # a read token cannot request drafts either, and sees only its project's drafts
    assert (
        api.post(
            "/api/v1/projects/newsroom/jobs/", {"seed_text": "x"}, content_type="application/json"
        ).status_code
        == 403
    )
    approved_draft(cast)
    drafts = api.get("/api/v1/drafts/").json()["results"]
    assert drafts and {d["project"] for d in drafts} == {"newsroom"}
    alice.post(f"/p/newsroom/tokens/{token.pk}/revoke/")
    assert api.get("/api/v1/publications/").status_code == 401
    # the token's creator leaving the project takes the token's access with them
    _, other_key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="CMS", scope="read_write"
    )
    cast["alice"].memberships.filter(project=cast["newsroom"]).delete()
    gone = Client(HTTP_AUTHORIZATION=f"Bearer {other_key}").get("/api/v1/publications/")
    assert gone.status_code == 401 and "no longer belongs" in gone.json()["message"]


def test_drafts_and_jobs_answer_with_etags_for_integrations(cast: dict) -> None:
    draft = approved_draft(cast)
    api = Client()
    api.force_login(cast["dave"])
    for url in (f"/api/v1/drafts/{draft.pk}/", "/api/v1/drafts/", f"/api/v1/jobs/{draft.job_id}/"):
        first = api.get(url)
        assert first.status_code == 200, url
        again = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
        assert again.status_code == 304, url
    from review import lifecycle

    lifecycle.draft_transition(draft=draft, action="reopen", user=cast["bob"])
    changed = api.get(f"/api/v1/drafts/{draft.pk}/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200


def test_integrations_list_drafts_changed_since_a_time(cast: dict) -> None:
    old = approved_draft(cast, title="Old")
    type(old).objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=2))
    new = approved_draft(cast, title="New")
    api = logged_in(cast["dave"])
    since = (timezone.now() - timedelta(days=1)).isoformat()
    listed = api.get("/api/v1/drafts/", {"updated_since": since}).json()["results"]
    assert [d["id"] for d in listed] == [new.pk]
    bad = api.get("/api/v1/drafts/", {"updated_since": "yesterday"})
    assert bad.status_code == 400 and "updated_since" in bad.json()["fields"]


def test_the_draft_page_links_to_its_publication(cast: dict) -> None:
    draft = approved_draft(cast)
    bob = logged_in(cast["bob"])
    assert "publication-link" not in bob.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    publication = services.publication_publish(draft=draft, user=cast["bob"])
    page = bob.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert f"/p/newsroom/publications/{publication.pk}/" in page


def test_each_destination_has_its_delivery_log_with_retry_now(cast: dict) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Site",
        kind="generic",
        url="http://127.0.0.1:9/hooks",
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    url = f"/p/newsroom/destinations/{destination.pk}/"
    page = logged_in(cast["dave"]).get(url).content.decode()
    assert publication.headline in page and "publication.published" in page
    assert "data-retry" not in page  # viewers read the log, editors act on it
    bob = logged_in(cast["bob"])
    assert "data-retry" in bob.get(url + "?rows=1").content.decode()
    delivery = publication.deliveries.get()
    response = bob.post(f"/p/newsroom/deliveries/{delivery.pk}/retry/", {"back": "destination"})
    assert response.status_code == 302 and response.url == url
    assert logged_in(cast["eve"]).get(url).status_code == 404


def test_api_errors_outside_views_are_json_with_code_and_message(cast: dict) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(cast["dave"])
    missing = client.get("/api/v1/no-such-endpoint/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found" and missing.json()["message"]
    assert client.get("/p/newsroom/no-such-page/").status_code == 404


def test_a_read_write_token_requests_drafts_follows_and_cancels_the_job(
    cast: dict, language_model: Any, news_template: Any, hold_queue: list
) -> None:
    _, key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="CMS", scope="read_write"
    )
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    created = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {
            "template": news_template.template_id,
            "variables": {"headline": "Storm", "lede": "A storm hit."},
            "n_candidates": 2,
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    assert api.get(f"/api/v1/jobs/{job_id}/").json()["status"] == "queued"
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    # the other project's jobs are out of reach
    assert (
        api.post("/api/v1/projects/other/jobs/", {}, content_type="application/json").status_code
        == 404
    )


def test_drafts_page_by_keyset_cursor_for_syncing_integrations(cast: dict) -> None:
    drafts = [approved_draft(cast, title=f"D{i}") for i in range(5)]
    api = logged_in(cast["dave"])
    seen: list[int] = []
    body = api.get("/api/v1/drafts/", {"ordering": "updated_at", "limit": 2}).json()
    seen += [d["id"] for d in body["results"]]
    from review import lifecycle

    lifecycle.draft_transition(draft=drafts[0], action="reopen", user=cast["bob"])
    while body["next"]:
        body = api.get(body["next"].replace("http://testserver", "")).json()
        seen += [d["id"] for d in body["results"]]
    assert seen == [d.pk for d in drafts] + [drafts[0].pk]
    bad = api.get("/api/v1/drafts/", {"ordering": "updated_at", "cursor": "nope"})
    assert bad.status_code == 400 and "cursor" in bad.json()["fields"]
    too_many = api.get("/api/v1/drafts/", {"ordering": "updated_at", "limit": "lots"})
    assert too_many.status_code == 400 and "limit" in too_many.json()["fields"]
