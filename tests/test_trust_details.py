"""The small things of issue 22 item 14 that erode trust: what the pages and the API say must
be true (delivery states, token scopes, paging names, admin labels, numbers, field labels)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contentstudio import tokens
from contentstudio.models import TokenScope
from publishing import services
from tests.publishing_helpers import approved_draft

pytestmark = pytest.mark.django_db


def _logged_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=f"{username}-password-1")
    return client


def test_a_scheduled_publication_is_not_called_delivered_and_its_page_names_the_destination(
    cast: dict,
) -> None:
    # given a destination and a publication scheduled for tomorrow
    services.destination_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name="Newsroom site",
        kind="generic",
        url="https://hooks.example.com/in",
    )
    scheduled = services.publication_schedule(
        draft=approved_draft(cast, title="Tomorrow's story"),
        user=cast["bob"],
        when=timezone.now() + timedelta(days=1),
    )
    client = _logged_in("bob")
    # then the list does not say "all delivered" about it
    rows = client.get("/p/newsroom/publications/rows/").content.decode()
    row = rows.split(f'data-publication="{scheduled.pk}"')[1].split("</tr>")[0]
    assert "all delivered" not in row
    assert "sent when published" in row
    # and its page says where it will go, not that there is no destination
    page = client.get(f"/p/newsroom/publications/{scheduled.pk}/").content.decode()
    assert "add a destination" not in page
    assert "Not sent yet: it goes to Newsroom site when it is published" in page
    # once published, the list and the page agree on the delivery that exists
    published = services.publication_publish(
        draft=approved_draft(cast, title="Today's story"), user=cast["bob"]
    )
    rows = client.get("/p/newsroom/publications/rows/").content.decode()
    row = rows.split(f'data-publication="{published.pk}"')[1].split("</tr>")[0]
    assert "all delivered" not in row  # the receiver has not answered yet
    page = client.get(f"/p/newsroom/publications/{published.pk}/").content.decode()
    assert "Newsroom site" in page and "add a destination" not in page


def test_a_read_token_that_writes_is_told_it_needs_a_read_write_token(cast: dict) -> None:
    publication = services.publication_publish(
        draft=approved_draft(cast, title="Harbour festival"), user=cast["bob"]
    )
    # alice (admin) made a read token: her role is not what stops it, the scope is
    _, key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="site", scope=TokenScope.READ
    )
    response = Client().post(
        f"/api/v1/publications/{publication.pk}/unpublish/",
        {"reason": "test"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 403
    message = response.json()["message"]
    assert "read-write token" in message and "editor role" not in message
    # a person with too low a role is still told the role
    viewer = _logged_in("dave").post(
        f"/api/v1/publications/{publication.pk}/unpublish/",
        {"reason": "test"},
        content_type="application/json",
    )
    assert viewer.status_code == 403 and "editor role" in viewer.json()["message"]


def test_drafts_jobs_and_publications_page_with_the_same_parameter(cast: dict) -> None:
    for title in ("One", "Two", "Three"):
        services.publication_publish(draft=approved_draft(cast, title=title), user=cast["bob"])
    client = _logged_in("dave")
    for url in ("/api/v1/drafts/", "/api/v1/publications/", "/api/v1/drafts/?ordering=updated_at"):
        for name in ("limit", "page_size"):
            joiner = "&" if "?" in url else "?"
            page = client.get(f"{url}{joiner}{name}=2")
            assert page.status_code == 200, (url, name, page.content)
            assert len(page.json()["results"]) == 2, (url, name)
            assert page.json()["next"]
            bad = client.get(f"{url}{joiner}{name}=0")
            assert bad.status_code == 400, (url, name)
            assert name in bad.json()["fields"], (url, name, bad.json())
    assert client.get("/api/v1/projects/newsroom/jobs/?page_size=500").status_code == 400


def test_load_and_generation_times_are_shown_with_sensible_precision(cast: dict) -> None:
    from generation.models import LanguageModel
    from tests.factories import make_draft

    model = LanguageModel.objects.create(
        name="tiny",
        source_kind="local",
        source="/nowhere",
        last_check_load_seconds=1.234567890123456,
    )
    root = cast["alice"].__class__.objects.create_superuser("root", password="root-password-1")
    admin = Client()
    admin.force_login(root)
    listing = admin.get("/admin/generation/languagemodel/").content.decode()
    change = admin.get(f"/admin/generation/languagemodel/{model.pk}/change/").content.decode()
    for page in (listing, change):
        assert "1.2 s" in page and "1.23456" not in page
    draft = make_draft(cast["newsroom"], cast["bob"], "A story.")
    draft.timings = {
        "queue_seconds": 0.123456789012345,
        "load_seconds": 12.987654321098765,
        "ttft_seconds": None,
        "generation_seconds": 75.5,
        "tokens_per_second": 31.234567,
    }
    draft.save(update_fields=["timings"])
    page = _logged_in("bob").get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert "waited 0.12 s in the queue" in page
    assert "model load 13 s" in page and "first token after —" in page
    assert "generation 1 min" in page and "31.2 tokens/s" in page
    assert "0.123456" not in page and "12.98765" not in page and "queue_seconds" not in page


def _summary(page: str) -> str:
    return page.split('class="error-summary"')[1].split("</div>")[0]


def test_form_errors_name_fields_by_their_labels_and_the_candidate_limit_is_the_setting(
    cast: dict, news_template: object, language_model: object, settings: object
) -> None:
    client = _logged_in("bob")
    response = client.post(
        "/p/newsroom/generate/",
        {
            "template": str(news_template.template_id),
            f"var.{news_template.template_id}.headline": "",
            f"var.{news_template.template_id}.lede": "A lede.",
            "n_candidates": "9",
            "temperature": "hot",
        },
    )
    assert response.status_code == 400
    summary = _summary(response.content.decode())
    assert "<strong>Headline</strong>" in summary
    assert "<strong>Temperature</strong>" in summary
    assert "<strong>Candidates</strong>" in summary
    assert "variables." not in summary and "settings." not in summary
    assert "n_candidates" not in summary
    # the template form names a bad variable line by its place, not "variables.1"
    bad = _logged_in("alice").post(
        f"/p/newsroom/templates/{news_template.template_id}/",
        {
            "system_prompt": "S",
            "body": "Headline: {{headline}}",
            "variables": "headline\nnot a name!",
        },
    )
    assert bad.status_code == 400
    assert "<strong>Variables, item 2</strong>" in _summary(bad.content.decode())
    # the number field's limit is the setting, not a hard-coded 8
    settings.GENERATION_MAX_CANDIDATES = 4
    page = client.get("/p/newsroom/generate/").content.decode()
    assert 'max="4"' in page and "Candidates (1–4)" in page


def test_studio_setup_prints_where_the_credentials_really_are(
    db: None, settings: object, tmp_path: object
) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.DATA_DIR = tmp_path / "elsewhere"
    out = StringIO()
    call_command("studio_setup", "--skip-model", "--skip-archive", stdout=out)
    path = tmp_path / "elsewhere" / "demo_credentials.json"
    assert path.exists()
    assert f"kept in {path}" in out.getvalue()
    assert "var/demo_credentials.json" not in out.getvalue()
