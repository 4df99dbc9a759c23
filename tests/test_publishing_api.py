"""The publishing API over real HTTP (uvicorn serving the ASGI app): tokens and their scopes,
keyset pagination across changes, filters, ETags, error bodies, export formats, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import jsonschema
import requests
from django.conf import settings

from contentstudio import tokens
from contentstudio.models import TokenScope
from publishing import services
from publishing.models import Publication
from tests.publishing_helpers import approved_draft, sources_indexed

SCHEMAS = Path(settings.BASE_DIR).parent / "shared" / "schemas" / "ninjs"


def _schemas_dir() -> Path:
    # ../shared in a worktree or CI checkout; the shared folder itself otherwise.
    for candidate in (SCHEMAS, Path(settings.BASE_DIR) / ".." / "shared" / "schemas" / "ninjs"):
        if (candidate / "ninjs-schema_3.1.json").exists():
            return candidate
    return Path("/work/shared/schemas/ninjs")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def published(cast: dict, title: str, tags: list[str] | None = None) -> Publication:
    return services.publication_publish(
        draft=approved_draft(cast, title=title), user=cast["bob"], tags=tags or []
    )


def test_tokens_reach_their_own_project_only_and_read_tokens_cannot_write(
    asgi_server: str, cast: dict
) -> None:
    # given a publication in each project and tokens for the newsroom
    ours = published(cast, "Ours")
    other_draft = approved_draft(cast, title="Theirs")
    type(other_draft).objects.filter(pk=other_draft.pk).update(project=cast["other"])
    theirs = Publication.objects.create(
        project=cast["other"], draft=other_draft, status="published", updated_at=ours.updated_at
    )
    _, read_key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="site", scope=TokenScope.READ
    )
    write_token, write_key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="cms", scope=TokenScope.READ_WRITE
    )
    api = f"{asgi_server}/api/v1"
    # when the read token lists publications and projects: only the newsroom's
    listed = requests.get(f"{api}/publications/", headers=bearer(read_key), timeout=10)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["results"]] == [ours.pk]
    projects = requests.get(f"{api}/projects/", headers=bearer(read_key), timeout=10).json()
    assert [p["slug"] for p in projects] == ["newsroom"]
    # then the other project's publication is not there (404, not 403: no leak)
    for key in (read_key, write_key):
        response = requests.get(f"{api}/publications/{theirs.pk}/", headers=bearer(key), timeout=10)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    # and a read token cannot write
    draft = approved_draft(cast, title="To publish")
    refused = requests.post(
        f"{api}/publications/", json={"draft": draft.pk}, headers=bearer(read_key), timeout=10
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied" and refused.json()["message"]
    # but a read-write token can (without a CSRF token: it is not a browser session)
    created = requests.post(
        f"{api}/publications/",
        json={"draft": draft.pk, "tags": ["api"]},
        headers=bearer(write_key),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "published" and created.json()["tags"] == ["api"]
    # validation errors name the field
    bad = requests.post(
        f"{api}/publications/", json={"draft": "x"}, headers=bearer(write_key), timeout=10
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid" and "draft" in bad.json()["fields"]
    assert "draft" in bad.json()["message"]
    # a revoked or unknown token is refused with 401 and a JSON body
    tokens.token_revoke(token=write_token, user=cast["alice"])
    for key in (write_key, "cs_not-a-real-token"):
        gone = requests.get(f"{api}/publications/", headers=bearer(key), timeout=10)
        assert gone.status_code == 401
        assert gone.json()["code"] == "authentication_failed"
    assert key not in gone.text
    # the hash is stored, never the key
    from contentstudio.models import ApiToken

    assert not ApiToken.objects.filter(key_hash__contains=read_key).exists()
    assert read_key not in json.dumps(list(ApiToken.objects.values()), default=str)


def test_keyset_pagination_survives_changes_and_filters_narrow_the_list(
    asgi_server: str, cast: dict
) -> None:
    _, key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="sync", scope=TokenScope.READ_WRITE
    )
    pubs = [published(cast, f"Story {i}", tags=["even" if i % 2 == 0 else "odd"]) for i in range(7)]
    api = f"{asgi_server}/api/v1/publications/"
    seen: list[int] = []
    page = requests.get(
        api, params={"ordering": "updated_at", "page_size": 3}, headers=bearer(key), timeout=10
    ).json()
    seen += [p["id"] for p in page["results"]]
    # meanwhile an item already seen is corrected (new text, checked against the others) and
    # a new one is published
    sources_indexed(cast["newsroom"])
    services.publication_correct(
        publication=pubs[0],
        user=cast["bob"],
        body="<p>The youngest entrant is eleven years old.</p>",
        summary="A correction of the entrant's age.",
        note="Fix",
    )
    late = published(cast, "Late story", tags=["odd"])
    while page["next"]:
        page = requests.get(page["next"], headers=bearer(key), timeout=10).json()
        seen += [p["id"] for p in page["results"]]
    # then every unchanged item came once, and the changed and new ones came at the end
    assert seen[:7] == [p.pk for p in pubs]
    assert seen[7:] == [pubs[0].pk, late.pk]
    # filters
    odd = requests.get(api, params={"tag": "odd"}, headers=bearer(key), timeout=10).json()
    assert {p["id"] for p in odd["results"]} == {pubs[1].pk, pubs[3].pk, pubs[5].pk, late.pk}
    since = pubs[0].versions.get(number=2).created_at.isoformat()
    recent = requests.get(
        api, params={"updated_since": since}, headers=bearer(key), timeout=10
    ).json()
    assert {p["id"] for p in recent["results"]} == {pubs[0].pk, late.pk}
    services.publication_unpublish(publication=pubs[2], user=cast["bob"], reason="Wrong")
    killed = requests.get(api, params={"state": "unpublished"}, headers=bearer(key), timeout=10)
    assert [p["id"] for p in killed.json()["results"]] == [pubs[2].pk]
    bad = requests.get(api, params={"updated_since": "yesterday"}, headers=bearer(key), timeout=10)
    assert bad.status_code == 400 and "updated_since" in bad.json()["fields"]
    bad_cursor = requests.get(api, params={"cursor": "zzz"}, headers=bearer(key), timeout=10)
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["fields"]
    # ETags: unchanged answers 304, a change gives a new tag
    detail = f"{api}{pubs[1].pk}/"
    first = requests.get(detail, headers=bearer(key), timeout=10)
    etag = first.headers["ETag"]
    again = requests.get(detail, headers={**bearer(key), "If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    sources_indexed(cast["newsroom"])
    services.publication_correct(
        publication=pubs[1],
        user=cast["bob"],
        body="<p>The final was decided in a rapid game.</p>",
        summary="How the final was decided.",
        note="Update",
    )
    changed = requests.get(detail, headers={**bearer(key), "If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.json()["current_version"] == 2


def test_exports_are_valid_ninjs_json_feed_and_atom(asgi_server: str, cast: dict) -> None:
    _, key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="feeds", scope=TokenScope.READ
    )
    first = published(cast, "Harbour festival", tags=["culture"])
    second = published(cast, "Market day", tags=["local"])
    sources_indexed(cast["newsroom"])
    services.publication_correct(
        publication=second,
        user=cast["bob"],
        body="<p>The club's founder was a schoolteacher.</p>",
        summary="Who founded the club.",
        note="Rewrite",
    )
    api = f"{asgi_server}/api/v1"
    schema_dir = _schemas_dir()
    schema = json.loads((schema_dir / "ninjs-schema_3.1.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    untouched = requests.get(
        f"{api}/publications/{first.pk}/ninjs/", headers=bearer(key), timeout=10
    )
    edited = requests.get(f"{api}/publications/{second.pk}/ninjs/", headers=bearer(key), timeout=10)
    for response in (untouched, edited):
        assert response.status_code == 200
        errors = sorted(validator.iter_errors(response.json()), key=lambda e: e.path)
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert untouched.json()["digitalSourceType"]["uri"].endswith("/trainedAlgorithmicMedia")
    assert edited.json()["digitalSourceType"]["uri"].endswith(
        "/compositeWithTrainedAlgorithmicMedia"
    )
    roles = {s["role"] for s in edited.json()["infoSources"]}
    assert {"editor", "generator", "checker:toxicity", "reviewer:approve"} <= roles
    assert edited.json()["trustIndicators"][0]["title"].startswith("This text was drafted")
    # an invalid item fails the same validator (the check can fail)
    assert list(validator.iter_errors({"uri": "urn:x", "pubStatus": "gone"}))
    # JSON Feed 1.1
    feed = requests.get(f"{api}/projects/newsroom/feed.json", headers=bearer(key), timeout=10)
    assert feed.headers["Content-Type"].startswith("application/feed+json")
    body = feed.json()
    assert body["version"] == "https://jsonfeed.org/version/1.1"
    assert body["title"] == "Newsroom" and body["feed_url"].endswith("/feed.json")
    assert [i["title"] for i in body["items"]] == ["Market day", "Harbour festival"]
    for item in body["items"]:
        assert item["id"].startswith("urn:uuid:") and item["content_html"]
        assert item["date_published"] and item["authors"][0]["name"]
    # Atom, as a feed reader parses it
    atom = requests.get(f"{api}/projects/newsroom/feed.atom", headers=bearer(key), timeout=10)
    parsed = feedparser.parse(atom.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == ["Market day", "Harbour festival"]
    assert parsed.entries[1].id == f"urn:uuid:{first.guid}"
    assert parsed.entries[1].tags[0].term == "culture"
    # another project's feed is not found with this token
    assert (
        requests.get(f"{api}/projects/other/feed.json", headers=bearer(key), timeout=10).status_code
        == 404
    )


def test_the_openapi_schema_is_valid_and_the_docs_page_serves_its_assets_locally(
    asgi_server: str, cast: dict
) -> None:
    from drf_spectacular.validation import validate_schema

    session = requests.Session()
    login = session.get(f"{asgi_server}/login/", timeout=10)
    assert login.ok
    session.post(
        f"{asgi_server}/login/",
        data={
            "username": "dave",
            "password": "dave-password-1",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    schema = session.get(f"{asgi_server}/api/v1/schema/?format=json", timeout=30)
    assert schema.status_code == 200
    document = schema.json()
    validate_schema(document)  # raises on an invalid OpenAPI document
    assert "/api/v1/publications/" in document["paths"]
    assert "projectToken" in document["components"]["securitySchemes"]
    docs = session.get(f"{asgi_server}/api/v1/docs/", timeout=10)
    assert docs.status_code == 200
    assets = [a for a in ("swagger-ui-bundle.js", "swagger-ui.css") if a in docs.text]
    assert assets and "cdn" not in docs.text.lower()
    import re

    for src in re.findall(r'"(/static/drf_spectacular_sidecar/[^"]+)"', docs.text):
        assert session.get(f"{asgi_server}{src}", timeout=10).status_code == 200
