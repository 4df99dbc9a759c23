"""Every form of the studio accepts its own defaults in a real Chromium.

The pages come from the URL conf, not from a hand-made list: every route outside the API and
the Django admin is opened (with each sample object its parameters name: drafts in several
states, a published and a scheduled publication, a run, a destination...), as an admin and, for
the login page, signed out. On each page every form field that the browser validates must pass
its own constraints as rendered (min, max, step, pattern, length, type); a required field left
empty for the person to fill is the one allowed complaint. A new route whose parameter has no
sample fails the test, so a new form is never left out. And the policy page, saved at its
defaults, is saved (it was refused silently: 0.2 under min=0.01 step=0.05).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from contentstudio import tokens
from contentstudio.models import TokenScope
from finetune.models import EvaluationRun, FineTuneRun, RunStatus
from finetune.training.config import DEMO_SETTINGS
from publishing import services as publishing
from publishing.models import Delivery
from review.lifecycle import DraftStatus
from review.models import ArchiveDocument, PolicyEvent
from tests.factories import ARCHIVE, HARBOUR, make_archive, make_draft
from tests.publishing_helpers import approved_draft
from tests.test_browser_review import _orm_beside_playwright, browser, login  # noqa: F401

pytestmark = pytest.mark.browser
S = DraftStatus

# Routes that are not the studio's own forms: the REST API (JSON), the Django admin (Django's
# forms), and the root and icon redirects.
# feeds/: the readers' public feeds (JSON Feed and Atom, no forms; 404 until opened).
SKIPPED_PREFIXES = ("api/", "admin/", "favicon.ico", "feeds/")

# Each form's constraints, checked in the page as the browser sees them.
CHECK_FORMS = """() => Array.from(document.forms).map((form, i) => {
  const bad = [];
  let fields = 0;
  for (const el of form.elements) {
    if (!el.willValidate) continue;
    fields += 1;
    if (el.checkValidity()) continue;
    const v = el.validity;
    const other = v.stepMismatch || v.rangeUnderflow || v.rangeOverflow || v.typeMismatch ||
      v.patternMismatch || v.tooLong || v.tooShort || v.badInput;
    // A required field left empty is for the person to fill; anything else is the form
    // refusing its own default.
    if (v.valueMissing && !other && el.value === "") continue;
    bad.push((el.name || el.id) + "=" + JSON.stringify(el.value) + ": " + el.validationMessage);
  }
  return {form: form.id || form.getAttribute("action") || ("#" + i), fields, bad};
})"""


def routes() -> list[tuple[str, str]]:
    """(name, route) of every URL pattern, with its prefixes, in URL conf order."""
    found: list[tuple[str, str]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.append((p.name or "", prefix + str(p.pattern)))

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def samples(cast: dict, language_model: Any, news_template: Any, settings: Any, tmp_path: Any):
    """One or more objects for each URL parameter, by (route name, parameter) or parameter."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    project, alice, bob = cast["newsroom"], cast["alice"], cast["bob"]
    # Staff too, so the installation's own pages (workers) are opened as well.
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    awaiting = make_draft(project, bob, ARCHIVE[HARBOUR]["text"], status=S.AWAITING_REVIEW)
    held = make_draft(project, bob, "A held draft.", status=S.HELD)
    destination, _ = publishing.destination_create(
        project=project, user=alice, name="CMS", kind="generic", url="https://cms.example.org/in"
    )
    publishing.destination_set_enabled(destination=destination, user=alice, enabled=False)
    published = approved_draft(cast, title="Published story")
    publication = publishing.publication_publish(draft=published, user=bob)
    to_schedule = approved_draft(cast, title="Scheduled story")
    scheduled = publishing.publication_schedule(
        draft=to_schedule, user=bob, when=timezone.now() + timedelta(days=1)
    )
    approved = approved_draft(cast, title="Approved story")
    run = make_archive(project, [ARCHIVE[HARBOUR]])
    document = ArchiveDocument.objects.filter(project=project).first()
    token, _ = tokens.token_create(project=project, user=alice, name="cms", scope=TokenScope.READ)
    finetune_run = FineTuneRun.objects.create(
        project=project,
        created_by=alice,
        base_model=language_model,
        settings=DEMO_SETTINGS.as_dict(),
        status=RunStatus.SUCCEEDED,
        total_steps=16,
        step=16,
    )
    delivery = Delivery.objects.filter(publication=publication).first()
    evaluation_run = EvaluationRun.objects.create(
        project=project, created_by=alice, variants=[], document_ids=[document.pk], total=1
    )
    return {
        "slug": [project.slug],
        "draft_id": [awaiting.pk, held.pk, approved.pk, published.pk],
        "job_id": [awaiting.job_id],
        "template_id": [news_template.template_id],
        "document_id": [document.pk],
        "publication_id": [publication.pk, scheduled.pk],
        "destination_id": [destination.pk],
        "delivery_id": [delivery.pk if delivery else 0],  # its page is a POST-only action
        "token_id": [token.pk],
        ("import_status", "run_id"): [run.pk],
        ("finetune_run", "run_id"): [finetune_run.pk],
        ("finetune_run_cancel", "run_id"): [finetune_run.pk],
        ("finetune_evaluation", "run_id"): [evaluation_run.pk],
        ("finetune_evaluation_status", "run_id"): [evaluation_run.pk],
        ("finetune_evaluation_cancel", "run_id"): [evaluation_run.pk],
        ("finetune_evaluation_export", "run_id"): [evaluation_run.pk],
        "fmt": ["csv", "json"],
        "evaluation_run": [evaluation_run.pk],
    }


def urls_of(name: str, route: str, samples: dict) -> list[str]:
    params = re.findall(r"<(?:\w+:)?(\w+)>", route)
    missing = [p for p in params if (name, p) not in samples and p not in samples]
    assert not missing, (
        f"URL {name!r} ({route}) takes {missing}: add a sample to the `samples` fixture of "
        "tests/test_browser_forms.py so its forms are checked too."
    )
    urls = [route]
    for param in params:
        values = samples.get((name, param), samples.get(param))
        urls = [
            re.sub(rf"<(?:\w+:)?{param}>", str(value), url, count=1)
            for url in urls
            for value in values
        ]
    return ["/" + url for url in urls]


def test_every_form_accepts_its_own_defaults_in_chromium(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    samples: dict,
) -> None:
    page = login(browser, asgi_server, "alice")
    seen: dict[str, int] = {}  # url -> forms with fields the browser validates
    refused: list[str] = []
    unexpected: list[str] = []
    try:
        for name, route in routes():
            if route.startswith(SKIPPED_PREFIXES) or route.startswith("^") or not route:
                continue
            for url in urls_of(name, route, samples):
                response = page.request.get(asgi_server + url, max_redirects=0)
                kind = response.headers.get("content-type", "")
                if response.status == 405 or not kind.startswith("text/html"):
                    continue  # an action (POST only), a JSON or file endpoint: no form
                if response.status != 200:
                    unexpected.append(f"{name} {url}: {response.status}")
                    continue
                page.goto(asgi_server + url)
                forms = page.evaluate(CHECK_FORMS)
                seen[url] = sum(1 for f in forms if f["fields"])
                refused += [f"{name} {url} form {f['form']}: {b}" for f in forms for b in f["bad"]]
        # signed out: the login form
        anonymous = browser.new_context().new_page()
        anonymous.goto(f"{asgi_server}/login/")
        forms = anonymous.evaluate(CHECK_FORMS)
        seen["/login/ (signed out)"] = sum(1 for f in forms if f["fields"])
        refused += [f"login form {f['form']}: {b}" for f in forms for b in f["bad"]]
        anonymous.context.close()
    finally:
        page.context.close()
    assert unexpected == [], unexpected
    assert refused == [], "\n".join(refused)
    # the pages the studio's forms are on were all reached and had forms to check
    with_forms = {url for url, n in seen.items() if n}
    for url in [
        "/p/newsroom/policy/",
        "/p/newsroom/generate/",
        "/p/newsroom/templates/new/",
        f"/p/newsroom/templates/{samples['template_id'][0]}/",
        "/p/newsroom/archive/",
        "/p/newsroom/destinations/",
        "/p/newsroom/feed/",
        "/p/newsroom/tokens/",
        "/p/newsroom/finetune/",
        "/p/newsroom/finetune/compare/",
        "/p/newsroom/finetune/evaluations/",
        f"/p/newsroom/finetune/evaluations/{samples['evaluation_run'][0]}/",
        f"/p/newsroom/publications/{samples['publication_id'][0]}/",
        f"/p/newsroom/drafts/{samples['draft_id'][0]}/",
        "/queue/",
        "/workers/",
        "/login/ (signed out)",
    ]:
        assert url in with_forms, f"{url}: no form checked (seen: {sorted(seen)})"


def test_the_policy_page_saves_at_its_defaults(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    page = login(browser, asgi_server, "alice")
    try:
        page.goto(f"{asgi_server}/p/newsroom/policy/")
        # when the admin adds a blocked term and saves, touching nothing else
        terms = page.input_value("#id_blocked_terms")
        page.fill("#id_blocked_terms", terms + "\nforbiddenword")
        page.click("button:has-text('Save policy')")
        page.wait_for_load_state()
        # then the policy is saved (the browser let the form through)
        page.wait_for_selector("text=Policy saved", timeout=10_000)
        event = PolicyEvent.objects.get(policy__project=cast["newsroom"])
        assert list(event.changes) == ["rules.blocked_terms"]
        assert event.changes["rules.blocked_terms"]["to"] == [*terms.split("\n"), "forbiddenword"]
    finally:
        page.context.close()


def test_a_queue_filter_from_a_link_can_be_applied_again(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
) -> None:
    """A link with a toxicity bound off the spinner's steps (0.42) still submits."""
    make_draft(cast["newsroom"], cast["bob"], "Some text.", status=S.AWAITING_REVIEW)
    page = login(browser, asgi_server, "bob")
    try:
        page.goto(f"{asgi_server}/queue/?tox_max=0.42&plag_min=12.5")
        assert page.evaluate("document.getElementById('filters').checkValidity()")
    finally:
        page.context.close()
