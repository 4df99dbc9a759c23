"""Models declare the languages they write; a job in another language is warned about.

The warning is not an error: the generate form comes back once with it above the Model field
and "Generate anyway" goes on; the API creates the job and returns it in ``warnings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from generation import languages
from generation.defaults import DEFAULT_MODEL_SOURCE, LOCALISED_TEMPLATES
from generation.models import GenerationJob, LanguageModel

ZH_VARS = {"headline": "暴风雨袭击沿海", "lede": "周一，一场暴风雨袭击了沿海地区，数千户家庭停电。"}
EN_VARS = {"headline": "Storm hits the coast", "lede": "A storm cut power to thousands of homes."}


@pytest.fixture
def zh_template(cast: dict[str, Any]) -> Any:
    from generation import services

    spec = LOCALISED_TEMPLATES[0]
    template = services.template_create(
        project=cast["newsroom"],
        user=cast["alice"],
        name=spec["name"],
        system_prompt=spec["system_prompt"],
        body=spec["body"],
        variables=spec["variables"],
    )
    return template.current_version


@pytest.fixture
def english_model(language_model: LanguageModel) -> LanguageModel:
    LanguageModel.objects.filter(pk=language_model.pk).update(languages="en")
    language_model.refresh_from_db()
    return language_model


def test_languages_default_from_the_card_or_the_package(db: None, tmp_path: Path) -> None:
    card = tmp_path / "model"
    card.mkdir()
    (card / "README.md").write_text("---\nlicense: mit\nlanguage:\n- en\n- zh\n---\n# Model\n")
    local = LanguageModel.objects.create(name="local", source_kind="local", source=str(card))
    assert local.languages == "en,zh"
    assert local.languages_label == "English and Chinese"

    smol = LanguageModel.objects.create(
        name="smol", source_kind="package_gguf", source=DEFAULT_MODEL_SOURCE
    )
    assert smol.languages == "en" and smol.languages_label == "English"

    silent = LanguageModel.objects.create(name="silent", source_kind="local", source=str(tmp_path))
    assert silent.languages == "" and silent.languages_label == "not declared"

    # An admin's choice is kept, not replaced by the card's.
    local.languages = "*"
    local.save()
    local.refresh_from_db()
    assert local.languages == "*" and local.languages_label == "any language"


def test_a_bad_language_code_is_refused_naming_it(db: None) -> None:
    model = LanguageModel(name="x", source_kind="hub", source="org/model", languages="en, chinese")
    with pytest.raises(ValidationError) as caught:
        model.full_clean()
    assert "'chinese' is not an ISO 639-1 code" in str(caught.value.message_dict["languages"])


def test_warning_names_the_model_and_the_language(
    db: None, english_model: LanguageModel, zh_template: Any, news_template: Any
) -> None:
    warning = languages.language_warning(
        model=english_model, template_version=zh_template, variables=ZH_VARS, seed_text=""
    )
    assert warning is not None
    assert warning["field"] == "model" and warning["language"] == "zh"
    assert "tiny-gpt2 writes English; this template is in Chinese" in warning["message"]
    # An English template with a Chinese brief: the brief is named.
    warning = languages.language_warning(
        model=english_model, template_version=news_template, variables=ZH_VARS, seed_text=""
    )
    assert warning is not None and "this brief is in Chinese" in warning["message"]
    # A free prompt in English, and a model that writes Chinese too: nothing to say.
    assert (
        languages.language_warning(
            model=english_model,
            template_version=None,
            variables=None,
            seed_text="Write a short report about the storm that hit the coast on Monday.",
        )
        is None
    )
    english_model.languages = "en,zh"
    assert (
        languages.language_warning(
            model=english_model, template_version=zh_template, variables=ZH_VARS, seed_text=""
        )
        is None
    )


def test_generate_form_warns_once_then_generate_anyway_creates_the_job(
    db: None, client: Any, cast: dict, english_model: LanguageModel, zh_template: Any, hold_queue
) -> None:
    client.force_login(cast["bob"])
    url = "/p/newsroom/generate/"
    page = client.get(url).content.decode()
    assert "tiny-gpt2 (English)" in page

    form = {
        "template": str(zh_template.template_id),
        "model": str(english_model.pk),
        "n_candidates": "1",
        **{f"var.{zh_template.template_id}.{k}": v for k, v in ZH_VARS.items()},
    }
    first = client.post(url, form)
    assert first.status_code == 200
    body = first.content.decode()
    assert 'id="language-warning"' in body
    assert "tiny-gpt2 writes English; this template is in Chinese" in body
    assert "Generate anyway" in body
    assert not GenerationJob.objects.exists()

    confirmed = client.post(url, {**form, "language_confirmed": f"{english_model.pk}:zh"})
    assert confirmed.status_code == 302
    assert GenerationJob.objects.count() == 1

    # A confirmation for another language (or model) does not carry over.
    other = client.post(url, {**form, "language_confirmed": f"{english_model.pk}:fr"})
    assert other.status_code == 200 and 'id="language-warning"' in other.content.decode()
    assert GenerationJob.objects.count() == 1


def test_api_creates_the_job_and_returns_the_warning(
    db: None, cast: dict, english_model: LanguageModel, zh_template: Any, news_template: Any
) -> None:
    api = APIClient()
    api.force_authenticate(cast["bob"])
    response = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {"template_version": zh_template.pk, "variables": ZH_VARS},
        format="json",
    )
    assert response.status_code == 201
    (warning,) = response.json()["warnings"]
    assert warning["field"] == "model" and warning["code"] == "language_mismatch"
    assert warning["language"] == "zh"

    english = api.post(
        "/api/v1/projects/newsroom/jobs/",
        {"template_version": news_template.pk, "variables": EN_VARS},
        format="json",
    )
    assert english.status_code == 201 and english.json()["warnings"] == []

    models = api.get("/api/v1/models/").json()
    assert [m["languages"] for m in models if m["id"] == english_model.pk] == [["en"]]


def test_admin_model_page_shows_the_languages(
    db: None, admin_client: Any, english_model: LanguageModel
) -> None:
    listing = admin_client.get("/admin/generation/languagemodel/").content.decode()
    assert "Writes" in listing and "English" in listing
    page = admin_client.get(
        f"/admin/generation/languagemodel/{english_model.pk}/change/"
    ).content.decode()
    assert 'name="languages"' in page and 'value="en"' in page
