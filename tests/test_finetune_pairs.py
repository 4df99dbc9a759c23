"""Edit pairs kept from review's ``draft_approved``: after the approval commits, once per
approved version, and a failure that never undoes the approval but is logged and shown to the
project's admins."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection

from contentstudio.html import text_to_html
from finetune.models import EditPair, MissedPair
from generation.models import Draft
from review import lifecycle
from review.models import DraftEvent
from review.signals import draft_approved
from tests.factories import make_draft

OUTPUT = "The council voted on Tuesday to shut the bridge."
FINAL = "The city council voted on Tuesday to close the bridge."


@pytest.fixture
def corrected(cast: dict) -> Draft:
    """A draft awaiting review whose text an editor corrected."""
    draft = make_draft(cast["newsroom"], cast["bob"], OUTPUT, status="awaiting_review")
    Draft.objects.filter(pk=draft.pk).update(body=text_to_html(FINAL))
    draft.refresh_from_db()
    return draft


@contextmanager
def pair_table_refuses_writes() -> Iterator[None]:
    """The database itself refuses every new edit pair (a trigger), as a full disk or a lost
    connection would: a real failure of the pair's INSERT, not a stand-in for it."""
    table = EditPair._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER refuse_pairs BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'the pair table refuses writes'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_pairs() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'the pair table refuses writes'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_pairs BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_pairs()"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("DROP TRIGGER refuse_pairs")
            else:
                cursor.execute(f"DROP TRIGGER refuse_pairs ON {table}")
                cursor.execute("DROP FUNCTION refuse_pairs()")


def test_the_pair_is_kept_once_the_approval_commits_not_before(
    cast: dict, corrected: Draft, django_capture_on_commit_callbacks: Any
) -> None:
    # when the editor approves, the approval's transaction has not committed yet
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        lifecycle.draft_transition(draft=corrected, action="approve", user=cast["bob"])
        # then nothing is kept inside it
        assert not EditPair.objects.exists()

    # when it commits
    for callback in callbacks:
        callback()

    # then the pair of the approved version is kept, by the editor who approved it
    corrected.refresh_from_db()
    pair = EditPair.objects.get(draft=corrected)
    assert pair.draft_version == corrected.version
    assert pair.approved_by == cast["bob"] and pair.final_text == FINAL
    assert pair.edit_distance == 2 and not MissedPair.objects.exists()


def test_a_second_signal_for_the_same_version_keeps_one_pair(
    cast: dict, corrected: Draft, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=corrected, action="approve", user=cast["bob"])
    first = EditPair.objects.get()

    # when the same approval is announced again (a redelivery)
    draft_approved.send(
        sender=Draft, draft_id=corrected.pk, actor=cast["bob"], approved_at=first.approved_at
    )

    # then there is still one pair
    assert list(EditPair.objects.all()) == [first]

    # but a draft reopened and approved again is a new version, with a pair of its own
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=corrected, action="reopen", user=cast["bob"])
        lifecycle.draft_transition(draft=corrected, action="approve", user=cast["alice"])
    corrected.refresh_from_db()
    versions = sorted(EditPair.objects.values_list("draft_version", flat=True))
    assert versions == [first.draft_version, corrected.version]


def test_a_failing_pair_write_keeps_the_approval_is_logged_and_shown_to_admins(
    cast: dict,
    corrected: Draft,
    client: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given a database that refuses to store the pair
    with (
        pair_table_refuses_writes(),
        caplog.at_level(logging.ERROR, logger="finetune"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        # when the editor approves
        approved = lifecycle.draft_transition(draft=corrected, action="approve", user=cast["bob"])

    # then the approval stands
    assert approved.status == "approved"
    assert Draft.objects.get(pk=corrected.pk).status == "approved"
    assert DraftEvent.objects.filter(draft=corrected, action="approve").count() == 1
    # no pair was kept, and the log has the traceback
    assert not EditPair.objects.exists()
    [record] = [r for r in caplog.records if r.name == "finetune.services"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert f"draft {corrected.pk}" in record.getMessage()
    # the miss is recorded with its reason
    missed = MissedPair.objects.get()
    assert (missed.draft_id, missed.draft_version) == (corrected.pk, approved.version)
    assert "the pair table refuses writes" in missed.reason

    # the admins see it where the pairs are offered
    client.force_login(cast["alice"])
    for url in ("/p/newsroom/finetune/acceptance/", "/p/newsroom/finetune/"):
        page = client.get(url).content.decode()
        assert "1 approval could not be kept as training pair." in page
        assert "the pair table refuses writes" in page
    export = client.get("/p/newsroom/finetune/pairs.jsonl")
    assert export["X-Missed-Pairs"] == "1" and export.content == b""
    # an editor and another project's admin do not
    client.force_login(cast["bob"])
    assert client.get("/p/newsroom/finetune/acceptance/").status_code == 403
    client.force_login(cast["eve"])
    assert client.get("/p/other/finetune/acceptance/").content.count(b"missed-pairs") == 0

    # when the same approval is announced again once the database accepts writes
    draft_approved.send(
        sender=Draft, draft_id=corrected.pk, actor=cast["bob"], approved_at=missed.approved_at
    )

    # then the pair is kept and the notice is gone
    assert EditPair.objects.get().draft_version == approved.version
    assert not MissedPair.objects.exists()
    client.force_login(cast["alice"])
    assert b"missed-pairs" not in client.get("/p/newsroom/finetune/acceptance/").content


def test_the_reason_is_escaped_on_the_page(cast: dict, corrected: Draft, client: Any) -> None:
    MissedPair.objects.create(
        project=cast["newsroom"],
        draft=corrected,
        draft_version=corrected.version,
        approved_at=corrected.created_at,
        reason="<script>alert(1)</script>",
    )
    client.force_login(cast["alice"])
    page = client.get("/p/newsroom/finetune/acceptance/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_run_selects_pairs_and_drafts_by_date_and_template(
    cast: dict, corrected: Draft, django_capture_on_commit_callbacks: Any
) -> None:
    from django.utils import timezone

    from finetune import data as data_mod

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=corrected, action="approve", user=cast["bob"])
    project_id = cast["newsroom"].pk
    today = timezone.localdate()
    tomorrow = (today + timezone.timedelta(days=1)).isoformat()
    yesterday = (today - timezone.timedelta(days=1)).isoformat()

    for select in (data_mod.edit_pairs, data_mod.approved_drafts):
        assert select(project_id=project_id, spec={"date_from": yesterday}).count() == 1
        assert select(project_id=project_id, spec={"date_to": yesterday}).count() == 0
        assert select(project_id=project_id, spec={"date_from": tomorrow}).count() == 0
        assert select(project_id=project_id, spec={"template_id": -1}).count() == 0
    assert data_mod.edit_pairs(project_id=cast["other"].pk, spec={}).count() == 0
