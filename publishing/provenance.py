"""What a publication version says about where its text came from: the byline, the AI
disclosure, the IPTC digital source type and the provenance record."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from contentstudio.html import html_to_text, text_to_html
from generation.models import Draft
from review.models import Comment, CommentKind, DraftEvent, DraftRevision
from review.selectors import latest_checks

# IPTC NewsCodes, Digital Source Type (http://cv.iptc.org/newscodes/digitalsourcetype/).
TRAINED_ALGORITHMIC = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_ALGORITHMIC = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)
DECISIONS = {"approve", "reject", "request_changes", "release", "reopen", "publish", "unpublish"}


def person(user: AbstractBaseUser | None) -> str:
    if user is None:
        return "the editors"
    return (getattr(user, "get_full_name", lambda: "")() or user.get_username()).strip()


def approving_editor(draft: Draft) -> AbstractBaseUser | None:
    event = (
        DraftEvent.objects.filter(draft=draft, action="approve", actor__isnull=False)
        .select_related("actor")
        .order_by("-created_at", "-pk")
        .first()
    )
    return event.actor if event else None


def edited_by_people(draft: Draft, body_html: str) -> bool:
    """True when the published text is not the model's output as generated."""
    if DraftRevision.objects.filter(draft=draft, author__isnull=False).exists():
        return True
    return html_to_text(body_html).strip() != html_to_text(text_to_html(draft.model_output)).strip()


def digital_source_type(edited: bool) -> str:
    return COMPOSITE_ALGORITHMIC if edited else TRAINED_ALGORITHMIC


def disclosure(draft: Draft, editor: str, edited: bool) -> str:
    how = "edited and approved" if edited else "reviewed and approved"
    return (
        f"This text was drafted with the help of an AI language model ({draft.model_name}) and "
        f"{how} by {editor}."
    )


def checks_of(outcomes: list[dict[str, Any]], *, on: str) -> list[dict[str, Any]]:
    """The provenance entries of checks run on a text that is not a draft version (a
    correction): what each found, on what (``on``), by which engine."""
    return [
        {
            "kind": o["kind"],
            "status": o["status"],
            "reason": o.get("reason", ""),
            "engine": o.get("engine", o["kind"]),
            "engine_version": o.get("engine_version", ""),
            "scores": o.get("scores", {}),
            "draft_version": None,
            "on": on,
        }
        for o in outcomes
    ]


def record(
    draft: Draft, *, edited: bool, checks: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The provenance record of what is published now (a JSON-safe dict). ``checks``: the
    results of the checks run on this text when it is not the draft's (a correction's own,
    from ``checks_of``, or a kill's, which repeats the text it takes down); by default the
    draft's latest results."""
    template = draft.template_version
    if checks is None:
        checks = [
            {
                "kind": check.kind,
                "status": check.status,
                "reason": check.reason,
                "engine": check.engine,
                "engine_version": check.engine_version,
                "scores": check.scores,
                "draft_version": check.draft_version,
            }
            for check in latest_checks(draft=draft)
        ]
    decisions = [
        {
            "action": event.action,
            "by": event.actor_username,
            "at": event.created_at.isoformat(),
            "reason": event.reason,
        }
        for event in DraftEvent.objects.filter(draft=draft, action__in=DECISIONS).select_related(
            "actor"
        )
    ]
    recommendations = [
        {
            "kind": comment.kind,
            "by": comment.author.get_username() if comment.author else None,
            "at": comment.created_at.isoformat(),
        }
        for comment in Comment.objects.filter(draft=draft)
        .exclude(kind=CommentKind.COMMENT)
        .select_related("author")
    ]
    scorers: dict[tuple[str, str], dict[str, str]] = {}
    for check in checks:
        scorers.setdefault(
            (check["engine"], check["engine_version"]),
            {"name": check["engine"], "version": check["engine_version"], "check": check["kind"]},
        )
    return {
        "draft": draft.pk,
        "job": draft.job_id,
        "model": {
            "name": draft.model_name,
            "source": draft.model_source,
            "revision": draft.model_revision,
        },
        "template": (
            {"name": template.template.name, "version": template.number, "id": template.pk}
            if template is not None
            else None
        ),
        "settings": draft.settings,
        "seed": draft.seed,
        "checks": checks,
        "scorers": list(scorers.values()),
        "decisions": decisions,
        "recommendations": recommendations,
        "edited_by_people": edited,
    }
