"""The claim rule fires on claims the model made, not on an advert's quotation marks around the
whole copy, nor on the figures and quotations the editor supplied (in the brief, the template's
variables, or typed into the draft)."""

from __future__ import annotations

import pytest

from review.checks.ethics import check_ethics
from review.models import Policy
from review.services.adapters import run_ethics
from tests.factories import make_draft

CLAIMS = {"claims": True}


def claims(text: str, editor_text: str = "") -> list[dict]:
    result = check_ethics(text, rules=CLAIMS, editor_text=editor_text)
    return [h for h in result["hits"] if h["rule_kind"] == "claim"]


@pytest.mark.parametrize(
    "copy",
    [
        '"Wake up to the smell of fresh coffee every morning with the new SunBrew."',
        "  “Wake up to the smell of fresh coffee every morning with the new SunBrew.”\n",
        "«Wake up to the smell of fresh coffee every morning with the new SunBrew.»",
    ],
)
def test_a_quotation_wrapping_the_whole_draft_is_not_a_claim(copy: str) -> None:
    assert claims(copy) == []


def test_a_quotation_inside_the_text_still_needs_a_source() -> None:
    text = 'The mayor was blunt. "We will never close the old library again." Locals cheered.'
    (hit,) = claims(text)
    assert hit["rule"] == "quotation"
    # and copy in quotes followed by more text is not "the whole draft"
    ad = '"Wake up to fresh coffee every morning with SunBrew." Now in every store.'
    assert [h["rule"] for h in claims(ad)] == ["quotation"]


def test_the_editors_own_figures_do_not_fire_but_the_models_do() -> None:
    text = "Turnout rose to 64% this year. The council spent $2,500 on the count."
    # the model's figures: both sentences are claims
    assert len(claims(text)) == 2
    # the editor gave the turnout in the brief (written differently): only the spend fires
    (hit,) = claims(text, editor_text="Turnout: 64 per cent")
    assert "2,500" in hit["message"] and "64%" not in hit["message"]
    # both given: nothing fires
    assert claims(text, editor_text="turnout 64%, cost $2500") == []
    # a quotation the editor supplied is theirs too
    quoted = 'The mayor spoke. "We will never close the old library again." Locals cheered.'
    assert claims(quoted, editor_text="We will never close the old library again") == []


@pytest.mark.django_db
def test_the_check_on_a_draft_knows_the_brief_and_the_editors_additions(cast: dict) -> None:
    policy, _ = Policy.objects.get_or_create(project=cast["newsroom"])
    policy.rules = CLAIMS
    # given the brief says 64%, and the model wrote it, plus a figure of its own
    text = "Turnout rose to 64% this year. Officials counted 12,400 ballots by hand."
    draft = make_draft(cast["newsroom"], cast["bob"], text)
    draft.variables = {"facts": "Turnout was 64%"}
    draft.save(update_fields=["variables"])
    result = run_ethics(draft, text, policy)
    (hit,) = [h for h in result["details"]["hits"] if h["rule_kind"] == "claim"]
    assert "12,400" in hit["message"]
    # when an editor adds a figure of their own to the model's text, it does not fire either
    edited = text + " The count cost 3,100 dollars."
    result = run_ethics(draft, edited, policy)
    messages = [h["message"] for h in result["details"]["hits"] if h["rule_kind"] == "claim"]
    assert len(messages) == 1 and "12,400" in messages[0]
    # while the model's own figure still does, whatever the editor typed elsewhere
    assert result["scores"]["claim"] == 1
