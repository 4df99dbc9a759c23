"""A correction is new text: it goes through every check and the project's policy before it
is published. Held, nothing is published or sent and the reasons, results and text are kept;
passed, its version's provenance lists its own results. Real checks (the tiny toxicity model,
the ethics rules, the lexical and semantic indexes of a real archive), a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from publishing import flush, services
from publishing.models import Delivery, PublicationEvent, PublicationVersion
from tests.factories import ARCHIVE, make_archive
from tests.publishing_helpers import Receiver, approved_draft, sources_indexed

pytestmark = pytest.mark.django_db

BLOCKED = "The mayor called the plan Bull$hit in public."


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.DESTINATION_ALLOW_HOSTS = ["127.0.0.1"]
    started = Receiver(lambda handler, body: (200, {"ok": True})).start()
    yield started
    started.stop()


def _first_sentence(text: str) -> str:
    return text.split(". ")[0] + "."


def test_a_correction_with_a_blocked_term_and_an_archive_sentence_is_held_with_its_own_results(
    cast: dict, receiver: Receiver
) -> None:
    # given a published, delivered story and an archive with a document in it
    make_archive(cast["newsroom"])
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=receiver.url
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    assert flush.destination_flush(destination.pk) == 1
    sources_indexed(cast["newsroom"])
    copied = _first_sentence(ARCHIVE[0]["text"])
    body = f"<p>{BLOCKED}</p><p>{copied}</p>"
    # when an editor corrects it with a blocked term and a verbatim archive sentence
    with pytest.raises(services.CorrectionHeld) as held:
        services.publication_correct(
            publication=publication, user=cast["bob"], body=body, note="New quote"
        )
    # then it is held with the policy's reasons: nothing published, nothing sent
    reasons = held.value.reasons
    assert any(r.startswith("Ethics rule (blocked term)") for r in reasons), reasons
    assert any(r.startswith("Plagiarism") and ARCHIVE[0]["title"] in r for r in reasons), reasons
    publication.refresh_from_db()
    assert publication.current_version == 1
    assert PublicationVersion.objects.filter(publication=publication).count() == 1
    assert Delivery.objects.count() == 1
    assert flush.destination_flush(destination.pk) == 0 and len(receiver.requests) == 1
    # and its own results, reasons and text are kept in the audit trail
    event = PublicationEvent.objects.get(publication=publication, action="correction_held")
    assert event.data["reasons"] == reasons and event.actor == cast["bob"]
    assert copied in event.data["proposed"]["body"]
    results = {c["kind"]: c for c in event.data["checks"]}
    assert set(results) == {"toxicity", "ethics", "lexical", "semantic"}
    assert results["ethics"]["scores"].get("blocked_term", 0) >= 1
    assert results["lexical"]["scores"]["best_source"] == ARCHIVE[0]["title"]
    assert all(c["on"] == "correction of version 1" for c in event.data["checks"])
    # the page says why and keeps what was typed; the API answers 422 with the reasons
    client = Client()
    client.force_login(cast["bob"])
    page = client.post(
        f"/p/newsroom/publications/{publication.pk}/action/",
        {"action": "correct", "body": body, "note": "New quote", "headline": publication.headline},
    )
    assert page.status_code == 422
    text = page.content.decode()
    assert "blocked term" in text and "Bull$hit" in text
    api = APIClient()
    api.force_authenticate(cast["bob"])
    answer = api.post(
        f"/api/v1/publications/{publication.pk}/correct/",
        {"body": body, "note": "New quote"},
        format="json",
    )
    assert answer.status_code == 422 and "blocked term" in answer.json()["message"]
    assert Delivery.objects.count() == 1


def test_a_clean_correction_is_published_with_its_own_check_results(
    cast: dict, receiver: Receiver
) -> None:
    destination, _ = services.destination_create(
        project=cast["newsroom"], user=cast["alice"], name="Site", kind="generic", url=receiver.url
    )
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    first = publication.versions.get()
    assert all(c["draft_version"] is not None for c in first.provenance["checks"])
    # when the correction's text passes (it repeats most of the published text: a draft is
    # never its own source)
    version = services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body=first.body_html + "<p>The tournament had forty players, not thirty.</p>",
        note="Number of players",
    )
    # then it is published, with the results of its own checks, not version 1's
    checks = {c["kind"]: c for c in version.provenance["checks"]}
    assert set(checks) == {"toxicity", "ethics", "lexical", "semantic"}
    assert all(c["status"] == "ok" for c in checks.values()), checks
    assert all(c["on"] == "correction of version 1" for c in checks.values())
    assert all(c["draft_version"] is None for c in checks.values())
    assert checks["lexical"]["scores"]["draft_share"] == 0.0  # its own earlier text is no source
    scorers = {s["check"] for s in version.provenance["scorers"]}
    assert scorers == set(checks)
    assert flush.destination_flush(destination.pk) == 2
    # a kill repeats the text it takes down, and that text's results
    services.publication_unpublish(publication=publication, user=cast["bob"], reason="Legal")
    kill = publication.versions.get(number=3)
    assert kill.provenance["checks"] == version.provenance["checks"]


def test_the_correction_form_is_the_editor_and_the_summary_follows_the_text(
    cast: dict,
) -> None:
    publication = services.publication_publish(draft=approved_draft(cast), user=cast["bob"])
    first = publication.versions.get()
    client = Client()
    client.force_login(cast["bob"])
    page = client.get(f"/p/newsroom/publications/{publication.pk}/").content.decode()
    # the form is open (no collapsed section), with the editor, and the summary after the text
    assert '<details class="card" id="correct"' not in page
    assert 'id="c-editor" class="editor" contenteditable="true"' in page
    assert page.index('id="c-editor"') < page.index('id="c-summary"')
    # when the text is corrected and the summary (its first paragraph) is left as it was
    body = (
        "<p>The chess club in the old town hall marked one hundred years of play.</p>"
        "<p>The youngest entrant won most of her games.</p>"
    )
    version = services.publication_correct(
        publication=publication, user=cast["bob"], body=body, summary=first.summary, note="Age"
    )
    # then the summary follows the corrected text
    assert (
        version.summary == "The chess club in the old town hall marked one hundred years of play."
    )
    # a summary someone wrote stays
    written = services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body=body + "<p>The club meets every Tuesday.</p>",
        summary="A club's century.",
        note="Meetings",
    )
    again = services.publication_correct(
        publication=publication,
        user=cast["bob"],
        body=body,
        summary=written.summary,
        note="Meetings removed",
    )
    assert again.summary == "A club's century."
