"""The JSON API under /api/v1/: jobs, templates, models, errors, membership checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from generation.models import GenerationJob, LanguageModel
from tests.conftest import wait_for

VARS = {"headline": "Storm hits the coast", "lede": "A storm hit the coast on Monday."}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_script_creates_a_job_follows_it_to_the_end_and_reads_the_drafts(
    worker: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    api = client_for(cast["bob"])
    templates = api.get("/api/v1/projects/newsroom/templates/").json()
    assert [t["name"] for t in templates] == ["News report"]
    response = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {
            "template": templates[0]["id"],
            "variables": VARS,
            "n_candidates": 2,
            "settings": {"max_new_tokens": 10},
            "seed": 5,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] in {"queued", "running"}
    final = wait_for(
        lambda: (r := api.get(f"/api/v1/jobs/{job_id}/").json())["status"] == "succeeded" and r
    )
    assert [c["seed"] for c in final["candidates"]] == [5, 6]
    assert all(c["text"] and c["draft_id"] for c in final["candidates"])
    assert final["settings"]["max_new_tokens"] == 10


def test_job_status_shows_the_text_so_far_of_a_running_job(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    from generation import stream

    api = client_for(cast["dave"])
    job_id = (
        client_for(cast["bob"])
        .post(
            "/api/v1/projects/newsroom/jobs/",
            {"template_version": news_template.pk, "variables": VARS, "n_candidates": 2},
            format="json",
        )
        .json()["id"]
    )
    GenerationJob.objects.filter(pk=job_id).update(status="running")
    js = stream.JobStream(
        job_id=job_id,
        n_candidates=2,
        tokens_per_frame=1,
        min_interval=0,
        max_delay=0,
        send=lambda *a: None,
    )
    js.step(["The storm", "A gale"])
    body = api.get(f"/api/v1/jobs/{job_id}/").json()
    assert [c["text"] for c in body["candidates"]] == ["The storm", "A gale"]
    assert body["seq"] == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"settings": {"temperature": -1}}, "settings.temperature"),
        ({"settings": {"max_new_tokens": 100000}}, "settings.max_new_tokens"),
        ({"variables": {**VARS, "nope": "x"}}, "variables.nope"),
        ({"variables": {"headline": "x", "lede": ""}}, "variables.lede"),
        ({"n_candidates": 12}, "n_candidates"),
        ({"n_candidates": "many"}, "n_candidates"),
        ({"template_version": None, "seed_text": ""}, "seed_text"),
        ({"template_version": 987654}, "template_version"),
        ({"model": 987654}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    payload: dict,
    field: str,
) -> None:
    body = {"template_version": news_template.pk, "variables": VARS, "n_candidates": 2, **payload}
    response = client_for(cast["bob"]).post("/api/v1/projects/newsroom/jobs/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not GenerationJob.objects.exists()


def test_cancel_of_a_finished_job_is_a_409(
    transactional_db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    from generation import runner

    api = client_for(cast["bob"])
    job_id = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {
            "template_version": news_template.pk,
            "variables": VARS,
            "n_candidates": 1,
            "settings": {"max_new_tokens": 3},
        },
        format="json",
    ).json()["id"]
    runner.job_claim_and_generate(job_id=job_id, worker_name="w")
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]


def test_cancel_of_a_queued_job_returns_it_cancelled(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    api = client_for(cast["bob"])
    job_id = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {"template_version": news_template.pk, "variables": VARS},
        format="json",
    ).json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_members_of_another_project_see_nothing(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    hold_queue: list,
) -> None:
    job_id = (
        client_for(cast["bob"])
        .post(
            "/api/v1/projects/newsroom/jobs/",
            {"template_version": news_template.pk, "variables": VARS},
            format="json",
        )
        .json()["id"]
    )
    eve = client_for(cast["eve"])
    assert [p["slug"] for p in eve.get("/api/v1/projects/").json()] == ["other"]
    assert eve.get("/api/v1/projects/newsroom/jobs/").status_code == 404
    assert eve.get("/api/v1/projects/newsroom/templates/").status_code == 404
    assert eve.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert eve.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    assert (
        eve.post("/api/v1/projects/newsroom/jobs/", {"seed_text": "x"}, format="json").status_code
        == 404
    )
    assert GenerationJob.objects.get(pk=job_id).status == "queued"


@pytest.mark.parametrize("who", ["charlie", "dave"])
def test_reviewers_and_viewers_read_but_cannot_create_or_cancel(
    db: None,
    cast: dict,
    language_model: LanguageModel,
    news_template: Any,
    who: str,
    hold_queue: list,
) -> None:
    job_id = (
        client_for(cast["bob"])
        .post(
            "/api/v1/projects/newsroom/jobs/",
            {"template_version": news_template.pk, "variables": VARS},
            format="json",
        )
        .json()["id"]
    )
    api = client_for(cast[who])
    assert api.get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert (
        api.post("/api/v1/projects/newsroom/jobs/", {"seed_text": "x"}, format="json").status_code
        == 403
    )
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 403


def test_anonymous_requests_are_refused(db: None, cast: dict) -> None:
    response = APIClient().get("/api/v1/projects/")
    # 401 with the scheme to use (project API tokens), and a JSON body with code and message.
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated" and response.json()["message"]


def test_session_auth_requires_the_csrf_token(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any
) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(cast["bob"])
    response = client.post("/api/v1/projects/newsroom/jobs/", {"seed_text": "x"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_the_openapi_schema_is_generated(db: None, cast: dict) -> None:
    response = client_for(cast["bob"]).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/jobs/{job_id}/cancel/" in response.content


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e999"])
@pytest.mark.parametrize("name", ["max_new_tokens", "top_k"])
def test_a_non_finite_integer_setting_is_a_400_naming_the_field(
    db: None, cast: dict, language_model: Any, news_template: Any, name: str, value: str
) -> None:
    client = Client()
    client.force_login(cast["bob"])
    response = client.post(
        "/api/v1/projects/newsroom/jobs/",
        json.dumps({"template": news_template.pk, "variables": VARS, "settings": {name: value}}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert f"settings.{name}" in response.json()


def test_a_body_over_the_upload_limit_gets_the_json_error_body(
    db: None, cast: dict, news_template: Any, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2**20
    client = Client()
    client.force_login(cast["bob"])
    body = json.dumps({"template": news_template.pk, "variables": VARS, "pad": "x" * 2**21})
    response = client.post("/api/v1/projects/newsroom/jobs/", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "The request body is larger than 1 MB.",
        "message": "The request body is larger than 1 MB.",
        "code": "request_too_large",
    }


def test_the_job_list_pages_by_cursor_and_new_jobs_never_shift_unread_pages(
    db: None, cast: dict, language_model: LanguageModel, news_template: Any, hold_queue: list
) -> None:
    from generation import services

    def create() -> int:
        return services.job_create(
            project=cast["newsroom"],
            user=cast["bob"],
            template_version=news_template,
            variables=VARS,
        ).pk

    made = [create() for _ in range(5)]
    api = client_for(cast["dave"])
    first = api.get("/api/v1/projects/newsroom/jobs/?limit=2").json()
    assert [j["id"] for j in first["results"]] == made[::-1][:2]
    # a job created while the client pages shows on a new first page, not in the unread ones
    create()
    seen = [j["id"] for j in first["results"]]
    url = first["next"]
    while url:
        page = api.get(url).json()
        seen += [j["id"] for j in page["results"]]
        url = page["next"]
    assert seen == made[::-1]
    # filters and bad input name the field
    cancelled = api.get("/api/v1/projects/newsroom/jobs/?status=cancelled").json()
    assert cancelled == {"next": None, "results": []}
    for query, field in [
        ("status=done", "status"),
        ("ordering=id", "ordering"),
        ("limit=0", "limit"),
        ("cursor=nonsense", "cursor"),
    ]:
        response = api.get(f"/api/v1/projects/newsroom/jobs/?{query}")
        assert response.status_code == 400 and field in response.json()["fields"], query
