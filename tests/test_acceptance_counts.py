"""The acceptance dashboard counts each draft's final word: a hold that the re-run after
indexing lifted is not a hold, and an approval its approver undid is not an approval (nor an
edit pair to train on)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from finetune import selectors
from finetune.models import EditPair
from review import lifecycle
from review.lifecycle import DraftStatus
from review.services import embedding
from tests.factories import (
    ARCHIVE,
    FLOOD,
    HARBOUR,
    UNRELATED,
    checked,
    make_archive,
    make_draft,
    run_held_checks,
)

COPIED = ARCHIVE[HARBOUR]["text"]


pytestmark = pytest.mark.usefixtures("fresh_indexes")


def test_drafts_checked_during_indexing_and_checked_again_after_are_counted_once(
    cast: dict, hold_queue: list
) -> None:
    # given an archive whose paraphrase index is still being built
    project, bob = cast["newsroom"], cast["bob"]
    make_archive(project, [ARCHIVE[HARBOUR], ARCHIVE[FLOOD]], embed=False)
    # and two drafts checked meanwhile, against what is indexed: the copy is held (the
    # lexical check hashed the passages itself), the original draft is not held for waiting
    fine = checked(make_draft(project, bob, UNRELATED), hold_queue)
    copied = checked(make_draft(project, bob, COPIED), hold_queue)
    assert fine.status == DraftStatus.AWAITING_REVIEW
    assert copied.status == DraftStatus.HELD
    # when indexing finishes, the checks run again by themselves
    hold_queue.clear()
    while embedding.embed_chain_step(project_id=project.pk).again:
        pass
    assert hold_queue
    run_held_checks(hold_queue)
    fine.refresh_from_db()
    copied.refresh_from_db()
    # then the original draft passed again and the copy is held for good
    assert fine.status == DraftStatus.AWAITING_REVIEW
    assert copied.status == DraftStatus.HELD
    assert fine.events.filter(action="pass").count() == 2  # checked twice
    # and the dashboard counts only the copy as held
    [row] = selectors.acceptance(project=project)
    assert (row["checked"], row["held"], row["held_rate"]) == (2, 1, 0.5)
    client = Client()
    client.force_login(cast["alice"])
    page = client.get("/p/newsroom/finetune/acceptance/").content.decode()
    assert "(1/2)" in page


def test_an_undone_approval_is_not_counted_and_keeps_no_training_pair(
    cast: dict, django_capture_on_commit_callbacks: Any
) -> None:
    project, bob = cast["newsroom"], cast["bob"]
    kept = make_draft(project, bob, UNRELATED, status=DraftStatus.AWAITING_REVIEW)
    undone = make_draft(project, bob, COPIED, status=DraftStatus.AWAITING_REVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=kept, action="approve", user=bob)
        approved = lifecycle.draft_transition(draft=undone, action="approve", user=bob)
    assert EditPair.objects.filter(draft=undone).exists()
    # when bob takes his second approval back
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(
            draft=approved,
            action="undo_approve",
            user=bob,
            expected_version=approved.version,
        )
    # then its pair is gone and the dashboard counts one approval
    assert not EditPair.objects.filter(draft=undone).exists()
    assert EditPair.objects.filter(draft=kept).count() == 1
    [row] = selectors.acceptance(project=project)
    assert (row["approved"], row["rejected"], row["approval_rate"]) == (1, 0, 1.0)
