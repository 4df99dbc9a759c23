"""Every list of language models is scoped: a model tuned for a project (its weights and its
name come from that project's texts) is listed only beside that project; shared models are
listed everywhere. Checked on each page, API and admin list that names models."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from contentstudio import tokens
from contentstudio.models import Role, TokenScope
from contentstudio.services import membership_set
from generation.models import LanguageModel
from tests.factories import logged_in, make_draft

SHARED = "shared-model"
MINE = "newsroom-tuned"
THEIRS = "other-desk-tuned"


@pytest.fixture
def models(cast: dict) -> dict[str, LanguageModel]:
    def make(name: str, project: Any) -> LanguageModel:
        return LanguageModel.objects.create(
            name=name, source_kind="local", source=f"/nonexistent/{name}", project=project
        )

    return {
        SHARED: make(SHARED, None),
        MINE: make(MINE, cast["newsroom"]),
        THEIRS: make(THEIRS, cast["other"]),
    }


def named(content: bytes) -> set[str]:
    text = html.unescape(content.decode())
    return {name for name in (SHARED, MINE, THEIRS) if name in text}


def option_names(content: bytes, select_id: str) -> set[str]:
    text = html.unescape(content.decode())
    found = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', text, re.S)
    assert found, f"no select #{select_id}"
    return {name for name in (SHARED, MINE, THEIRS) if name in found.group(1)}


def test_the_queue_model_filter_lists_shared_models_and_those_of_the_users_projects(
    cast: dict, models: dict
) -> None:
    # given a draft in each project, so both queues have something to show
    make_draft(cast["newsroom"], cast["bob"], "A harbour story.", status="awaiting_review")
    make_draft(cast["other"], cast["eve"], "A market story.", status="awaiting_review")
    # when / then: each sees the shared model and their own project's tuned one only
    bob = logged_in(cast["bob"]).get("/queue/")
    assert option_names(bob.content, "f-model") == {SHARED, MINE}
    eve = logged_in(cast["eve"]).get("/queue/")
    assert option_names(eve.content, "f-model") == {SHARED, THEIRS}
    # a superuser's queue shows every project, so every project's models
    root = cast["alice"].__class__.objects.create_superuser("root", password="root-password-1")
    assert option_names(logged_in(root).get("/queue/").content, "f-model") == {
        SHARED,
        MINE,
        THEIRS,
    }


def test_the_models_api_lists_a_tokens_own_project_only(cast: dict, models: dict) -> None:
    # given alice, admin of both desks, with a token of the newsroom
    membership_set(project=cast["other"], user=cast["alice"], role=Role.ADMIN)
    _, key = tokens.token_create(
        project=cast["newsroom"], user=cast["alice"], name="cms", scope=TokenScope.READ
    )
    client = APIClient()
    # when the token lists the models
    response = client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {key}")
    # then the other desk's tuned model is not among them
    assert response.status_code == 200
    assert {row["name"] for row in response.json()} == {SHARED, MINE}
    # alice's own session sees both of her projects' models
    session = APIClient()
    session.force_authenticate(cast["alice"])
    assert {row["name"] for row in session.get("/api/v1/models/").json()} == {
        SHARED,
        MINE,
        THEIRS,
    }
    # and a token of the other desk sees the other desk's
    _, other_key = tokens.token_create(
        project=cast["other"], user=cast["eve"], name="feed", scope=TokenScope.READ
    )
    theirs = client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert {row["name"] for row in theirs.json()} == {SHARED, THEIRS}


def test_disabled_models_are_not_offered_by_the_api(cast: dict, models: dict) -> None:
    LanguageModel.objects.filter(name=MINE).update(enabled=False)
    client = APIClient()
    client.force_authenticate(cast["bob"])
    assert {row["name"] for row in client.get("/api/v1/models/").json()} == {SHARED}


@pytest.mark.parametrize(
    "path",
    [
        "/p/newsroom/",  # the project home's generate form
        "/p/newsroom/generate/",
        "/p/newsroom/finetune/",  # the fine-tuning form's base models
        "/p/newsroom/finetune/compare/",
        "/p/newsroom/finetune/acceptance/",  # the evaluation of models on this desk
    ],
)
def test_no_page_of_a_project_names_another_projects_model(
    cast: dict, models: dict, path: str
) -> None:
    # given alice is also a member of the other desk (so no membership check hides it)
    membership_set(project=cast["other"], user=cast["alice"], role=Role.ADMIN)
    response = logged_in(cast["alice"]).get(path)
    assert response.status_code == 200
    assert THEIRS not in named(response.content)


def test_the_generate_and_finetune_forms_offer_this_projects_models(
    cast: dict, models: dict
) -> None:
    alice = logged_in(cast["alice"])
    assert option_names(alice.get("/p/newsroom/generate/").content, "id_model") == {SHARED, MINE}
    assert option_names(alice.get("/p/newsroom/finetune/").content, "id_base_model") == {
        SHARED,
        MINE,
    }
    eve = logged_in(cast["eve"])
    assert option_names(eve.get("/p/other/generate/").content, "id_model") == {SHARED, THEIRS}


def test_a_job_for_another_projects_model_is_refused_without_naming_it(
    cast: dict, models: dict
) -> None:
    response = logged_in(cast["bob"]).post(
        "/p/newsroom/generate/", {"seed_text": "Write.", "model": str(models[THEIRS].pk)}
    )
    assert response.status_code == 400
    assert "No such model." in html.unescape(response.content.decode())
    assert THEIRS not in named(response.content)


def test_the_admin_model_list_shows_staff_the_models_of_their_projects(
    cast: dict, models: dict
) -> None:
    # given bob is staff with the permission to view models (not a superuser)
    bob = cast["bob"]
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(Permission.objects.get(codename="view_languagemodel"))
    client = logged_in(bob)
    # when he opens the model list and the other desk's model
    listing = client.get("/admin/generation/languagemodel/")
    theirs = client.get(f"/admin/generation/languagemodel/{models[THEIRS].pk}/change/")
    # then he sees the shared model and his desk's only
    assert listing.status_code == 200
    assert named(listing.content) == {SHARED, MINE}
    assert theirs.status_code == 302  # the admin sends an object it cannot find to the index
    # and a superuser sees every model
    root = cast["alice"].__class__.objects.create_superuser("root", password="root-password-1")
    assert named(logged_in(root).get("/admin/generation/languagemodel/").content) == {
        SHARED,
        MINE,
        THEIRS,
    }
