"""What editors and reviewers do to drafts besides moving them: edits (sanitised, revisioned,
optimistic, re-checked), threaded comments and recommendations, assignment, soft edit locks,
regeneration, and bulk actions where one refused row does not stop the others."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone

from contentstudio.errors import Conflict, InvalidTransition, PermissionDenied
from contentstudio.html import html_to_text, text_to_html
from contentstudio.models import Role
from contentstudio.services import membership_set
from generation.models import Candidate, CandidateStatus, Draft, GenerationJob
from review import diff, editorial, lifecycle, services
from review.lifecycle import DraftStatus
from review.models import Assignment, CheckResult, Comment, DraftEvent, DraftRevision, EditLock
from tests.factories import UNRELATED, fixture_model, make_draft, reset_indexes

S = DraftStatus
EDITED = UNRELATED + " The mayor handed the trophy to the winner."


def waiting(cast: dict, text: str = UNRELATED, **kw: Any) -> Draft:
    return make_draft(cast["newsroom"], cast["bob"], text, status=S.AWAITING_REVIEW, **kw)


def events(draft: Draft) -> list[str]:
    return list(DraftEvent.objects.filter(draft=draft).values_list("action", flat=True))


# --- Edits ---------------------------------------------------------------------------------------

HOSTILE = (
    "<h2>Heading</h2>"
    '<p>Text with <strong>bold</strong>, <em>italic</em> and a <a href="https://example.org/x" '
    'onclick="steal()" style="color:red">link</a>, '
    '<a href="javascript:alert(1)">a bad link</a> and <a href="data:text/html,x">data</a>.</p>'
    '<script>alert("script")</script>'
    '<img src="x" onerror="alert(1)">'
    '<iframe src="https://evil.example"></iframe>'
    '<ul><li class="x">one</li></ul>'
    '<p onmouseover="alert(2)">hover</p>'
    '<svg onload="alert(3)"><circle></circle></svg>'
    "<!-- a comment -->"
)


def test_saving_keeps_the_allowed_subset_and_removes_scripts_handlers_and_bad_links(
    cast: dict, hold_queue: list
) -> None:
    draft = waiting(cast)
    editorial.draft_edit(draft=draft, user=cast["bob"], body=HOSTILE, expected_version=1)
    draft.refresh_from_db()
    body = draft.body
    for kept in [
        "<h2>Heading</h2>",
        "<strong>bold</strong>",
        "<em>italic</em>",
        "<ul><li>one</li></ul>",
        "<p>hover</p>",
    ]:
        assert kept in body
    [link] = re.findall(r"<a [^>]*>link</a>", body)
    assert 'href="https://example.org/x"' in link and 'rel="nofollow noopener"' in link
    assert "style" not in link and "onclick" not in link
    lowered = body.lower()
    for gone in [
        "<script",
        "onerror",
        "onclick",
        "onmouseover",
        "onload",
        "javascript:",
        "data:text",
        "<img",
        "<iframe",
        "<svg",
        "style=",
        "class=",
        "<!--",
    ]:
        assert gone not in lowered, gone
    assert "a bad link" in html_to_text(body), "the text of a refused link stays"
    # The revision stores exactly what was saved.
    assert DraftRevision.objects.get(draft=draft, number=2).body == body


def test_the_first_edit_keeps_the_model_output_as_revision_one(
    cast: dict, hold_queue: list
) -> None:
    draft = waiting(cast)
    original = draft.body
    assert not DraftRevision.objects.filter(draft=draft).exists()

    editorial.draft_edit(
        draft=draft,
        user=cast["bob"],
        body=text_to_html(EDITED),
        title="Chess club turns 100",
        expected_version=1,
        note="Added the trophy",
    )
    revisions = list(DraftRevision.objects.filter(draft=draft).order_by("number"))
    assert [(r.number, r.author_id, r.body) for r in revisions] == [
        (1, None, original),
        (2, cast["bob"].pk, text_to_html(EDITED)),
    ]
    assert revisions[0].note == "Model output" and revisions[0].title == "Test draft"
    assert (revisions[1].note, revisions[1].title) == ("Added the trophy", "Chess club turns 100")
    draft.refresh_from_db()
    assert draft.title == "Chess club turns 100"
    assert draft.model_output == UNRELATED, "the model's text is never changed"
    edit = DraftEvent.objects.get(draft=draft, action="edit")
    assert edit.actor == cast["bob"]
    assert edit.data == {"revision": 2, "words_added": 8, "words_removed": 0}

    # A second edit (after the checks routed it back) adds revision 3; revision 1 stays.
    lifecycle.draft_transition(draft=draft, action="pass", user=None)
    editorial.draft_edit(
        draft=draft,
        user=cast["alice"],
        body=text_to_html(EDITED.replace("trophy", "cup")),
        expected_version=draft.version,
    )
    assert list(
        DraftRevision.objects.filter(draft=draft).order_by("number").values_list("number", "body")
    ) == [
        (1, original),
        (2, text_to_html(EDITED)),
        (3, text_to_html(EDITED.replace("trophy", "cup"))),
    ]
    last = DraftEvent.objects.filter(draft=draft, action="edit").latest("pk")
    assert last.data == {"revision": 3, "words_added": 1, "words_removed": 1}


def test_the_word_diff_shows_the_change_and_rebuilds_both_texts() -> None:
    old = "The club met on Monday.\n\nIt was sunny."
    new = "The chess club met on Tuesday.\n\nIt was sunny."
    pieces = diff.word_diff(old, new)
    assert "".join(t for op, t in pieces if op != "insert") == old
    assert "".join(t for op, t in pieces if op != "delete") == new
    assert [t.strip() for op, t in pieces if op == "insert"] == ["chess", "Tuesday."]
    assert [t.strip() for op, t in pieces if op == "delete"] == ["Monday."]
    # A run of changed words reads as one change, not word by word.
    assert [
        (op, t)
        for op, t in diff.word_diff("in the new library now", "in the old town hall now")
        if op != "equal"
    ] == [("delete", "new library"), ("insert", "old town hall")]
    assert diff.change_stats(old, new) == {"words_added": 2, "words_removed": 1}
    assert diff.word_diff("same", "same") == [("equal", "same")]


def test_the_model_output_and_its_unedited_html_show_no_difference() -> None:
    # Raw model text has irregular whitespace; the stored body normalises it. Not a change.
    raw = "Storm  hits the coast.\n \nWind reached 100 km/h \nat noon."
    current = html_to_text(text_to_html(raw))
    assert current != raw
    assert [op for op, _ in diff.word_diff(raw, current)] == ["equal"]
    assert diff.change_stats(raw, current) == {"words_added": 0, "words_removed": 0}
    # A real paragraph break made or removed is still a change.
    assert ("insert", "\n\n") in diff.word_diff("a b", "a\n\nb")


def test_saving_the_same_text_changes_nothing(cast: dict, hold_queue: list) -> None:
    draft = waiting(cast)
    same = editorial.draft_edit(draft=draft, user=cast["bob"], body=draft.body, expected_version=1)
    assert (same.status, same.version) == (S.AWAITING_REVIEW, 1)
    assert not DraftRevision.objects.exists() and events(draft) == [] and hold_queue == []


def test_an_edit_on_a_stale_version_is_refused_with_the_current_text_and_the_difference(
    cast: dict, hold_queue: list
) -> None:
    draft = waiting(cast)
    bobs_copy = Draft.objects.get(pk=draft.pk)
    alices = UNRELATED.replace("chess club", "bridge club")
    editorial.draft_edit(
        draft=draft, user=cast["alice"], body=text_to_html(alices), expected_version=1
    )
    now = Draft.objects.get(pk=draft.pk)

    bobs = UNRELATED.replace("old town hall", "new library")
    with pytest.raises(Conflict) as caught:
        editorial.draft_edit(
            draft=bobs_copy, user=cast["bob"], body=text_to_html(bobs), expected_version=1
        )
    conflict = caught.value
    assert conflict.message.startswith("alice changed this draft")
    assert f"version 1 → {now.version}" in conflict.message
    current = conflict.current
    assert current["version"] == now.version and current["status"] == now.status
    assert current["body"] == text_to_html(alices) and current["changed_by"] == "alice"
    # The difference from bob's text to the current one: his words out, alice's in.
    pieces = current["diff"]
    assert "".join(p["text"] for p in pieces if p["op"] != "insert") == bobs
    assert "".join(p["text"] for p in pieces if p["op"] != "delete") == alices
    assert [p["text"].strip() for p in pieces if p["op"] == "delete"] == ["chess", "new library"]
    assert [p["text"].strip() for p in pieces if p["op"] == "insert"] == ["bridge", "old town hall"]
    # Nothing of bob's was saved.
    assert Draft.objects.get(pk=draft.pk).body == text_to_html(alices)
    assert DraftRevision.objects.filter(draft=draft).count() == 2


def test_a_save_that_loses_the_race_inside_the_transaction_reports_the_newest_draft(
    cast: dict, hold_queue: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the locked read and the conditional write someone else saved (SQLite does not
    lock rows): the refusal must describe the draft as it is now, with the difference."""
    from django.db.models import F

    draft = waiting(cast)
    manager = Draft.objects
    original = manager.select_for_update

    class Sneaky:
        def __init__(self) -> None:
            self.qs = original()

        def get(self, **lookup: Any) -> Draft:
            row = self.qs.get(**lookup)
            manager.filter(pk=row.pk).update(
                version=F("version") + 1, body="<p>Theirs meanwhile.</p>"
            )
            return row

    monkeypatch.setattr(manager, "select_for_update", Sneaky)
    with pytest.raises(Conflict, match="same moment") as caught:
        editorial.draft_edit(draft=draft, user=cast["bob"], body="<p>Mine.</p>", expected_version=1)
    monkeypatch.undo()
    current = caught.value.current
    assert current["version"] == 2 and current["body"] == "<p>Theirs meanwhile.</p>"
    assert [(p["op"], p["text"]) for p in current["diff"]] == [
        ("delete", "Mine."),
        ("insert", "Theirs meanwhile."),
    ]


def test_an_edit_sends_the_draft_back_through_every_check(cast: dict, hold_queue: list) -> None:
    reset_indexes()
    draft = waiting(cast)
    moved = editorial.draft_edit(
        draft=draft, user=cast["bob"], body=text_to_html(EDITED), expected_version=1
    )
    # edit (v2), then the pipeline's check move (v3); its task is queued for that version
    assert (moved.status, moved.version) == (S.CHECKING, 3)
    assert hold_queue == [(draft.pk, 3)]
    check = DraftEvent.objects.get(draft=draft, action="check")
    assert check.actor is None and check.data == {"requested_by": "bob"}

    services.draft_checks_run(draft_id=draft.pk, version=3)
    draft.refresh_from_db()
    assert draft.status == S.AWAITING_REVIEW, events(draft)
    ran = CheckResult.objects.filter(draft=draft, draft_version=3)
    assert sorted(ran.values_list("kind", flat=True)) == [
        "ethics",
        "lexical",
        "semantic",
        "toxicity",
    ]
    assert events(draft) == ["edit", "check", "pass"]
    reset_indexes()


@pytest.mark.parametrize("status", sorted(set(S.values) - lifecycle.EDITABLE))
def test_drafts_that_are_not_under_review_cannot_be_edited(
    cast: dict, hold_queue: list, status: str
) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=status)
    with pytest.raises(InvalidTransition, match="cannot be edited"):
        editorial.draft_edit(
            draft=draft, user=cast["bob"], body=text_to_html(EDITED), expected_version=1
        )
    row = Draft.objects.get(pk=draft.pk)
    assert (row.status, row.version, row.body) == (status, 1, text_to_html(UNRELATED))
    assert not DraftRevision.objects.exists() and hold_queue == []


@pytest.mark.parametrize("status", sorted(lifecycle.EDITABLE))
def test_drafts_under_review_can_be_edited(cast: dict, hold_queue: list, status: str) -> None:
    draft = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=status)
    moved = editorial.draft_edit(
        draft=draft, user=cast["alice"], body=text_to_html(EDITED), expected_version=1
    )
    assert moved.status == S.CHECKING


def test_only_editors_and_admins_edit_and_empty_text_is_refused(
    cast: dict, hold_queue: list
) -> None:
    draft = waiting(cast)
    for name in ("charlie", "dave"):
        with pytest.raises(PermissionDenied):
            editorial.draft_edit(draft=draft, user=cast[name], body="<p>x</p>", expected_version=1)
    with pytest.raises(Http404):
        editorial.draft_edit(draft=draft, user=cast["eve"], body="<p>x</p>", expected_version=1)
    for empty in ["", "<p>  </p>", "<script>   </script><img src=x>"]:
        with pytest.raises(ValidationError):
            editorial.draft_edit(draft=draft, user=cast["bob"], body=empty, expected_version=1)
    assert Draft.objects.get(pk=draft.pk).version == 1 and events(draft) == []


# --- Comments ------------------------------------------------------------------------------------


def test_reviewers_comment_and_recommend_in_threads_and_viewers_only_read(cast: dict) -> None:
    draft = waiting(cast)
    first = editorial.comment_add(draft=draft, user=cast["charlie"], body="  Check the date.  ")
    reply = editorial.comment_add(
        draft=draft, user=cast["bob"], body="Fixed, thanks.", parent=first
    )
    nested = editorial.comment_add(draft=draft, user=cast["charlie"], body="Good.", parent=reply)
    recommend = editorial.comment_add(
        draft=draft, user=cast["charlie"], body="Ready to go.", kind="recommend_approve"
    )
    assert first.body == "Check the date."
    assert (reply.parent_id, nested.parent_id, recommend.parent_id) == (first.pk, reply.pk, None)
    assert recommend.kind == "recommend_approve"
    log = list(DraftEvent.objects.filter(draft=draft).values_list("action", "actor", "data"))
    assert log == [
        ("comment", cast["charlie"].pk, {"comment": first.pk, "kind": "comment"}),
        ("comment", cast["bob"].pk, {"comment": reply.pk, "kind": "comment"}),
        ("comment", cast["charlie"].pk, {"comment": nested.pk, "kind": "comment"}),
        ("recommend", cast["charlie"].pk, {"comment": recommend.pk, "kind": "recommend_approve"}),
    ]
    # A recommendation is advice: the draft does not move.
    assert Draft.objects.get(pk=draft.pk).status == S.AWAITING_REVIEW

    with pytest.raises(PermissionDenied):
        editorial.comment_add(draft=draft, user=cast["dave"], body="I am only a viewer.")
    with pytest.raises(Http404):
        editorial.comment_add(draft=draft, user=cast["eve"], body="Not my project.")
    assert Comment.objects.count() == 4


def test_bad_comments_are_refused_with_the_field_named(cast: dict) -> None:
    draft = waiting(cast)
    other = waiting(cast)
    elsewhere = editorial.comment_add(draft=other, user=cast["bob"], body="On the other draft.")
    cases = [
        ({"body": "   "}, "body"),
        ({"body": "x" * (editorial.MAX_COMMENT + 1)}, "body"),
        ({"body": "ok", "kind": "recommend_publish"}, "kind"),
        ({"body": "ok", "parent": elsewhere}, "parent"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as caught:
            editorial.comment_add(draft=draft, user=cast["charlie"], **kwargs)
        assert field in caught.value.message_dict
    assert not Comment.objects.filter(draft=draft).exists() and events(draft) == []


# --- Assignment ----------------------------------------------------------------------------------


def test_editors_assign_members_who_can_review_and_never_outsiders_or_viewers(cast: dict) -> None:
    draft = waiting(cast)
    due = timezone.now() + timedelta(days=1)
    editorial.draft_assign(draft=draft, user=cast["bob"], assignee=cast["charlie"], due_at=due)
    assignment = Assignment.objects.get(draft=draft)
    assert (assignment.assignee, assignment.assigned_by, assignment.due_at) == (
        cast["charlie"],
        cast["bob"],
        due,
    )
    editorial.draft_assign(draft=draft, user=cast["alice"], assignee=cast["bob"])
    assert Assignment.objects.filter(draft=draft).count() == 1
    assert Assignment.objects.get(draft=draft).assignee == cast["bob"]

    for outsider in ("eve", "dave"):
        with pytest.raises(ValidationError) as caught:
            editorial.draft_assign(draft=draft, user=cast["bob"], assignee=cast[outsider])
        assert outsider in caught.value.message_dict["assignee"][0]
    assert Assignment.objects.get(draft=draft).assignee == cast["bob"], "unchanged"

    with pytest.raises(PermissionDenied):
        editorial.draft_assign(draft=draft, user=cast["charlie"], assignee=cast["charlie"])

    editorial.draft_assign(draft=draft, user=cast["bob"], assignee=None)
    assert not Assignment.objects.filter(draft=draft).exists()
    log = list(DraftEvent.objects.filter(draft=draft).values_list("action", "data"))
    assert log == [
        ("assign", {"assignee": "charlie", "due_at": due.isoformat()}),
        ("assign", {"assignee": "bob", "due_at": None}),
        ("unassign", {}),
    ]
    assert [u.username for u in editorial.assignable_members(draft=draft)] == [
        "alice",
        "bob",
        "charlie",
    ]


# --- Soft locks ----------------------------------------------------------------------------------


def test_a_soft_lock_shows_who_is_editing_until_it_expires_then_another_editor_takes_it(
    cast: dict, settings: Any
) -> None:
    settings.EDIT_LOCK_SECONDS = 30
    draft = waiting(cast)
    bob, alice = cast["bob"], cast["alice"]
    assert editorial.lock_state(draft=draft, user=alice).holder is None

    before = timezone.now()
    mine = editorial.lock_acquire(draft=draft, user=bob)
    assert (mine.holder, mine.mine, mine.held_by_other) == ("bob", True, False)
    assert (
        before + timedelta(seconds=30) <= mine.expires_at <= timezone.now() + timedelta(seconds=30)
    )
    seen_by_alice = editorial.lock_state(draft=draft, user=alice)
    assert (seen_by_alice.holder, seen_by_alice.held_by_other) == ("bob", True)
    # Alice asking for it while bob's is live gets bob's lock back, unchanged.
    assert editorial.lock_acquire(draft=draft, user=alice) == seen_by_alice
    assert EditLock.objects.get(draft=draft).user == bob
    # Bob renews: same holder, later expiry.
    renewed = editorial.lock_acquire(draft=draft, user=bob)
    assert renewed.holder == "bob" and renewed.expires_at >= mine.expires_at

    # Time passes without a renewal.
    EditLock.objects.filter(draft=draft).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert editorial.lock_state(draft=draft, user=alice).holder is None
    assert not editorial.lock_state(draft=draft, user=bob).mine
    taken = editorial.lock_acquire(draft=draft, user=alice)
    assert (taken.holder, taken.mine) == ("alice", True)
    assert editorial.lock_state(draft=draft, user=bob).held_by_other

    # Releasing someone else's lock does nothing; the holder's own release frees it.
    editorial.lock_release(draft=draft, user=bob)
    assert editorial.lock_state(draft=draft, user=bob).holder == "alice"
    editorial.lock_release(draft=draft, user=alice)
    assert editorial.lock_state(draft=draft, user=bob).holder is None

    with pytest.raises(PermissionDenied):
        editorial.lock_acquire(draft=draft, user=cast["charlie"])


def test_saving_an_edit_gives_the_editors_lock_back(cast: dict, hold_queue: list) -> None:
    draft = waiting(cast)
    editorial.lock_acquire(draft=draft, user=cast["bob"])
    editorial.draft_edit(
        draft=draft, user=cast["bob"], body=text_to_html(EDITED), expected_version=1
    )
    assert not EditLock.objects.filter(draft=draft).exists()


# --- Regeneration --------------------------------------------------------------------------------


def _template_draft(cast: dict, news_template: Any) -> Draft:
    from generation import services as generation

    job = generation.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        model=fixture_model(),
        template_version=news_template,
        variables={"headline": "Bridge closes", "lede": "The bridge closes for two years."},
        settings={"max_new_tokens": 40, "temperature": 0.7},
        n_candidates=2,
    )
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded")
    candidate = Candidate.objects.get(job=job, index=0)
    Candidate.objects.filter(pk=candidate.pk).update(status=CandidateStatus.FINISHED, text="x")
    return Draft.objects.create(
        project=job.project,
        job=job,
        candidate=candidate,
        title="Bridge",
        model_output=UNRELATED,
        body=text_to_html(UNRELATED),
        status=S.CHANGES_REQUESTED,
        model=job.model,
        model_name=job.model.name,
        model_source=job.model.source,
        template_version=news_template,
        variables=job.variables,
        prompt="p",
        settings=candidate.settings,
        seed=candidate.seed,
    )


def test_regenerate_starts_a_new_job_with_the_same_template_variables_and_settings(
    cast: dict, news_template: Any, hold_queue: list
) -> None:
    draft = _template_draft(cast, news_template)
    original = draft.job
    hold_queue.clear()
    job = editorial.draft_regenerate(draft=draft, user=cast["alice"])
    assert job.pk != original.pk and job.parent_draft == draft
    assert job.template_version == news_template == original.template_version
    assert job.variables == original.variables
    assert job.settings == original.settings and job.settings["max_new_tokens"] == 40
    assert (job.n_candidates, job.model, job.created_by) == (2, original.model, cast["alice"])
    assert job.status == "queued" and job.candidates.count() == 2
    assert hold_queue == [job.pk], "the new job is enqueued"
    assert list(draft.regenerations.all()) == [job]
    event = DraftEvent.objects.get(draft=draft)
    assert (event.action, event.data, event.actor) == ("regenerate", {"job": job.pk}, cast["alice"])
    assert Draft.objects.get(pk=draft.pk).status == S.CHANGES_REQUESTED, "the draft stays"

    with pytest.raises(PermissionDenied):
        editorial.draft_regenerate(draft=draft, user=cast["charlie"])


# --- Bulk actions --------------------------------------------------------------------------------


def test_bulk_approve_does_every_row_it_may_and_reports_each_refusal(cast: dict) -> None:
    newsroom, other = cast["newsroom"], cast["other"]
    membership_set(project=other, user=cast["bob"], role=Role.REVIEWER)
    ok1, ok2 = waiting(cast), waiting(cast)
    held = make_draft(newsroom, cast["bob"], UNRELATED, status=S.HELD)
    only_reviewer = make_draft(other, cast["eve"], UNRELATED, status=S.AWAITING_REVIEW)
    missing = max(ok1.pk, ok2.pk, held.pk, only_reviewer.pk) + 1000
    ids = [ok1.pk, only_reviewer.pk, held.pk, missing, ok2.pk]

    outcomes = editorial.bulk_act(user=cast["bob"], draft_ids=ids, action="approve")
    assert [o.draft_id for o in outcomes] == ids
    by_id = {o.draft_id: o for o in outcomes}
    assert by_id[ok1.pk].ok and by_id[ok2.pk].ok
    assert not by_id[only_reviewer.pk].ok and "role" in by_id[only_reviewer.pk].message
    assert by_id[held.pk].message == "Cannot approve a draft that is held."
    assert by_id[missing].message == "No such draft."
    statuses = dict(Draft.objects.values_list("pk", "status"))
    assert statuses == {
        ok1.pk: S.APPROVED,
        ok2.pk: S.APPROVED,
        held.pk: S.HELD,
        only_reviewer.pk: S.AWAITING_REVIEW,
    }
    assert DraftEvent.objects.filter(action="approve").count() == 2


def test_bulk_actions_on_a_project_the_user_is_not_in_look_like_missing_drafts(
    cast: dict,
) -> None:
    theirs = make_draft(cast["other"], cast["eve"], UNRELATED, status=S.AWAITING_REVIEW)
    [outcome] = editorial.bulk_act(user=cast["bob"], draft_ids=[theirs.pk], action="reject")
    assert (outcome.ok, outcome.message) == (False, "No such draft.")
    assert Draft.objects.get(pk=theirs.pk).status == S.AWAITING_REVIEW


def test_bulk_reject_release_and_assign_go_through_the_same_rules(cast: dict) -> None:
    a, b = waiting(cast), make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.HELD)
    outcomes = editorial.bulk_act(
        user=cast["bob"], draft_ids=[a.pk, b.pk], action="reject", reason="Off topic"
    )
    assert all(o.ok for o in outcomes)
    assert set(DraftEvent.objects.values_list("reason", flat=True)) == {"Off topic"}

    held = make_draft(cast["newsroom"], cast["bob"], UNRELATED, status=S.HELD)
    [refused] = editorial.bulk_act(user=cast["bob"], draft_ids=[held.pk], action="release")
    assert not refused.ok and "needs a reason" in refused.message

    [system] = editorial.bulk_act(user=cast["alice"], draft_ids=[held.pk], action="pass")
    assert not system.ok and "cannot be applied in bulk" in system.message

    [viewer] = editorial.bulk_act(user=cast["dave"], draft_ids=[held.pk], action="reject")
    assert not viewer.ok and "role" in viewer.message

    theirs = make_draft(cast["other"], cast["eve"], UNRELATED, status=S.AWAITING_REVIEW)
    membership_set(project=cast["other"], user=cast["bob"], role=Role.EDITOR)
    outcomes = editorial.bulk_act(
        user=cast["bob"], draft_ids=[held.pk, theirs.pk], action="assign", assignee=cast["charlie"]
    )
    assert outcomes[0].ok
    assert not outcomes[1].ok and "charlie is not a reviewer" in outcomes[1].message
    assert Assignment.objects.get().draft_id == held.pk


@pytest.mark.django_db(transaction=True)
def test_two_editors_taking_a_free_lock_at_once_agree_on_one_holder(cast: dict) -> None:
    import threading

    from django.db import connections

    for _ in range(4):
        draft = waiting(cast)
        barrier = threading.Barrier(2)
        states: dict[str, Any] = {}

        def take(
            name: str, draft_id: int = draft.pk, barrier: Any = barrier, states: dict = states
        ) -> None:
            try:
                user = type(cast[name]).objects.get(pk=cast[name].pk)
                row = Draft.objects.select_related("project").get(pk=draft_id)
                barrier.wait(timeout=10)
                states[name] = editorial.lock_acquire(draft=row, user=user)
            except Exception as exc:  # reported below
                states[name] = exc
            finally:
                connections.close_all()

        threads = [threading.Thread(target=take, args=(n,)) for n in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        holder = EditLock.objects.select_related("user").get(draft=draft).user.username
        assert {n: getattr(s, "mine", s) for n, s in states.items()} == {
            "alice": holder == "alice",
            "bob": holder == "bob",
        }
        assert {s.holder for s in states.values()} == {holder}
