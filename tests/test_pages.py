"""Server-rendered pages: login, project list and page, the generation form, job and draft
pages, templates; every page checks membership and role."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from generation.models import GenerationJob, LanguageModel, PromptTemplate
from tests.factories import logged_in

VARS = {"headline": "Storm hits the coast", "lede": "A storm hit the coast on Monday."}


def test_login_page_and_redirect_for_anonymous_users(db: None) -> None:
    client = Client()
    assert client.get("/login/").status_code == 200
    response = client.get("/p/newsroom/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_logging_in_with_the_password_works(cast: dict) -> None:
    client = Client()
    response = client.post("/login/", {"username": "bob", "password": "bob-password-1"})
    assert response.status_code == 302
    assert "Newsroom" in client.get("/projects/").content.decode()


def test_project_list_shows_only_the_users_projects(cast: dict) -> None:
    page = logged_in(cast["eve"]).get("/projects/").content.decode()
    assert "Other desk" in page and "Newsroom" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/p/newsroom/",
        "/p/newsroom/generate/",
        "/p/newsroom/templates/",
        "/p/newsroom/templates/new/",
        "/p/newsroom/jobs/{job}/",
        "/p/newsroom/drafts/{draft}/",
    ],
)
def test_a_member_of_another_project_gets_404_everywhere(
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    path: str,
    hold_queue: list,
) -> None:
    from generation import services

    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables=VARS,
    )
    url = path.format(job=job.pk, draft=12345)
    assert logged_in(cast["eve"]).get(url).status_code == 404


def test_a_job_of_another_project_is_404_under_the_wrong_slug(
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    from generation import services

    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables=VARS,
    )
    # eve is admin of "other": the job must not show through her project's URL either
    assert logged_in(cast["eve"]).get(f"/p/other/jobs/{job.pk}/").status_code == 404


@pytest.mark.parametrize("who", ["charlie", "dave"])
def test_reviewers_and_viewers_cannot_open_the_generation_form(cast: dict, who: str) -> None:
    response = logged_in(cast[who]).get("/p/newsroom/generate/")
    assert response.status_code == 403
    assert "editor role" in response.content.decode()


def test_the_generation_form_refuses_bad_input_naming_each_field(
    cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    template_id = news_template.template_id
    response = logged_in(cast["bob"]).post(
        "/p/newsroom/generate/",
        {
            "template": template_id,
            f"var.{template_id}.headline": "Storm",
            f"var.{template_id}.lede": "",
            "n_candidates": "9",
            "temperature": "-2",
            "max_new_tokens": "5000",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    for field in [
        "variables.lede",
        "n_candidates",
        "settings.temperature",
        "settings.max_new_tokens",
    ]:
        assert field in page
    assert not GenerationJob.objects.exists()


def test_the_generation_form_starts_a_job_and_opens_its_page(
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    template_id = news_template.template_id
    client = logged_in(cast["bob"])
    response = client.post(
        "/p/newsroom/generate/",
        {
            "template": template_id,
            f"var.{template_id}.headline": VARS["headline"],
            f"var.{template_id}.lede": VARS["lede"],
            "n_candidates": "3",
            "seed": "42",
            "temperature": "0.5",
        },
    )
    job = GenerationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/p/newsroom/jobs/{job.pk}/"
    assert job.n_candidates == 3 and job.base_seed == 42 and job.settings["temperature"] == 0.5
    page = client.get(response["Location"]).content.decode()
    assert page.count('class="candidate"') == 3
    assert "Cancel job" in page


def test_free_prompt_jobs_need_a_prompt(cast: dict, language_model: LanguageModel) -> None:
    response = logged_in(cast["bob"]).post(
        "/p/newsroom/generate/", {"template": "", "seed_text": " ", "n_candidates": "1"}
    )
    assert response.status_code == 400 and "seed_text" in response.content.decode()


def test_model_text_and_variables_are_escaped_on_the_job_and_draft_pages(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    from generation import runner, services
    from generation.models import Candidate, Draft

    evil = "<script>alert(1)</script>"
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables={"headline": evil, "lede": evil},
        settings={"max_new_tokens": 3},
        n_candidates=1,
    )
    runner.job_claim_and_generate(job_id=job.pk, worker_name="w")
    Candidate.objects.filter(job=job).update(text=evil)
    Draft.objects.filter(job=job).update(body=evil)
    draft = Draft.objects.get(job=job)
    client = logged_in(cast["dave"])
    for url in [f"/p/newsroom/jobs/{job.pk}/", f"/p/newsroom/drafts/{draft.pk}/", "/p/newsroom/"]:
        page = client.get(url).content.decode()
        assert evil not in page
        assert "&lt;script&gt;" in page


def test_admins_edit_templates_and_each_save_is_a_new_version(cast: dict) -> None:
    client = logged_in(cast["alice"])
    response = client.post(
        "/p/newsroom/templates/new/",
        {
            "name": "Ad",
            "body": "Sell {{product}} to {{audience}}",
            "variables": "product: Product\naudience*: Audience",
            "system_prompt": "",
        },
    )
    assert response.status_code == 302
    template = PromptTemplate.objects.get(name="Ad")
    v1 = template.current_version
    assert v1.variables[1] == {
        "name": "audience",
        "label": "Audience",
        "required": False,
        "multiline": False,
    }
    response = client.post(
        f"/p/newsroom/templates/{template.pk}/",
        {"body": "Sell {{product}} now", "variables": "product: Product", "note": "shorter"},
    )
    assert response.status_code == 302
    assert list(template.versions.values_list("number", flat=True)) == [2, 1]
    v1.refresh_from_db()
    assert v1.body == "Sell {{product}} to {{audience}}", "old versions never change"


def test_a_template_with_an_undeclared_placeholder_is_refused(cast: dict) -> None:
    response = logged_in(cast["alice"]).post(
        "/p/newsroom/templates/new/", {"name": "X", "body": "About {{topic}}", "variables": ""}
    )
    assert response.status_code == 400 and "topic" in response.content.decode()


def test_editors_cannot_edit_templates(cast: dict) -> None:
    assert logged_in(cast["bob"]).get("/p/newsroom/templates/new/").status_code == 403
