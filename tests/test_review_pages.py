"""Review pages and the project websocket: the draft page shows what the checks found (scores,
highlighted spans, copied passages side by side with their source), untrusted text stays inert
everywhere, the policy page is for admins, non-members see nothing, and the project socket
delivers check events to members only."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from contentstudio.routing import websocket_urlpatterns
from review import archive, holds, services
from review.checks.text import sentences
from review.models import ArchiveDocument, ImportRun, Policy
from tests.factories import (
    ARCHIVE,
    FLOOD,
    FLOOD_PARAPHRASE,
    HARBOUR,
    UNRELATED,
    checked,
    logged_in,
    make_archive,
    make_draft,
    refusal_code,
)

THREAT = "I swear I will hunt you down."
EMAIL_SENTENCE = "Write to jane.doe@example.com with tips."
SCRIPT = '<script>alert("x")</script>'
IMG = '"><img src=x onerror=alert(1)>'


pytestmark = pytest.mark.usefixtures("fresh_indexes")


def marks(page: str) -> list[tuple[str, str]]:
    """(css classes, text) of every highlight in the draft text, unescaped."""
    body = page.split('id="draft-text">', 1)[1].split("</div>", 1)[0]
    return [
        (classes, html.unescape(text))
        for classes, text in re.findall(
            r'<mark class="hl ([^"]*)" title="[^"]*">(.*?)</mark>', body
        )
    ]


def assert_inert(page: str, *payloads: str) -> None:
    """None of the payloads appears as markup, and each appears escaped."""
    for payload in payloads:
        assert payload not in page, payload
        assert html.escape(payload) in page, payload
    assert "<script>alert" not in page and "<img src=x" not in page


# --- The draft page -----------------------------------------------------------------------------


def test_the_draft_page_shows_scores_highlights_reasons_and_sources_side_by_side(
    cast: dict, hold_queue: list
) -> None:
    project = cast["newsroom"]
    make_archive(project)
    copied = ARCHIVE[HARBOUR]["text"]
    text = f"{UNRELATED} {THREAT} {EMAIL_SENTENCE}\n\n{copied}\n\n{FLOOD_PARAPHRASE}"
    draft = checked(make_draft(project, cast["bob"], text, title="Weekend round-up"), hold_queue)
    assert draft.status == "held"
    page = logged_in(cast["dave"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    found = marks(page)
    # the toxic sentence, the e-mail address, the copied story and the paraphrases
    assert ("hl-toxicity", THREAT) in found
    assert ("hl-ethics", "jane.doe@example.com") in found
    for sentence in sentences(FLOOD_PARAPHRASE):
        assert ("hl-semantic", sentence.text) in found
    copied_marks = "".join(t for classes, t in found if "hl-plagiarism" in classes)
    assert copied_marks == copied[:-1]  # up to its last word
    assert ("hl-plagiarism hl-semantic", copied.split(". ")[0] + ".") in found
    unmarked = re.sub(r"<mark [^>]*>.*?</mark>", "", page.split('id="draft-text">')[1])
    assert html.escape(UNRELATED.split(". ")[0]) in unmarked  # clean text is not marked
    # the legend counts spans per kind
    legend = dict(re.findall(r'<span class="hl hl-(\w+)">[^<]*</span> (\d+)</li>', page))
    assert legend == {"toxicity": "1", "ethics": "1", "plagiarism": "1", "semantic": "7"}
    # scores of every toxicity category, three decimals
    tox = draft.checks.get(kind="toxicity")
    for category in holds.DEFAULT_TOXICITY_THRESHOLDS:
        assert f"<th>{category}</th>" in page
    assert f'<td>{tox.scores["toxicity"]:.3f} <span class="badge status-failed">over' in page
    # the reasons for the hold
    reasons = re.findall(r"<li>(.*?)</li>", page.split('class="hold-reasons"')[1].split("</ul>")[0])
    assert [html.unescape(r) for r in reasons] == draft.events.get(action="hold").data["reasons"]
    assert any(r.startswith("Ethics rule (pii): E-mail address") for r in reasons)
    # the copied passage beside its source, with citation, author, license and link
    harbour = ArchiveDocument.objects.get(title=ARCHIVE[HARBOUR]["title"])
    copies = page.split('id="matches-h"')[1].split("</section>")[0]
    assert (
        "of the draft comes from this source, <strong>100%</strong> of the source is reused"
        in copies
    )
    assert f'<a href="/p/newsroom/archive/{harbour.pk}/">{html.escape(harbour.title)}</a>' in copies
    assert (
        "Port Herald, 3 March 2021 · Mina Ortega · License: © Port Herald, all rights reserved"
        in copies
    )
    assert '<a href="https://example.org/port-herald/bridge" rel="nofollow noopener">' in copies
    assert copies.count(f'<mark class="hl hl-plagiarism">{html.escape(copied[:-1])}</mark>') == 2
    # each paraphrase beside the archive sentence it restates
    paraphrases = page.split('id="para-h"')[1].split("</section>")[0]
    flood = ARCHIVE[FLOOD]
    for source_sentence in [s.text for s in sentences(flood["text"])][:3]:
        assert f"<p>{html.escape(source_sentence)}</p>" in paraphrases
    assert f"{flood['citation']} · License: {flood['license']}" in paraphrases
    assert re.search(r"cosine 0\.9\d", paraphrases)


def test_the_draft_panel_fragment_shows_the_same_checks(cast: dict, hold_queue: list) -> None:
    draft = checked(make_draft(cast["newsroom"], cast["bob"], f"{UNRELATED} {THREAT}"), hold_queue)
    client = logged_in(cast["charlie"])
    panel = client.get(f"/p/newsroom/drafts/{draft.pk}/panel/").content.decode()
    assert "<html" not in panel
    assert ("hl-toxicity", THREAT) in marks(panel)
    assert set(re.findall(r'data-kind="(\w+)"', panel)) == {
        "toxicity",
        "ethics",
        "lexical",
        "semantic",
    }


def test_a_check_that_did_not_run_is_shown_with_its_reason(
    cast: dict, hold_queue: list, settings: Any, tmp_path: Any
) -> None:
    settings.TOXICITY_CHECKPOINT = str(tmp_path / "gone.ckpt")
    settings.TOXICITY_CONFIG_DIR = str(tmp_path)
    draft = checked(make_draft(cast["newsroom"], cast["bob"], UNRELATED), hold_queue)
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    section = page.split('data-kind="toxicity"')[1].split("</section>")[0]
    assert '<span class="badge status-failed">not run</span>' in section
    assert "gone.ckpt" in section
    assert "The toxicity check could not run" in page


# --- Untrusted text stays inert -----------------------------------------------------------------


def test_markup_in_draft_text_and_archive_fields_is_shown_as_text(
    cast: dict, hold_queue: list
) -> None:
    project = cast["newsroom"]
    story = f"{ARCHIVE[HARBOUR]['text']} Officials said {SCRIPT} was not a threat."
    run = services.import_rows_direct(
        project=project,
        rows=[
            archive.RawRow(
                "row 1",
                {
                    "text": story,
                    "title": f"Bridge {SCRIPT}",
                    "citation": f"Herald {IMG}",
                    "author": "<b>Mina</b>",
                    "license": "<i>CC</i>",
                    "source_url": "javascript:alert(document.cookie)",
                    "published_date": "<svg onload=alert(1)>",
                },
            )
        ],
        source_name=f"upload {IMG}.jsonl",
    )
    assert [e["message"][:30] for e in run.errors] == [
        "source_url 'javascript:alert(d",
        "published_date '<svg onload=al",
    ]
    document = ArchiveDocument.objects.get()
    assert document.source_url == ""
    text = f"{UNRELATED} {IMG}\n\n{story}"
    draft = checked(make_draft(project, cast["bob"], text, title=f"Title {SCRIPT}"), hold_queue)
    client = logged_in(cast["bob"])
    draft_page = client.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert draft.checks.get(kind="lexical").scores["max_similarity"] == 100.0
    assert 'href="javascript:' not in draft_page
    assert_inert(draft_page, SCRIPT, IMG, "<b>Mina</b>", "<i>CC</i>")
    archive_page = client.get("/p/newsroom/archive/").content.decode()
    assert_inert(archive_page, f"Bridge {SCRIPT}", IMG, "<i>CC</i>", "<svg onload=alert(1)>")
    document_page = client.get(f"/p/newsroom/archive/{document.pk}/").content.decode()
    assert_inert(document_page, SCRIPT, IMG, "<b>Mina</b>", "<i>CC</i>")
    assert 'href="javascript:' not in document_page
    status = client.get(f"/p/newsroom/archive/imports/{run.pk}/")
    assert status["Content-Type"] == "application/json"


def test_markup_in_policy_fields_is_shown_as_text(cast: dict) -> None:
    project = cast["newsroom"]
    current = services.policy_get(project=project)
    rules = current.rules | {
        "blocked_terms": [f"</textarea>{SCRIPT}"],
        "regexes": [{"name": IMG, "pattern": "embargo"}],
        "required_disclosures": [f"</textarea>{IMG}"],
    }
    services.policy_update(
        project=project,
        user=cast["alice"],
        toxicity_thresholds=current.toxicity_thresholds,
        lexical_threshold=current.lexical_threshold,
        semantic_threshold=current.semantic_threshold,
        semantic_share=current.semantic_share,
        blocking_rule_kinds=current.blocking_rule_kinds,
        rules=rules,
    )
    for user in ["alice", "dave"]:
        page = logged_in(cast[user]).get("/p/newsroom/policy/").content.decode()
        assert_inert(page, f"</textarea>{SCRIPT}", IMG)
    # and in the error summary, which quotes what was typed
    response = logged_in(cast["alice"]).post(
        "/p/newsroom/policy/", _policy_form(regexes=f"{SCRIPT}: (", lexical_threshold=IMG)
    )
    assert response.status_code == 400
    assert_inert(response.content.decode(), SCRIPT, IMG)


# --- The policy page ------------------------------------------------------------------------------


def _policy_form(**changes: str) -> dict[str, Any]:
    form: dict[str, Any] = {
        f"tox_{c}": str(v) for c, v in holds.DEFAULT_TOXICITY_THRESHOLDS.items()
    } | {
        "lexical_threshold": "50",
        "semantic_threshold": "0.8",
        "semantic_share": "0.25",
        "semantic_source_share": "0.25",
        "blocking_rule_kinds": list(holds.DEFAULT_BLOCKING_RULE_KINDS),
        "blocked_terms": "fuck\nshit",
        "regexes": "",
        "required_disclosures": "",
        "pii_email": "on",
        "pii_phone": "on",
        "pii_card": "on",
        "claims_percentages": "on",
    }
    return form | changes


def test_an_admin_saves_the_policy_and_it_applies_to_the_next_check(
    cast: dict, hold_queue: list
) -> None:
    client = logged_in(cast["alice"])
    page = client.get("/p/newsroom/policy/").content.decode()
    assert (
        'name="lexical_threshold" type="number" step="any" min="1" max="100" value="50.0"' in page
    )
    assert "<fieldset disabled>" not in page and "Save policy" in page
    response = client.post(
        "/p/newsroom/policy/",
        _policy_form(
            tox_threat="0.9",
            lexical_threshold="70",
            semantic_share="0.5",
            blocking_rule_kinds=["blocked_term", "regex"],
            blocked_terms="embargo\n  \nscoop",
            regexes="date: \\b2099\\b",
            required_disclosures="Written with AI assistance.",
            pii_phone="",
        ),
    )
    assert response.status_code == 302 and response["Location"] == "/p/newsroom/policy/"
    saved = Policy.objects.get(project=cast["newsroom"])
    assert saved.toxicity_thresholds["threat"] == 0.9
    assert (saved.lexical_threshold, saved.semantic_share) == (70.0, 0.5)
    assert saved.blocking_rule_kinds == ["blocked_term", "regex"]
    assert saved.rules == {
        "blocked_terms": ["embargo", "scoop"],
        "regexes": [{"name": "date", "pattern": "\\b2099\\b"}],
        "pii": {"email": True, "phone": False, "card": True, "id_number": False},
        "required_disclosures": ["Written with AI assistance."],
        "claims": {
            "percentages": True,
            "statistics": False,
            "quotations": False,
            "research": False,
        },
    }
    assert saved.updated_by == cast["alice"]
    page = client.get("/p/newsroom/policy/").content.decode()
    assert "Policy saved" in page
    assert "embargo\nscoop</textarea>" in page
    # the next draft is checked by the new rules: a blocked term holds, an e-mail does not
    draft = checked(
        make_draft(cast["newsroom"], cast["bob"], f"{UNRELATED} The scoop: {EMAIL_SENTENCE}"),
        hold_queue,
    )
    assert draft.status == "held"
    assert draft.events.get(action="hold").data["reasons"] == [
        "Ethics rule (blocked term): Blocked term: scoop"
    ]


def test_bad_policy_input_is_refused_with_errors_named_by_field(cast: dict) -> None:
    client = logged_in(cast["alice"])
    response = client.post(
        "/p/newsroom/policy/",
        _policy_form(
            tox_insult="2",
            tox_threat="",
            lexical_threshold="lots",
            semantic_threshold="0.3",
            semantic_share="-1",
            semantic_source_share="1.5",
            blocking_rule_kinds=["pii", "gossip"],
            regexes="broken: (unclosed",
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    summary = page.split('class="error-summary"')[1].split("</div>")[0]
    # named by the labels the page shows, never by internal keys ("lexical_threshold")
    named = dict(re.findall(r"<li><strong>(.*?)</strong>: (.*?)</li>", summary))
    assert set(named) == {
        "Toxicity: insult",
        "Toxicity: threat",
        "Share of a source passage in the draft (%)",
        "Cosine at which a sentence restates a source",
        "Share of the draft&#x27;s sentences restating one source",
        "Share of that source&#x27;s sentences restated",
        "Hold a draft on hits of",
        "Ethics rules",
    }
    assert named["Toxicity: insult"] == "Must be between 0 and 1."
    assert named["Share of that source&#x27;s sentences restated"] == "Must be between 0 and 1."
    assert named["Share of a source passage in the draft (%)"] == (
        "&#x27;lots&#x27; is not a number."
    )
    assert named["Hold a draft on hits of"] == "Unknown rule kinds: gossip."
    assert "broken" in named["Ethics rules"]
    # nothing was saved
    assert services.policy_get(project=cast["newsroom"]).lexical_threshold == 50.0


@pytest.mark.parametrize("user", ["bob", "charlie", "dave"])
def test_members_below_admin_see_the_policy_but_cannot_save_it(cast: dict, user: str) -> None:
    client = logged_in(cast[user])
    page = client.get("/p/newsroom/policy/").content.decode()
    assert "<fieldset disabled>" in page and "Save policy" not in page
    assert "Only project admins can change this." in page
    response = client.post("/p/newsroom/policy/", _policy_form(lexical_threshold="90"))
    assert response.status_code == 403
    assert services.policy_get(project=cast["newsroom"]).lexical_threshold == 50.0


# --- Non-members ----------------------------------------------------------------------------------

DRAFT_PAGES = [
    ("get", "drafts/{draft}/"),
    ("get", "drafts/{draft}/panel/"),
    ("get", "drafts/{draft}/activity/"),
    ("post", "drafts/{draft}/recheck/"),
    ("post", "drafts/{draft}/action/"),
    ("post", "drafts/{draft}/edit/"),
    ("post", "drafts/{draft}/comment/"),
    ("post", "drafts/{draft}/assign/"),
    ("post", "drafts/{draft}/lock/"),
    ("get", "archive/"),
    ("post", "archive/import/"),
    ("get", "archive/imports/{run}/"),
    ("get", "archive/{document}/"),
    ("post", "archive/{document}/delete/"),
    ("get", "policy/"),
    ("post", "policy/"),
]


def test_non_members_get_404_from_every_review_page(cast: dict, hold_queue: list) -> None:
    project = cast["newsroom"]
    run = make_archive(project, ARCHIVE[:1], embed=False)
    ids = {
        "draft": checked(make_draft(project, cast["bob"], UNRELATED), hold_queue).pk,
        "run": run.pk,
        "document": ArchiveDocument.objects.get().pk,
    }
    eve = logged_in(cast["eve"])
    for method, path in DRAFT_PAGES:
        url = "/p/newsroom/" + path.format(**ids)
        assert getattr(eve, method)(url).status_code == 404, (method, url)
        if "{" in path:
            # nor through her own project's pages
            url = "/p/other/" + path.format(**ids)
            assert getattr(eve, method)(url).status_code == 404, (method, url)
    # anonymous visitors are sent to log in
    for method, path in DRAFT_PAGES:
        response = getattr(Client(), method)("/p/newsroom/" + path.format(**ids))
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert ArchiveDocument.objects.count() == 1 and ImportRun.objects.count() == 1


# --- The project websocket ------------------------------------------------------------------------


def communicator(slug: str, user: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns()), f"/ws/projects/{slug}/")
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
async def test_the_project_socket_refuses_anonymous_visitors_and_non_members(cast: dict) -> None:
    from django.contrib.auth.models import AnonymousUser

    for slug, user, code in [
        ("newsroom", AnonymousUser(), 4401),
        ("newsroom", cast["eve"], 4404),
        ("nowhere", cast["bob"], 4404),
    ]:
        assert await refusal_code(communicator(slug, user)) == code, (slug, user)


def _run_checks(draft_id: int, version: int) -> None:
    from django.db import connections

    try:
        services.draft_checks_run(draft_id=draft_id, version=version)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
async def test_members_hear_each_check_and_the_routing_of_a_draft(
    cast: dict, hold_queue: list
) -> None:
    draft = await database_sync_to_async(
        lambda: services.draft_checks_start(
            draft=make_draft(cast["newsroom"], cast["bob"], f"{UNRELATED} {THREAT}")
        )
    )()
    [(draft_id, version)] = hold_queue
    viewer, outsider = communicator("newsroom", cast["dave"]), communicator("other", cast["eve"])
    assert (await viewer.connect())[0] and (await outsider.connect())[0]
    assert await viewer.receive_json_from() == {"type": "hello", "project": "newsroom"}
    assert await outsider.receive_json_from() == {"type": "hello", "project": "other"}
    # when the worker runs the checks
    await asyncio.to_thread(_run_checks, draft_id, version)
    events = [await viewer.receive_json_from(timeout=30) for _ in range(5)]
    # then the project's members hear each check as it is stored, then the routing
    checks = {e["check"]: e for e in events if e["kind"] == "check"}
    assert set(checks) == {"toxicity", "ethics", "lexical", "semantic"}
    assert all(e["type"] == "event" and e["draft"] == draft.pk for e in checks.values())
    assert all(e["status"] == "ok" for e in checks.values())
    assert checks["toxicity"]["scores"]["toxicity"] >= 0.9
    [routed] = [e for e in events if e["kind"] == "draft"]
    assert routed == {
        "type": "event",
        "kind": "draft",
        "id": draft.pk,
        "status": "held",
        "action": "hold",
    }
    # and another project's members hear nothing of it
    assert await outsider.receive_nothing(timeout=0.2)
    await viewer.disconnect()
    await outsider.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_queue_socket_refuses_a_user_of_no_project(cast: dict, make_user: Any) -> None:
    # given a signed-in user who belongs to no project
    loner = await database_sync_to_async(make_user)("loner")
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns()), "/ws/queue/")
    comm.scope["user"] = loner
    # then the queue socket refuses them with the close code the page handles
    assert await refusal_code(comm) == 4404
    # while a member is let in
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns()), "/ws/queue/")
    comm.scope["user"] = cast["bob"]
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(timeout=2))["type"] == "hello"
    await comm.disconnect()
