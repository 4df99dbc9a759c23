"""The demo project's Chinese news template: created by studio_setup, shown on the generate
page in Chinese (escaped, not mangled), and rendered into a Chinese prompt."""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management import call_command

from generation.defaults import LOCALISED_TEMPLATES
from generation.services.templates import template_render


def test_studio_setup_gives_the_demo_project_a_chinese_news_template(
    db: None, settings: Any, tmp_path: Any, client: Any
) -> None:
    from contentstudio.models import Project

    settings.DATA_DIR = tmp_path
    call_command("studio_setup", "--skip-model", "--skip-archive", stdout=StringIO())
    call_command("studio_setup", "--skip-model", "--skip-archive", stdout=StringIO())
    demo = Project.objects.get(slug="demo")
    name = LOCALISED_TEMPLATES[0]["name"]
    template = demo.templates.get(name=name)  # once, though set-up ran twice
    version = template.current_version

    prompt = template_render(
        version=version,
        values={"headline": "暴风雨袭击沿海", "lede": "周一，一场暴风雨袭击了沿海地区。"},
    )
    assert "标题：暴风雨袭击沿海\n导语：周一，一场暴风雨袭击了沿海地区。" in prompt

    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="admin"))
    page = client.get("/p/demo/generate/").content.decode()
    assert name in page
    assert f'<label for="var-{template.pk}-headline">标题' in page
    assert f'<label for="var-{template.pk}-lede">导语' in page
