"""Publication: immutable versions with provenance, corrections, kills, schedules, roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from contentstudio.errors import InvalidTransition, PermissionDenied
from publishing import provenance, services
from publishing.models import (
    ImmutableError,
    Publication,
    PublicationEvent,
    PublicationStatus,
    PublicationVersion,
    VersionKind,
)
from review import lifecycle
from review.lifecycle import DraftStatus
from review.models import DraftEvent, IndexState, SourcePassage
from tests.publishing_helpers import approved_draft

pytestmark = pytest.mark.django_db


def test_publishing_writes_an_immutable_first_version_with_provenance(cast: dict) -> None:
    # given an approved draft
    draft = approved_draft(cast)
    state, _ = IndexState.objects.get_or_create(project=cast["newsroom"])
    before = (state.version, state.epoch)
    # when bob publishes it with tags
    publication = services.publication_publish(draft=draft, user=cast["bob"], tags="local, chess")
    # then the draft is published and version 1 holds the text, byline and provenance
    draft.refresh_from_db()
    assert draft.status == DraftStatus.PUBLISHED
    assert publication.status == PublicationStatus.PUBLISHED
    assert publication.current_version == 1
    version = publication.versions.get()
    assert version.kind == VersionKind.PUBLISH
    assert version.headline == "Chess club turns 100"
    assert version.tags == ["local", "chess"]
    assert version.body_html.startswith("<p>The chess club")
    assert "youngest entrant" in version.body_text
    assert version.byline == "bob, with AI assistance"
    assert "review-fixture" in version.ai_disclosure and "bob" in version.ai_disclosure
    assert version.digital_source_type == provenance.TRAINED_ALGORITHMIC
    prov = version.provenance
    assert prov["model"]["name"] == "review-fixture"
    assert prov["seed"] == draft.seed
    assert {c["kind"] for c in prov["checks"]} == {"toxicity", "lexical"}
    assert {"name": "detoxify", "version": "0.5.4", "check": "toxicity"} in prov["scorers"]
    # The publish decision itself is part of the record (the audit row is written first).
    assert [d["action"] for d in prov["decisions"]] == ["approve", "publish"]
    assert prov["decisions"][0]["by"] == "bob"
    # and it is audited on both sides
    assert PublicationEvent.objects.filter(publication=publication, action="publish").exists()
    assert DraftEvent.objects.filter(draft=draft, action="publish").exists()
    # and later drafts are compared against it (the plagiarism sources grew, incrementally:
    # the index version moved, its epoch did not, so no rebuild)
    assert SourcePassage.objects.filter(draft=draft, kind="published").exists()
    state = IndexState.objects.get(project=cast["newsroom"])
    assert (state.version, state.epoch) == (before[0] + 1, before[1])
    # and the version cannot be changed or deleted
    version.headline = "Changed"
    with pytest.raises(ImmutableError):
        version.save()
    with pytest.raises(ImmutableError):
        version.delete()


def test_a_draft_published_by_reviews_own_move_gets_its_publication_on_commit(
    cast: dict, django_capture_on_commit_callbacks: Any
) -> None:
    # given an approved draft, published by review's own move (the draft page's button, its
    # API), which knows nothing of publishing
    draft = approved_draft(cast)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=draft, action="publish", user=cast["alice"])
    # then publishing heard the announcement and wrote version 1 and its audit row
    publication = Publication.objects.get(draft=draft)
    assert publication.current_version == 1
    assert publication.versions.get().byline == "bob, with AI assistance"  # the approver
    event = publication.events.get()
    assert (event.action, event.from_status, event.to_status) == ("publish", "", "published")
    # and unpublishing the same way sends the kill version
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(
            draft=draft, action="unpublish", user=cast["bob"], reason="Legal"
        )
    publication.refresh_from_db()
    assert (publication.status, publication.current_version) == ("unpublished", 2)
    assert publication.versions.get(number=2).kind == VersionKind.KILL


def test_a_publication_written_with_the_move_is_not_written_again_on_commit(
    cast: dict, django_capture_on_commit_callbacks: Any
) -> None:
    draft = approved_draft(cast)
    with django_capture_on_commit_callbacks(execute=True):
        publication = services.publication_publish(draft=draft, user=cast["bob"])
    assert publication.versions.count() == 1 and publication.events.count() == 1


def test_a_correction_is_a_new_version_and_updates_the_plagiarism_sources(cast: dict) -> None:
    draft = approved_draft(cast)
    publication = services.publication_publish(draft=draft, user=cast["bob"])
    version = services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body="<p>The chess club in the old town hall marked one hundred years of play.</p>",
        note="The club is a century old, not the hall.",
    )
    publication.refresh_from_db()
    assert (version.number, version.kind) == (2, VersionKind.CORRECTION)
    assert publication.current_version == 2
    assert version.digital_source_type == provenance.COMPOSITE_ALGORITHMIC
    assert "edited and approved" in version.ai_disclosure
    assert PublicationVersion.objects.get(publication=publication, number=1).body_text.startswith(
        "The chess club in the old town hall celebrated"
    )
    passages = " ".join(SourcePassage.objects.filter(draft=draft).values_list("text", flat=True))
    assert "one hundred years" in passages and "youngest" not in passages


def test_a_correction_needs_a_note_and_a_change(cast: dict) -> None:
    draft = approved_draft(cast)
    publication = services.publication_publish(draft=draft, user=cast["bob"])
    body = publication.versions.get().body_html
    with pytest.raises(ValidationError) as missing:
        services.publication_correct(publication=publication, user=cast["bob"], body=body)
    assert "note" in missing.value.message_dict
    with pytest.raises(ValidationError) as same:
        services.publication_correct(
            publication=publication, user=cast["bob"], body=body, note="typo"
        )
    assert "body" in same.value.message_dict


def test_unpublishing_writes_a_kill_version_and_leaves_the_plagiarism_sources(cast: dict) -> None:
    draft = approved_draft(cast)
    publication = services.publication_publish(draft=draft, user=cast["bob"])
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    publication.refresh_from_db()
    draft.refresh_from_db()
    assert publication.status == PublicationStatus.UNPUBLISHED
    assert draft.status == DraftStatus.UNPUBLISHED
    kill = publication.versions.get(number=2)
    assert (kill.kind, kill.note) == (VersionKind.KILL, "Legal")
    assert not SourcePassage.objects.filter(draft=draft).exists()
    with pytest.raises(InvalidTransition):
        services.publication_correct(
            publication=publication,
            user=cast["bob"],
            body="<p>The club elected a new treasurer this spring.</p>",
            note="x",
        )


@pytest.mark.parametrize("who", ["charlie", "dave"])
def test_reviewers_and_viewers_cannot_publish(cast: dict, who: str) -> None:
    draft = approved_draft(cast)
    with pytest.raises(PermissionDenied):
        services.publication_publish(draft=draft, user=cast[who])
    with pytest.raises(PermissionDenied):
        services.publication_schedule(
            draft=draft, user=cast[who], when=timezone.now() + timedelta(hours=1)
        )
    assert not Publication.objects.exists()


def test_a_schedule_in_the_past_or_on_an_unapproved_draft_is_refused_with_the_reason(
    cast: dict,
) -> None:
    draft = approved_draft(cast)
    with pytest.raises(ValidationError) as past:
        services.publication_schedule(
            draft=draft, user=cast["bob"], when=timezone.now() - timedelta(minutes=1)
        )
    assert "in the past" in past.value.message_dict["scheduled_for"][0]
    lifecycle.draft_transition(draft=draft, action="reopen", user=cast["bob"])
    with pytest.raises(InvalidTransition) as unapproved:
        services.publication_schedule(
            draft=draft, user=cast["bob"], when=timezone.now() + timedelta(hours=1)
        )
    assert "awaiting review" in unapproved.value.message


def test_the_periodic_task_publishes_what_is_due_and_refuses_a_draft_no_longer_approved(
    cast: dict,
) -> None:
    from publishing import tasks

    due = approved_draft(cast, title="Due")
    later = approved_draft(cast, title="Later")
    reopened = approved_draft(cast, title="Reopened")
    soon = timezone.now() + timedelta(minutes=5)
    for draft in (due, reopened):
        services.publication_schedule(draft=draft, user=cast["bob"], when=soon, tags=["x"])
    services.publication_schedule(draft=later, user=cast["bob"], when=soon + timedelta(hours=2))
    lifecycle.draft_transition(draft=reopened, action="reopen", user=cast["alice"])
    # when the time has come (the task function, as beat would run it)
    published = services.publications_due(now=soon + timedelta(seconds=1))
    # then the due one is published by its scheduler, the later one waits, the reopened one
    # is refused with the reason
    assert published == [Publication.objects.get(draft=due).pk]
    pub = Publication.objects.get(draft=due)
    assert (pub.status, pub.current_version, pub.versions.get().tags) == ("published", 1, ["x"])
    assert Publication.objects.get(draft=later).status == PublicationStatus.SCHEDULED
    refused = Publication.objects.get(draft=reopened)
    assert refused.status == PublicationStatus.CANCELLED
    assert "awaiting review" in refused.error
    assert refused.events.filter(action="schedule_refused").exists()
    # and the task registered for beat runs the same service
    assert tasks.publications_due() == 0


def test_the_beat_schedule_names_the_publishing_tasks(settings: Any) -> None:
    from contentstudio.celery import app
    from publishing import tasks as publishing_tasks

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    mine = {publishing_tasks.publications_due.name, publishing_tasks.deliveries_due.name}
    assert mine <= scheduled
    assert mine <= set(app.tasks)
    # the lead's sweeps are still there (the publishing entries are added, not a new dict)
    assert "generation.tasks.jobs_sweep" in scheduled
