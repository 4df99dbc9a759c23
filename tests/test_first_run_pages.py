"""What a new user saw on a first run and should not: the wrong template first, a cut-off state
list, green bars at 0.99, raw names in the history, doubled quote marks, a version counter that
moves without edits, a missing favicon."""

from __future__ import annotations

import re

from django.test import Client

from generation import services as generation
from review import holds, lifecycle
from review.models import CheckResult, CheckStatus
from tests.factories import checked, logged_in, make_draft


def test_a_news_desk_opens_the_generate_form_on_its_news_template(cast: dict) -> None:
    project = cast["newsroom"]
    assert project.content_type == "news_report"
    for name, kind in [("Ad copy", "ad_copy"), ("News report", "news_report")]:
        generation.template_create(
            project=project,
            user=cast["alice"],
            name=name,
            body="{{topic}}",
            variables=["topic"],
            content_type=kind,
        )
    page = logged_in(cast["bob"]).get("/p/newsroom/generate/").content.decode()
    selected = re.search(r"<option value=\"\d+\" selected>([^<]+)</option>", page)
    assert selected is not None and selected.group(1).startswith("News report")


def test_the_queue_state_list_shows_every_state_held_included(cast: dict) -> None:
    page = logged_in(cast["bob"]).get("/queue/").content.decode()
    select = re.search(r'<select id="f-state"[^>]*size="(\d+)"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None
    options = re.findall(r"<option[^>]*>([^<]+)</option>", select.group(2))
    assert "Held" in options
    assert int(select.group(1)) == len(options)


def test_a_score_over_its_threshold_is_marked_over_and_not_drawn_as_fine(
    cast: dict, hold_queue: list
) -> None:
    draft = checked(make_draft(cast["newsroom"], cast["bob"], "A calm report."), hold_queue)
    CheckResult.objects.filter(draft=draft, kind="toxicity").update(
        status=CheckStatus.OK, scores={"toxicity": 0.99, "threat": 0.01}
    )
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    row = re.search(r'<tr class="over"><th>toxicity</th>(.*?)</tr>', page, re.S)
    limit = holds.DEFAULT_TOXICITY_THRESHOLDS["toxicity"]
    assert row is not None and f"over {limit:.2f}" in row.group(1)
    # the meter knows where "bad" starts, so the browser draws 0.99 as bad, not green
    assert re.search(rf'<meter[^>]*high="{limit:g}"[^>]*optimum="0"[^>]*value="0.99"', row.group(1))
    assert '<tr class="over"><th>threat</th>' not in page


def test_the_history_speaks_in_words_and_the_revision_counts_edits_only(
    cast: dict, hold_queue: list
) -> None:
    draft = checked(make_draft(cast["newsroom"], cast["bob"], "A calm report."), hold_queue)
    if draft.status == "held":
        draft = lifecycle.draft_transition(
            draft=draft, action="release", user=cast["bob"], reason="fine"
        )
    lifecycle.draft_transition(draft=draft, action="approve", user=cast["bob"])
    client = logged_in(cast["bob"])
    page = client.get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    history = page.split('id="history-h"', 1)[1]
    assert "Generated → Checking" in history and "Approve" in history
    assert "check:" not in history and "generated → checking" not in history
    # three moves, no edit: still the model's text, revision 1
    assert "revision 1" in page and "version 4" not in page


def test_a_quoted_claim_is_shown_with_one_pair_of_quote_marks(cast: dict, hold_queue: list) -> None:
    from review.services import policies

    policy_row = policies.policy_get(project=cast["newsroom"])
    policy_row.rules = {**policy_row.rules, "claims": True}
    policy_row.save()
    text = 'The mayor said "we will rebuild every single home by the spring" on Monday.'
    draft = checked(make_draft(cast["newsroom"], cast["bob"], text), hold_queue)
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert "“&quot;" not in page and "&quot;”" not in page
    assert "&quot;we will rebuild every single home by the spring&quot;" in page


def test_the_favicon_is_served(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
