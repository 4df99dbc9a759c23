"""Edits made while the checks ran: the row's version moved on (checking, then a pass or a
hold), the text did not. The save carries the text revision it was opened on and goes through;
a save over someone else's newer text is still refused."""

from __future__ import annotations

import re
from typing import Any

import pytest

from contentstudio.errors import Conflict
from contentstudio.html import html_to_text, text_to_html
from generation.models import Draft
from review import editorial, services
from review.models import DraftEvent
from tests.factories import UNRELATED, reset_indexes
from tests.test_editorial import EDITED, S, waiting


def test_an_edit_opened_while_the_checks_ran_is_saved_after_they_finish(
    cast: dict, hold_queue: list
) -> None:
    """The editor opened the form (version 1, text revision 1); a re-check ran meanwhile and
    moved the draft twice (checking, then awaiting review: version 3) without touching the
    text. The save goes through over version 3, and the audit says where it was opened."""
    reset_indexes()
    draft = waiting(cast)
    opened_version, opened_revision = draft.version, editorial.text_revision(draft)
    assert opened_revision == 1
    services.draft_checks_rerun(draft=draft, user=cast["alice"])
    checking = Draft.objects.get(pk=draft.pk)
    services.draft_checks_run(draft_id=draft.pk, version=checking.version)
    finished = Draft.objects.get(pk=draft.pk)
    assert finished.status == S.AWAITING_REVIEW and finished.version == opened_version + 2

    moved = editorial.draft_edit(
        draft=draft,
        user=cast["bob"],
        body=text_to_html(EDITED),
        expected_version=opened_version,
        base_revision=opened_revision,
    )
    assert moved.status == S.CHECKING
    assert html_to_text(Draft.objects.get(pk=draft.pk).body) == EDITED
    assert editorial.text_revision(moved) == 2
    edit = DraftEvent.objects.get(draft=draft, action="edit")
    assert edit.data["opened_at_version"] == opened_version and edit.data["revision"] == 2
    # Without the text revision (an old client) the same save is refused as before.
    with pytest.raises(Conflict):
        editorial.draft_edit(
            draft=draft, user=cast["bob"], body="<p>Again.</p>", expected_version=opened_version
        )
    reset_indexes()


def test_an_edit_opened_before_someone_elses_save_is_still_refused(
    cast: dict, hold_queue: list
) -> None:
    """The text revision moved (alice saved): bob's older form must not overwrite her text."""
    draft = waiting(cast)
    opened_revision = editorial.text_revision(draft)
    alices = UNRELATED.replace("chess club", "bridge club")
    editorial.draft_edit(
        draft=draft, user=cast["alice"], body=text_to_html(alices), expected_version=1
    )
    with pytest.raises(Conflict, match="alice changed this draft"):
        editorial.draft_edit(
            draft=draft,
            user=cast["bob"],
            body=text_to_html(EDITED),
            expected_version=1,
            base_revision=opened_revision,
        )
    assert Draft.objects.get(pk=draft.pk).body == text_to_html(alices)


def test_the_edit_page_posts_the_text_revision_and_a_save_after_the_checks_goes_through(
    cast: dict, hold_queue: list, client: Any
) -> None:
    reset_indexes()
    draft = waiting(cast)
    client.force_login(cast["bob"])
    page = client.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    revision = re.search(r'name="revision" value="(\d+)" id="edit-revision"', page).group(1)
    assert (version, revision) == ("1", "1")
    services.draft_checks_rerun(draft=draft, user=cast["alice"])
    services.draft_checks_run(draft_id=draft.pk, version=Draft.objects.get(pk=draft.pk).version)
    response = client.post(
        f"/p/newsroom/drafts/{draft.pk}/edit/",
        {"version": version, "revision": revision, "body": text_to_html(EDITED), "title": ""},
    )
    assert response.status_code == 302
    assert html_to_text(Draft.objects.get(pk=draft.pk).body) == EDITED
    reset_indexes()


def test_the_api_edit_takes_the_text_revision_the_draft_shows(cast: dict, hold_queue: list) -> None:
    from rest_framework.test import APIClient

    reset_indexes()
    draft = waiting(cast)
    api = APIClient()
    api.force_authenticate(cast["bob"])
    shown = api.get(f"/api/v1/drafts/{draft.pk}/").json()
    assert (shown["version"], shown["revision_number"]) == (1, 1)
    services.draft_checks_rerun(draft=draft, user=cast["alice"])
    services.draft_checks_run(draft_id=draft.pk, version=Draft.objects.get(pk=draft.pk).version)
    body = {"body": text_to_html(EDITED), "version": 1, "revision": shown["revision_number"]}
    response = api.post(f"/api/v1/drafts/{draft.pk}/edit/", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["revision_number"] == 2 and response.json()["text"] == EDITED
    stale = api.post(f"/api/v1/drafts/{draft.pk}/edit/", {**body, "revision": 1}, format="json")
    assert stale.status_code == 409
    reset_indexes()
