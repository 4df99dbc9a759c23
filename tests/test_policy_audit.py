"""Policy changes are audited: who changed which fields from what to what, in the transaction
that changes the policy, and the Policy page shows the recent changes, escaped."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from contentstudio.errors import PermissionDenied
from review import holds, services
from review.models import Policy, PolicyEvent

SCRIPT = '<script>alert("x")</script>'


def update(project: Any, user: Any, **changes: Any) -> Policy:
    """Save the project's policy as it is, with ``changes``."""
    current = services.policy_get(project=project)
    values: dict[str, Any] = {
        "toxicity_thresholds": dict(current.toxicity_thresholds),
        "lexical_threshold": current.lexical_threshold,
        "semantic_threshold": current.semantic_threshold,
        "semantic_share": current.semantic_share,
        "blocking_rule_kinds": list(current.blocking_rule_kinds),
        "rules": dict(current.rules),
    }
    return services.policy_update(project=project, user=user, **(values | changes))


def test_a_change_records_who_changed_which_fields_from_what_to_what(cast: dict) -> None:
    # given: the newsroom's default policy
    newsroom = cast["newsroom"]
    policy = services.policy_get(project=newsroom)
    rules = dict(policy.rules) | {"blocked_terms": ["embargo"]}
    thresholds = dict(policy.toxicity_thresholds) | {"threat": 0.9}
    # when: alice (admin) changes the lexical threshold, one toxicity threshold and one rule
    update(
        newsroom,
        cast["alice"],
        lexical_threshold=70,
        toxicity_thresholds=thresholds,
        rules=rules,
    )
    # then: one audit row names her and exactly the three changes, old and new
    (event,) = PolicyEvent.objects.filter(policy=policy)
    assert event.actor == cast["alice"]
    assert event.changes == {
        "lexical_threshold": {"from": holds.DEFAULT_LEXICAL_THRESHOLD, "to": 70.0},
        "toxicity_thresholds.threat": {
            "from": holds.DEFAULT_TOXICITY_THRESHOLDS["threat"],
            "to": 0.9,
        },
        "rules.blocked_terms": {"from": policy.rules.get("blocked_terms"), "to": ["embargo"]},
    }


def test_a_save_that_changes_nothing_writes_no_row(cast: dict) -> None:
    update(cast["newsroom"], cast["alice"])
    assert not PolicyEvent.objects.exists()


def test_a_refused_change_writes_no_row_and_keeps_the_policy(cast: dict) -> None:
    # given / when: a reviewer tries, and an admin sends a bad value
    with pytest.raises(PermissionDenied):
        update(cast["newsroom"], cast["charlie"], lexical_threshold=90)
    with pytest.raises(ValidationError):
        update(cast["newsroom"], cast["alice"], lexical_threshold=500)
    # then: neither changed the policy or left an audit row
    assert services.policy_get(project=cast["newsroom"]).lexical_threshold == 50.0
    assert not PolicyEvent.objects.exists()


def test_the_audit_row_and_the_change_commit_together(
    cast: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the audit row cannot be written
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(PolicyEvent.objects, "create", broken)
    # when: an admin changes the policy
    with pytest.raises(RuntimeError, match="audit table"):
        update(cast["newsroom"], cast["alice"], lexical_threshold=70)
    # then: the change was rolled back with it: no change goes unaudited
    assert services.policy_get(project=cast["newsroom"]).lexical_threshold == 50.0


def test_the_policy_page_lists_recent_changes_escaped_to_members_only(cast: dict) -> None:
    # given: alice blocks a term that is markup
    newsroom = cast["newsroom"]
    rules = dict(services.policy_get(project=newsroom).rules) | {"blocked_terms": [SCRIPT]}
    update(newsroom, cast["alice"], rules=rules, semantic_share=0.5)
    for name in ["alice", "dave"]:
        client = Client()
        client.force_login(cast[name])
        # when: a member opens the Policy page
        page = client.get("/p/newsroom/policy/").content.decode()
        # then: the history says who changed what, and the markup is inert text
        history = page.split('id="policy-history"', 1)[1].split("</section>", 1)[0]
        assert "alice" in history
        assert "<code>semantic_share</code>: 0.3 → 0.5" in history
        assert "<code>rules.blocked_terms</code>" in history
        assert SCRIPT not in page
        assert "&lt;script&gt;alert(" in history
    # and someone outside the project sees neither the page nor its history
    outsider = Client()
    outsider.force_login(cast["eve"])
    assert outsider.get("/p/newsroom/policy/").status_code == 404
