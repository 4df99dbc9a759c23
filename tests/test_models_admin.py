"""Admins configure models: the check action loads a model in the worker and reports the load
time and a test output, or the exact error. Every model is in the Django admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from generation import model_runtime
from generation.models import LanguageModel
from tests.conftest import wait_for


def test_model_check_reports_load_time_and_a_test_output(
    db: None, language_model: LanguageModel
) -> None:
    checked = model_runtime.model_check(model_id=language_model.pk)
    assert checked.last_check_ok is True
    assert checked.last_check_load_seconds is not None
    assert "Loaded in" in checked.last_check_message
    assert "test output (24 tokens" in checked.last_check_message


def test_model_check_reports_the_exact_error(db: None, tmp_path: Path) -> None:
    broken = LanguageModel.objects.create(
        name="broken", source_kind="local", source=str(tmp_path / "nowhere")
    )
    checked = model_runtime.model_check(model_id=broken.pk)
    assert checked.last_check_ok is False
    assert str(tmp_path / "nowhere") in checked.last_check_message
    assert "does not exist" in checked.last_check_message


def test_the_admin_check_action_runs_in_the_worker(
    worker: None, admin_user: Any, language_model: LanguageModel
) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/generation/languagemodel/",
        {"action": "check_models", "_selected_action": [language_model.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Check queued" in response.content.decode()
    wait_for(lambda: LanguageModel.objects.get(pk=language_model.pk).last_check_at is not None)
    assert LanguageModel.objects.get(pk=language_model.pk).last_check_ok is True


@pytest.mark.parametrize(
    "path",
    [
        "/admin/contentstudio/project/",
        "/admin/contentstudio/membership/",
        "/admin/generation/languagemodel/",
        "/admin/generation/prompttemplate/",
        "/admin/generation/generationjob/",
        "/admin/generation/draft/",
        "/admin/review/archivedocument/",
        "/admin/review/importrun/",
        "/admin/review/policy/",
        "/admin/review/policyevent/",
        "/admin/review/checkresult/",
        "/admin/review/draftevent/",
        "/admin/review/comment/",
    ],
)
def test_every_model_has_an_admin_page(admin_client: Client, path: str) -> None:
    assert admin_client.get(path).status_code == 200


def test_non_staff_users_cannot_open_the_admin(cast: dict) -> None:
    client = Client()
    client.force_login(cast["alice"])  # a project admin is not a site admin
    response = client.get("/admin/generation/languagemodel/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
