"""The approval queue and the drafts API through HTTP: who sees what, filters, sorting,
pagination with a fixed number of queries, bulk actions with their messages, 409s that say what
changed, and hostile text (draft, comments, archive documents, names) rendered inert."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from contentstudio.html import text_to_html
from contentstudio.models import Project, Role, WorkerBeat
from contentstudio.services import membership_set
from generation.models import Draft, PromptTemplate
from review import editorial, lifecycle, services
from review.lifecycle import DraftStatus
from review.models import Assignment, CheckSummary, Comment, DraftEvent, EditLock
from tests.factories import (
    ARCHIVE,
    HARBOUR,
    UNRELATED,
    logged_in,
    make_archive,
    make_draft,
    reset_indexes,
)

S = DraftStatus


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def draft(
    cast: dict, status: str = S.AWAITING_REVIEW, project: str = "newsroom", **kw: Any
) -> Draft:
    owner = cast["eve"] if project == "other" else cast["bob"]
    return make_draft(cast[project], owner, kw.pop("text", UNRELATED), status=status, **kw)


def row_ids(content: bytes | str) -> list[int]:
    text = content.decode() if isinstance(content, bytes) else content
    return [int(n) for n in re.findall(r'<tr class="queue-row"[^>]*data-draft="(\d+)"', text)]


def queue_ids(client: Client, query: str = "") -> list[int]:
    response = client.get(f"/queue/rows/?{query}")
    assert response.status_code == 200
    return row_ids(response.content)


def page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def summary(d: Draft, *, tox: float | None = None, lex: float | None = None) -> None:
    CheckSummary.objects.create(
        draft=d, draft_version=d.version, toxicity_max=tox, lexical_max=lex, semantic_share=None
    )


def age(d: Draft, minutes: int) -> Draft:
    Draft.objects.filter(pk=d.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
    return d


# --- Who sees what -------------------------------------------------------------------------------


def test_the_queue_shows_drafts_needing_action_in_the_users_projects_only(cast: dict) -> None:
    mine = {status: draft(cast, status) for status in S.values}
    theirs = draft(cast, S.AWAITING_REVIEW, project="other")
    needing = {mine[S.AWAITING_REVIEW].pk, mine[S.HELD].pk, mine[S.CHANGES_REQUESTED].pk}

    response = logged_in(cast["bob"]).get("/queue/")
    assert response.status_code == 200
    assert set(row_ids(response.content)) == needing
    assert "3 drafts" in page_text(response)
    assert set(queue_ids(logged_in(cast["eve"]))) == {theirs.pk}
    # Viewers read the queue but are not offered decisions.
    viewer = logged_in(cast["dave"]).get("/queue/rows/").content.decode()
    assert set(row_ids(viewer)) == needing
    assert 'data-can-decide="0"' in viewer and 'data-can-decide="1"' not in viewer
    assert 'data-can-decide="1"' in logged_in(cast["bob"]).get("/queue/rows/").content.decode()
    # Asking for a project one is not in shows nothing of it.
    assert queue_ids(logged_in(cast["bob"]), "project=other") == []
    # Anonymous people are sent to log in.
    assert Client().get("/queue/").status_code == 302


def test_each_filter_narrows_the_queue(cast: dict, news_template: Any) -> None:
    plain = draft(cast)
    templated = draft(cast)
    Draft.objects.filter(pk=templated.pk).update(
        template_version=news_template, model_name="other-model"
    )
    held = draft(cast, S.HELD)
    approved = draft(cast, S.APPROVED)
    elsewhere = draft(cast, project="other")
    membership_set(project=cast["other"], user=cast["bob"], role=Role.EDITOR)
    editorial.draft_assign(draft=plain, user=cast["bob"], assignee=cast["bob"])
    editorial.draft_assign(draft=held, user=cast["bob"], assignee=cast["charlie"])
    summary(plain, tox=0.05, lex=10.0)
    summary(templated, tox=0.6, lex=80.0)
    summary(held, tox=0.3, lex=40.0)
    bob = logged_in(cast["bob"])

    def ids(query: str) -> set[int]:
        return set(queue_ids(bob, query))

    everything = {plain.pk, templated.pk, held.pk, elsewhere.pk}
    assert ids("") == everything
    assert ids("project=newsroom") == everything - {elsewhere.pk}
    assert ids("project=other") == {elsewhere.pk}
    assert ids("state=held") == {held.pk}
    assert ids("state=approved&state=held") == {approved.pk, held.pk}
    assert ids("assignee=me") == {plain.pk}
    assert ids("assignee=charlie") == {held.pk}
    assert ids("assignee=none") == {templated.pk, elsewhere.pk}
    assert ids(f"template={news_template.template_id}") == {templated.pk}
    assert ids("model=other-model") == {templated.pk}
    assert ids("model=review-fixture") == everything - {templated.pk}
    assert ids("tox_min=0.25") == {templated.pk, held.pk}
    # An upper bound keeps drafts not scored yet (nothing says they are over it).
    assert ids("tox_max=0.35") == {plain.pk, held.pk, elsewhere.pk}
    assert ids("plag_min=30&plag_max=50") == {held.pk}
    assert ids("plag_min=50&tox_min=0.5&project=newsroom") == {templated.pk}


def test_each_sort_order_puts_the_rows_in_order(cast: dict) -> None:
    a = age(draft(cast), 30)
    b = age(draft(cast, project="other"), 20)
    c = age(draft(cast), 10)
    Project.objects.filter(pk=cast["other"].pk).update(name="Aardvark desk")
    membership_set(project=cast["other"], user=cast["bob"], role=Role.EDITOR)
    summary(a, tox=0.1, lex=90.0)
    summary(c, tox=0.9, lex=5.0)
    soon = timezone.now() + timedelta(hours=1)
    editorial.draft_assign(draft=c, user=cast["bob"], assignee=cast["bob"], due_at=soon)
    editorial.draft_assign(
        draft=a, user=cast["bob"], assignee=cast["bob"], due_at=soon + timedelta(hours=1)
    )
    bob = logged_in(cast["bob"])
    assert queue_ids(bob) == [a.pk, b.pk, c.pk], "oldest first by default"
    assert queue_ids(bob, "sort=newest") == [c.pk, b.pk, a.pk]
    assert queue_ids(bob, "sort=due") == [c.pk, a.pk, b.pk], "undated last"
    assert queue_ids(bob, "sort=toxicity") == [c.pk, a.pk, b.pk], "unscored last"
    assert queue_ids(bob, "sort=plagiarism") == [a.pk, c.pk, b.pk]
    assert queue_ids(bob, "sort=project") == [b.pk, a.pk, c.pk]


def test_the_queue_is_paginated_and_keeps_the_filters_in_the_links(cast: dict) -> None:
    made = [age(draft(cast), 100 - i).pk for i in range(12)]
    bob = logged_in(cast["bob"])
    first = bob.get("/queue/?page_size=10&sort=oldest")
    assert row_ids(first.content) == made[:10]
    text = page_text(first)
    assert "Page 1 of 2" in text and "12 drafts" in text
    assert re.search(r'href="\?[^"]*sort=oldest[^"]*page_size=10[^"]*&page=2"', text)
    assert row_ids(bob.get("/queue/?page_size=10&page=2").content) == made[10:]
    # A page past the end shows the last one; a page that is not a number, the first.
    assert row_ids(bob.get("/queue/?page_size=10&page=9").content) == made[10:]
    assert row_ids(bob.get("/queue/?page_size=10&page=x").content) == made[:10]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tox_min=abc", "tox_min: 'abc' is not a number."),
        ("tox_max=2", "tox_max: must be between 0 and 1."),
        ("plag_max=500", "plag_max: must be between 0 and 100."),
        ("plag_min=-1", "plag_min: must be between 0 and 100."),
        ("sort=bogus", "sort: unknown order 'bogus'."),
        ("state=bogus", "state: none of the given states exist."),
        ("template=abc", "template: 'abc' is not a template id."),
        ("page_size=lots", "page_size: 'lots' is not a number."),
    ],
)
def test_a_bad_filter_value_is_reported_and_the_queue_still_shows(
    cast: dict, query: str, message: str
) -> None:
    d = draft(cast)
    response = logged_in(cast["bob"]).get(f"/queue/?{query}")
    assert response.status_code == 200
    assert message in page_text(response)
    assert row_ids(response.content) == [d.pk], "the bad value is dropped, not the queue"
    api = api_for(cast["bob"]).get(f"/api/v1/drafts/?{query}")
    assert api.status_code == 400 and api.json()["filters"] == [message]
    assert api.json()["code"] == "invalid" and message in api.json()["message"]


def test_an_odd_page_size_is_rounded_to_an_offered_one(cast: dict) -> None:
    for _ in range(12):
        draft(cast)
    assert len(queue_ids(logged_in(cast["bob"]), "page_size=7")) == 10


def test_the_queue_costs_the_same_number_of_queries_for_10_or_100_rows(
    cast: dict, news_template: Any
) -> None:
    membership_set(project=cast["other"], user=cast["bob"], role=Role.EDITOR)
    for i in range(110):
        d = draft(cast, project="other" if i % 3 == 0 else "newsroom")
        Draft.objects.filter(pk=d.pk).update(template_version=news_template)
        summary(d, tox=i / 200, lex=float(i % 100))
        if i % 2:
            Assignment.objects.create(draft=d, assignee=cast["charlie"], due_at=timezone.now())
        if i % 5 == 0:
            now = timezone.now()
            EditLock.objects.create(
                draft=d, user=cast["alice"], acquired_at=now, expires_at=now + timedelta(60)
            )
    bob = logged_in(cast["bob"])
    counts = {}
    for url in ("/queue/", "/queue/rows/"):
        for size in (10, 100):
            bob.get(f"{url}?page_size={size}")  # warm the session
            with CaptureQueriesContext(connection) as queries:
                response = bob.get(f"{url}?page_size={size}")
            assert len(row_ids(response.content)) == size
            assert "✎ alice" in response.content.decode() and "charlie" in response.content.decode()
            # The worker banner (every signed-in page) reads the worker table when its
            # 5-second cache runs out: whether that falls in this request is a matter of time,
            # not of rows, so it is left out of the count.
            counts[url, size] = sum(
                WorkerBeat._meta.db_table not in q["sql"] for q in queries.captured_queries
            )
    assert counts["/queue/", 10] == counts["/queue/", 100], counts
    assert counts["/queue/rows/", 10] == counts["/queue/rows/", 100], counts
    assert counts["/queue/rows/", 100] <= 12, counts


# --- Bulk actions through the page ---------------------------------------------------------------


def test_bulk_approve_through_the_queue_reports_each_refused_row(cast: dict) -> None:
    ok1, ok2 = draft(cast), draft(cast)
    held = draft(cast, S.HELD)
    theirs = draft(cast, project="other")
    bob = logged_in(cast["bob"])
    response = bob.post(
        "/queue/bulk/",
        {"action": "approve", "draft": [ok1.pk, held.pk, theirs.pk, ok2.pk], "q": "sort=newest"},
        follow=True,
    )
    assert response.redirect_chain == [("/queue/?sort=newest", 302)]
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "2 of 4 drafts done.",
        f"Draft {held.pk}: Cannot approve a draft that is held.",
        f"Draft {theirs.pk}: No such draft.",
    ]
    assert set(Draft.objects.filter(status=S.APPROVED).values_list("pk", flat=True)) == {
        ok1.pk,
        ok2.pk,
    }
    # The approved rows left the queue shown after the redirect.
    assert set(row_ids(response.content)) == {held.pk}


def test_bulk_assign_and_its_mistakes_come_back_as_messages(cast: dict) -> None:
    a, b = draft(cast), draft(cast)
    bob = logged_in(cast["bob"])

    def post(data: dict) -> list[str]:
        response = bob.post("/queue/bulk/", data, follow=True)
        assert response.status_code == 200
        return [str(m) for m in response.context["messages"]]

    assert post({"action": "assign", "draft": [a.pk, b.pk], "assignee": "charlie"}) == [
        "2 of 2 drafts done."
    ]
    assert set(Assignment.objects.values_list("assignee__username", flat=True)) == {"charlie"}
    assert post({"action": "assign", "draft": [a.pk], "assignee": "nobody"}) == [
        "No user 'nobody'."
    ]
    assert post(
        {"action": "assign", "draft": [a.pk], "assignee": "charlie", "due_at": "tomorrow"}
    ) == ["'tomorrow' is not a date and time."]
    assert post({"action": "assign", "draft": [a.pk], "assignee": "eve"}) == [
        f"Draft {a.pk}: eve is not a reviewer, editor or admin of this project."
    ]
    # No one chosen: nothing is unassigned behind the editor's back.
    assert post({"action": "assign", "draft": [b.pk], "assignee": ""}) == [
        f"Draft {b.pk}: Choose who to assign the draft to."
    ]
    assert Assignment.objects.get(draft=b).assignee == cast["charlie"]
    assert post({"action": "approve"}) == ["Select at least one draft."]
    assert post({"action": "approve", "draft": [a.pk]}) == ["1 of 1 drafts done."]
    viewer = logged_in(cast["dave"]).post(
        "/queue/bulk/", {"action": "reject", "draft": [b.pk]}, follow=True
    )
    assert [str(m) for m in viewer.context["messages"]] == [
        f"Draft {b.pk}: This needs the editor role or higher."
    ]


# --- Decisions on the draft page -----------------------------------------------------------------


def test_an_impossible_or_stale_decision_on_the_page_is_a_message_or_a_409_never_a_500(
    cast: dict,
) -> None:
    d = draft(cast, S.APPROVED)
    bob = logged_in(cast["bob"])
    url = f"/p/newsroom/drafts/{d.pk}/action/"
    response = bob.post(url, {"action": "approve", "version": "1"}, follow=True)
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "Cannot approve a draft that is approved."
    ]
    as_json = bob.post(url, {"action": "approve"}, headers={"accept": "application/json"})
    assert as_json.status_code == 409
    assert as_json.json() == {"detail": "Cannot approve a draft that is approved."}
    stale = bob.post(
        url, {"action": "reopen", "version": "0"}, headers={"accept": "application/json"}
    )
    assert stale.status_code == 409
    assert stale.json()["current"] == {"status": "approved", "version": 1, "title": d.title}
    unknown = bob.post(url, {"action": "explode"}, headers={"accept": "application/json"})
    assert unknown.status_code == 409
    viewer = logged_in(cast["dave"]).post(url, {"action": "reopen"}, follow=True)
    assert [str(m) for m in viewer.context["messages"]] == ["This needs the editor role or higher."]
    viewer_json = logged_in(cast["dave"]).post(
        url, {"action": "reopen"}, headers={"accept": "application/json"}
    )
    assert viewer_json.status_code == 403
    assert logged_in(cast["eve"]).post(url, {"action": "reopen"}).status_code == 404
    ok = bob.post(url, {"action": "reopen", "version": "1"}, headers={"accept": "application/json"})
    assert ok.json() == {"status": "awaiting_review", "version": 2, "action": "reopen"}


def test_a_stale_save_on_the_page_shows_the_conflict_with_the_difference_once(
    cast: dict, hold_queue: list
) -> None:
    d = draft(cast)
    editorial.draft_edit(
        draft=d,
        user=cast["alice"],
        body=text_to_html(UNRELATED.replace("chess", "bridge")),
        expected_version=1,
    )
    lifecycle.draft_transition(draft=d, action="pass", user=None)
    bob = logged_in(cast["bob"])
    mine = UNRELATED.replace("tea", "coffee")
    response = bob.post(
        f"/p/newsroom/drafts/{d.pk}/edit/",
        {"version": "1", "body": text_to_html(mine) + "<img src=x onerror=alert(1)>"},
        follow=True,
    )
    body = response.content.decode()
    conflict = re.search(r'<section class="conflict.*?</section>', body, re.S)
    assert conflict, "the conflict is shown"
    section = conflict.group(0)
    assert "alice changed this draft" in html.unescape(section)
    # From bob's text to the current one: his change out, alice's in.
    assert "<del>coffee</del><ins>tea</ins>" in section
    assert "<del>chess</del><ins>bridge</ins>" in section
    # What bob wrote is kept for him to merge, sanitised.
    assert "onerror" not in body and "<img" not in body
    assert "coffee" in re.search(r'<template id="conflict-theirs">(.*?)</template>', body).group(1)
    # Shown once.
    assert 'class="conflict' not in bob.get(f"/p/newsroom/drafts/{d.pk}/").content.decode()


def test_the_draft_page_diffs_the_model_output_with_the_current_text_and_revisions(
    cast: dict, hold_queue: list
) -> None:
    raw = "The chess club  met on Monday.\n \nIt was sunny."
    d = draft(cast, text=raw)
    bob = logged_in(cast["bob"])

    def model_diff(query: str = "") -> str:
        page = bob.get(f"/p/newsroom/drafts/{d.pk}/activity/{query}").content.decode()
        return re.search(r'<div class="diff pre" id="model-diff">(.*?)</div>', page, re.S).group(1)

    unedited = model_diff()
    assert "<ins>" not in unedited and "<del>" not in unedited, unedited
    editorial.draft_edit(
        draft=d,
        user=cast["bob"],
        body=text_to_html("The chess club met on Tuesday.\n\nIt was sunny. Bob was there."),
        expected_version=1,
    )
    edited = model_diff("?rev_a=1&rev_b=2")
    assert re.findall(r"<(ins|del)>(.*?)</\1>", edited) == [
        ("del", "Monday."),
        ("ins", "Tuesday."),
        ("ins", " Bob was there."),
    ]
    page = bob.get(f"/p/newsroom/drafts/{d.pk}/activity/?rev_a=1&rev_b=2").content.decode()
    revisions = re.search(r'id="revision-diff">(.*?)</div>', page, re.S).group(1)
    assert "<del>Monday.</del><ins>Tuesday.</ins>" in revisions


def test_the_draft_page_shows_who_holds_the_edit_lock_and_the_queue_neighbours(
    cast: dict,
) -> None:
    first, middle, last = (age(draft(cast), m) for m in (30, 20, 10))
    editorial.lock_acquire(draft=middle, user=cast["bob"])
    alice = logged_in(cast["alice"])
    page = alice.get(f"/p/newsroom/drafts/{middle.pk}/?q=sort%3Doldest").content.decode()
    assert "Being edited by <strong>bob</strong>" in page
    assert f'data-prev-url="/p/newsroom/drafts/{first.pk}/?q=sort%3Doldest"' in page
    assert f'data-next-url="/p/newsroom/drafts/{last.pk}/?q=sort%3Doldest"' in page
    newest = alice.get(f"/p/newsroom/drafts/{middle.pk}/?q=sort%3Dnewest").content.decode()
    assert f'data-next-url="/p/newsroom/drafts/{first.pk}/' in newest
    # Bob does not see a warning about himself; once his lock expires nobody does.
    assert (
        "Being edited by"
        not in logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{middle.pk}/").content.decode()
    )
    EditLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "Being edited by" not in alice.get(f"/p/newsroom/drafts/{middle.pk}/").content.decode()
    # The queue row shows the lock while it lasts.
    editorial.lock_acquire(draft=middle, user=cast["bob"])
    assert "✎ bob" in alice.get("/queue/rows/").content.decode()


def test_the_draft_page_lock_endpoint_takes_and_gives_back(cast: dict) -> None:
    d = draft(cast)
    url = f"/p/newsroom/drafts/{d.pk}/lock/"
    taken = logged_in(cast["bob"]).post(url).json()
    assert taken["holder"] == "bob" and taken["mine"] is True
    seen = logged_in(cast["alice"]).post(url).json()
    assert seen["holder"] == "bob" and seen["mine"] is False
    assert logged_in(cast["charlie"]).post(url).status_code == 403
    released = logged_in(cast["bob"]).post(url, {"release": "1"}).json()
    assert released == {"holder": None, "mine": False, "expires_at": None}


def test_run_checks_again_is_offered_only_where_the_checks_can_run(cast: dict) -> None:
    bob = logged_in(cast["bob"])
    for status in S.values:
        d = draft(cast, status)
        offered = "Run checks again" in bob.get(f"/p/newsroom/drafts/{d.pk}/").content.decode()
        assert offered == (status in lifecycle.ACTIONS["check"].moves and status != S.GENERATED), (
            status
        )


def test_a_reply_to_a_comment_of_another_draft_is_refused_on_the_page(cast: dict) -> None:
    d, other = draft(cast), draft(cast)
    foreign = editorial.comment_add(draft=other, user=cast["bob"], body="elsewhere")
    response = logged_in(cast["charlie"]).post(
        f"/p/newsroom/drafts/{d.pk}/comment/", {"body": "Reply", "parent": foreign.pk}, follow=True
    )
    assert not Comment.objects.filter(draft=d).exists()
    assert [str(m) for m in response.context["messages"]]


# --- The drafts API ------------------------------------------------------------------------------


def test_the_api_lists_and_shows_drafts_of_the_users_projects(cast: dict) -> None:
    waiting, approved = draft(cast), draft(cast, S.APPROVED)
    theirs = draft(cast, project="other")
    summary(waiting, tox=0.2, lex=12.0)
    api = api_for(cast["dave"])
    listed = api.get("/api/v1/drafts/").json()
    assert listed["count"] == 2
    assert {d["id"] for d in listed["results"]} == {waiting.pk, approved.pk}
    by_id = {d["id"]: d for d in listed["results"]}
    assert by_id[waiting.pk]["summary"]["lexical_max"] == 12.0
    assert by_id[approved.pk]["summary"] is None
    assert [d["id"] for d in api.get("/api/v1/drafts/?state=approved").json()["results"]] == [
        approved.pk
    ]
    detail = api.get(f"/api/v1/drafts/{waiting.pk}/").json()
    assert detail["text"] == UNRELATED and detail["body"] == text_to_html(UNRELATED)
    assert detail["status"] == "awaiting_review" and detail["checks"] == []
    assert api.get(f"/api/v1/drafts/{theirs.pk}/").status_code == 404
    assert api.get("/api/v1/drafts/999999/").status_code == 404
    assert APIClient().get("/api/v1/drafts/").status_code == 401


def test_api_transitions_answer_409_when_impossible_or_stale_and_403_for_low_roles(
    cast: dict,
) -> None:
    d = draft(cast)
    bob = api_for(cast["bob"])
    url = f"/api/v1/drafts/{d.pk}/transition/"
    assert bob.post(url, {"action": "publish"}, format="json").status_code == 409
    assert bob.post(url, {"action": "publish"}, format="json").json() == {
        "code": "invalid_transition",
        "message": "Cannot publish a draft that is awaiting review.",
        "detail": "Cannot publish a draft that is awaiting review.",
    }
    assert (
        api_for(cast["charlie"]).post(url, {"action": "approve"}, format="json").status_code == 403
    )
    assert api_for(cast["eve"]).post(url, {"action": "approve"}, format="json").status_code == 404
    assert bob.post(url, {"action": "pass"}, format="json").status_code == 403
    assert bob.post(url, {"action": "explode"}, format="json").status_code == 400
    assert bob.post(url, {"action": "release"}, format="json").status_code == 409

    # Alice approves first; bob's click on what he saw (version 1) is refused with the news.
    first = api_for(cast["alice"]).post(url, {"action": "approve", "version": 1}, format="json")
    assert first.status_code == 200 and first.json()["status"] == "approved"
    late = bob.post(url, {"action": "reject", "version": 1, "reason": "no"}, format="json")
    assert late.status_code == 409
    assert late.json()["current"] == {"status": "approved", "version": 2, "title": d.title}
    assert "version 1 -> 2" in late.json()["detail"]
    assert list(DraftEvent.objects.filter(draft=d).values_list("action", flat=True)) == ["approve"]


def test_api_edit_answers_409_with_the_current_text_and_the_difference(
    cast: dict, hold_queue: list
) -> None:
    d = draft(cast)
    url = f"/api/v1/drafts/{d.pk}/edit/"
    alices = UNRELATED.replace("served tea", "served lemonade")
    saved = api_for(cast["alice"]).post(
        url, {"body": text_to_html(alices), "version": 1, "title": "Chess"}, format="json"
    )
    assert saved.status_code == 200, saved.content
    assert (saved.json()["status"], saved.json()["title"]) == ("checking", "Chess")
    late = api_for(cast["bob"]).post(
        url, {"body": text_to_html(UNRELATED + " Extra."), "version": 1}, format="json"
    )
    assert late.status_code == 409
    current = late.json()["current"]
    assert current["body"] == text_to_html(alices) and current["changed_by"] == "alice"
    assert current["version"] == 3 and current["status"] == "checking"
    changes = [(p["op"], p["text"].strip()) for p in current["diff"] if p["op"] != "equal"]
    assert changes == [("delete", "tea"), ("insert", "lemonade"), ("delete", "Extra.")]
    # Not editable while the checks run, whatever the version.
    busy = api_for(cast["bob"]).post(url, {"body": "<p>x</p>", "version": 3}, format="json")
    assert busy.status_code == 409 and "cannot be edited" in busy.json()["detail"]
    empty = api_for(cast["bob"]).post(url, {"body": "", "version": 3}, format="json")
    assert empty.status_code in {400, 409}
    assert (
        api_for(cast["charlie"])
        .post(url, {"body": "<p>x</p>", "version": 3}, format="json")
        .status_code
        == 403
    )


def test_api_comments_are_threaded_and_viewers_cannot_write(cast: dict) -> None:
    d = draft(cast)
    other = draft(cast)
    url = f"/api/v1/drafts/{d.pk}/comments/"
    charlie = api_for(cast["charlie"])
    first = charlie.post(url, {"body": "Source?", "kind": "recommend_changes"}, format="json")
    assert first.status_code == 201
    reply = api_for(cast["bob"]).post(
        url, {"body": "Added.", "parent": first.json()["id"]}, format="json"
    )
    assert reply.status_code == 201 and reply.json()["parent"] == first.json()["id"]
    listed = api_for(cast["dave"]).get(url).json()
    assert [(c["author"], c["kind"], c["body"], c["parent"]) for c in listed] == [
        ("charlie", "recommend_changes", "Source?", None),
        ("bob", "comment", "Added.", first.json()["id"]),
    ]
    foreign = editorial.comment_add(draft=other, user=cast["bob"], body="elsewhere")
    assert charlie.post(url, {"body": "x", "parent": foreign.pk}, format="json").status_code == 400
    assert charlie.post(url, {"body": "   "}, format="json").status_code == 400
    assert charlie.post(url, {"body": "x", "kind": "shout"}, format="json").status_code == 400
    assert api_for(cast["dave"]).post(url, {"body": "hi"}, format="json").status_code == 403
    assert api_for(cast["eve"]).get(url).status_code == 404
    assert Comment.objects.filter(draft=d).count() == 2


# --- Hostile text stays inert --------------------------------------------------------------------

PAYLOAD = '<script>alert("xss")</script><img src=x onerror=alert(1)>"><svg onload=alert(2)>'
RAW = ["<script>alert(", "<img src=x onerror", "<svg onload", 'href="javascript:']


def assert_inert(content: bytes | str, *, expect: int = 1) -> None:
    text = content.decode() if isinstance(content, bytes) else content
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the page unescaped"
    # and it was rendered, escaped (so the test is not passing on an empty page)
    assert text.count("&lt;script&gt;alert(") >= expect


def test_hostile_names_titles_and_comments_are_escaped_on_the_queue_and_draft_pages(
    cast: dict, make_user: Any, news_template: Any, hold_queue: list
) -> None:
    mallory = make_user(f"mallory{PAYLOAD}")
    membership_set(project=cast["newsroom"], user=mallory, role=Role.EDITOR)
    Project.objects.filter(pk=cast["newsroom"].pk).update(name=f"Newsroom {PAYLOAD}")
    PromptTemplate.objects.filter(pk=news_template.template_id).update(name=f"News {PAYLOAD}")
    d = draft(cast, title=f"Title {PAYLOAD}", text=f"Body text {PAYLOAD} ends here.")
    Draft.objects.filter(pk=d.pk).update(
        template_version=news_template,
        model_name=f"model {PAYLOAD}",
        variables={"headline": PAYLOAD},
        prompt=f"Prompt {PAYLOAD}",
    )
    d.refresh_from_db()
    editorial.draft_assign(draft=d, user=cast["bob"], assignee=mallory)
    editorial.lock_acquire(draft=d, user=mallory)
    first = editorial.comment_add(draft=d, user=cast["charlie"], body=f"Comment {PAYLOAD}")
    editorial.comment_add(draft=d, user=mallory, body=f"Reply {PAYLOAD}", parent=first)
    editorial.draft_edit(
        draft=d,
        user=mallory,
        body=text_to_html(f"Edited {PAYLOAD} text.") + PAYLOAD,
        expected_version=d.version,
        note=f"Note {PAYLOAD}",
    )
    lifecycle.draft_transition(draft=d, action="hold", user=None, reason=f"Held {PAYLOAD}")
    lifecycle.draft_transition(draft=d, action="release", user=mallory, reason=f"Why {PAYLOAD}")

    alice = logged_in(cast["alice"])
    assert_inert(alice.get("/queue/").content, expect=4)  # title, project, template, model...
    assert_inert(alice.get("/queue/rows/").content, expect=3)
    page = alice.get(f"/p/newsroom/drafts/{d.pk}/").content.decode()
    assert_inert(page, expect=8)
    assert_inert(alice.get(f"/p/newsroom/drafts/{d.pk}/panel/").content, expect=2)
    activity = alice.get(f"/p/newsroom/drafts/{d.pk}/activity/?rev_a=1&rev_b=2").content
    assert_inert(activity, expect=5)  # comments, note, history reasons, diffs
    # The editor's copy of the body is sanitised HTML: the text stays, the tags do not.
    template = re.search(r'<template id="body-html">(.*?)</template>', page, re.S).group(1)
    assert "&lt;script&gt;" in template and "<img" not in template and "<svg" not in template


def test_hostile_archive_documents_are_escaped_in_matches_and_hold_reasons(
    cast: dict, hold_queue: list
) -> None:
    reset_indexes()
    source = dict(ARCHIVE[HARBOUR])
    source.update(
        title=f"Bridge {PAYLOAD}",
        citation=f"Herald {PAYLOAD}",
        license=f"CC {PAYLOAD}",
        author=f"Mina {PAYLOAD}",
        source_url="javascript:alert(3)",
        text=source["text"] + f" Someone wrote {PAYLOAD} on the fence of the bridge.",
    )
    make_archive(cast["newsroom"], [source, ARCHIVE[HARBOUR + 1]])
    d = draft(cast, S.CHECKING, text=source["text"])
    services.draft_checks_run(draft_id=d.pk, version=d.version)
    d.refresh_from_db()
    assert d.status == S.HELD, "a full copy is held for a person"
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{d.pk}/")
    content = page.content.decode()
    assert "Copied passages" in content and "Held for a person" in content
    assert_inert(content, expect=6)
    assert 'href="javascript:' not in content
    api = api_for(cast["bob"]).get(f"/api/v1/drafts/{d.pk}/").json()
    lexical = next(c for c in api["checks"] if c["kind"] == "lexical")
    assert lexical["scores"]["best_source"] == f"Bridge {PAYLOAD}", "the API keeps the data as is"
    reset_indexes()


def test_a_refused_edit_gives_the_text_back_with_the_reason(cast: dict) -> None:
    d = draft(cast)
    bob = logged_in(cast["bob"])
    too_long = "<p>" + "word " * 50_000 + "</p>"
    response = bob.post(
        f"/p/newsroom/drafts/{d.pk}/edit/",
        {"body": too_long, "version": d.version},
        follow=True,
    )
    page = response.content.decode()
    assert "Not saved" in page and "At most" in page
    assert page.count("word word word") > 0, "what they wrote comes back in the editor"
    d.refresh_from_db()
    assert "word word word" not in d.body
