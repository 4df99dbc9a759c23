"""Export formats of publications: our JSON, IPTC ninjs 3.x, JSON Feed 1.1 and Atom.

ORM-light: each function takes rows already fetched (``PublicationVersion`` with its
``publication`` and project) and returns plain data, so the API, the webhooks and the feeds say
the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.utils.feedgenerator import Atom1Feed

from publishing.models import Publication, PublicationVersion, VersionKind

NINJS_VERSION = "3.1"
NINJS_SCHEMA = "http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json#"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


def item_uri(publication: Publication) -> str:
    return f"urn:uuid:{publication.guid}"


def publication_json(version: PublicationVersion) -> dict[str, Any]:
    """Our own JSON of one version (also the ``data`` of every webhook)."""
    publication = version.publication
    return {
        "id": str(publication.guid),
        "uri": item_uri(publication),
        "project": publication.project.slug,
        "version": version.number,
        "kind": version.kind,
        "status": "unpublished" if version.kind == VersionKind.KILL else "published",
        "headline": version.headline,
        "summary": version.summary,
        "body_html": version.body_html,
        "body_text": version.body_text,
        "tags": list(version.tags),
        "byline": version.byline,
        "ai_disclosure": version.ai_disclosure,
        "digital_source_type": version.digital_source_type,
        "correction_note": version.note if version.kind == VersionKind.CORRECTION else "",
        "first_published_at": (
            publication.first_published_at.isoformat() if publication.first_published_at else None
        ),
        "version_created_at": version.created_at.isoformat(),
        "provenance": version.provenance,
    }


def ninjs(version: PublicationVersion) -> dict[str, Any]:
    """IPTC ninjs 3.1. The AI involvement is in ``digitalSourceType`` (trained algorithmic
    media, or composite when people edited it), the people and models in ``infoSources`` and
    the provenance record as ``trustIndicators`` links to this API."""
    publication = version.publication
    prov = version.provenance or {}
    model = prov.get("model") or {}
    sources: list[dict[str, str]] = [
        {"name": version.byline.removesuffix(", with AI assistance"), "role": "editor"},
        {
            "name": model.get("name", ""),
            "role": "generator",
            "literal": "; ".join(
                f"{k}={v}"
                for k, v in (("source", model.get("source")), ("revision", model.get("revision")))
                if v
            )
            or "language model",
        },
    ]
    for scorer in prov.get("scorers", []):
        sources.append(
            {
                "name": scorer["name"],
                "role": f"checker:{scorer['check']}",
                "literal": scorer.get("version") or "unversioned",
            }
        )
    for decision in prov.get("decisions", []):
        if decision.get("by"):
            sources.append({"name": decision["by"], "role": f"reviewer:{decision['action']}"})
    kind_name = (
        "Composite with trained algorithmic media"
        if version.digital_source_type.endswith("compositeWithTrainedAlgorithmicMedia")
        else "Trained algorithmic media"
    )
    item: dict[str, Any] = {
        "standard": {"name": "ninjs", "version": NINJS_VERSION, "schema": NINJS_SCHEMA},
        "uri": item_uri(publication),
        "type": "text",
        "representationType": "full",
        "profile": "contentstudio-text",
        "version": str(version.number),
        "versionCreated": version.created_at.isoformat(),
        "pubStatus": "canceled" if version.kind == VersionKind.KILL else "usable",
        "language": "en",
        "headlines": [{"value": version.headline}],
        "descriptions": [{"role": "summary", "value": version.summary}] if version.summary else [],
        "bodies": [
            {
                "role": "main",
                "contentType": "text/html",
                "value": version.body_html,
                "charCount": len(version.body_text),
                "wordCount": len(version.body_text.split()),
            },
            {"role": "main", "contentType": "text/plain", "value": version.body_text},
        ],
        "by": version.byline,
        "subjects": [{"name": tag, "literal": tag} for tag in version.tags],
        "digitalSourceType": {"uri": version.digital_source_type, "name": kind_name},
        "infoSources": sources,
        "trustIndicators": [
            {
                "role": "http://cv.iptc.org/newscodes/trustindicator/ethicsPolicy",
                "title": version.ai_disclosure,
                "href": f"urn:contentstudio:provenance:{publication.guid}:v{version.number}",
            }
        ],
        "altIds": [{"role": "contentstudio-publication", "value": str(publication.pk)}],
    }
    if publication.first_published_at:
        item["firstCreated"] = publication.first_published_at.isoformat()
    if version.kind == VersionKind.CORRECTION and version.note:
        item["edNote"] = f"Correction: {version.note}"
    return item


ArticleUrl = Callable[[Publication], str]


def _dates(version: PublicationVersion) -> tuple[datetime | None, datetime]:
    """(published, modified) of a feed item. The first version is written a moment before the
    publication's ``first_published_at`` is stamped, so the modification date is never allowed
    to precede the publication date."""
    published = version.publication.first_published_at
    modified = version.created_at
    if published and modified < published:
        modified = published
    return published, modified


def json_feed(
    *,
    title: str,
    home_url: str,
    feed_url: str,
    versions: Iterable[PublicationVersion],
    article_url: ArticleUrl,
) -> dict[str, Any]:
    """JSON Feed 1.1 of a project's current publications (newest first). Each item's ``url``
    is ``article_url(publication)``: the article's public address where one is configured."""
    items = []
    for version in versions:
        publication = version.publication
        published, modified = _dates(version)
        entry: dict[str, Any] = {
            "id": item_uri(publication),
            "url": article_url(publication),
            "title": version.headline,
            "content_html": version.body_html,
            "content_text": version.body_text,
            "summary": version.summary,
            "date_modified": modified.isoformat(),
            "authors": [{"name": version.byline}],
            "tags": list(version.tags),
            "_contentstudio": {
                "version": version.number,
                "digital_source_type": version.digital_source_type,
                "ai_disclosure": version.ai_disclosure,
            },
        }
        if published:
            entry["date_published"] = published.isoformat()
        items.append(entry)
    return {
        "version": JSON_FEED_VERSION,
        "title": title,
        "home_page_url": home_url,
        "feed_url": feed_url,
        "language": "en",
        "items": items,
    }


def atom_feed(
    *,
    title: str,
    home_url: str,
    feed_url: str,
    versions: Iterable[PublicationVersion],
    article_url: ArticleUrl,
) -> str:
    feed = Atom1Feed(
        title=title, link=home_url, description=title, feed_url=feed_url, language="en"
    )
    for version in versions:
        publication = version.publication
        published, modified = _dates(version)
        feed.add_item(
            title=version.headline,
            link=article_url(publication),
            description=version.body_html,
            unique_id=item_uri(publication),
            author_name=version.byline,
            pubdate=published,
            updateddate=modified,
            categories=list(version.tags),
        )
    return feed.writeString("utf-8")
