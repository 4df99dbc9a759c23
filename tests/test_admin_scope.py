"""The Django admin: staff who are not superusers see only the projects they administer, and
every model is named in proper English ("Deliveries", not "Deliverys")."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission

from tests.factories import logged_in, make_draft

pytestmark = pytest.mark.django_db

OURS = {"contentstudio", "generation", "review", "publishing", "finetune"}


def test_every_model_has_a_proper_plural_and_the_admin_index_shows_it(cast: dict) -> None:
    for model in apps.get_models():
        if model._meta.app_label not in OURS:
            continue
        singular, plural = str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
        if re.search(r"[^aeiou]y$", singular):
            assert plural.endswith("ies"), (model.__name__, plural)
        if re.search(r"(s|x|ch|sh)$", singular) and not singular.endswith("settings"):
            assert plural != singular + "s", (model.__name__, plural)
    root = cast["alice"].__class__.objects.create_superuser("root", password="root-password-1")
    index = logged_in(root).get("/admin/").content.decode()
    for right in ("Deliveries", "Policies", "Check summaries", "API tokens"):
        assert right in index, right
    for wrong in ("Deliverys", "Policys", "Check summarys", "Api tokens"):
        assert wrong not in index, wrong


def test_staff_see_only_the_jobs_and_drafts_of_projects_they_administer(cast: dict) -> None:
    # given alice, staff and admin of the newsroom only, allowed to view jobs and drafts
    alice = cast["alice"]
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    for codename in ("view_draft", "view_generationjob", "view_project", "view_membership"):
        alice.user_permissions.add(Permission.objects.get(codename=codename))
    mine = make_draft(cast["newsroom"], cast["bob"], "Our story.", title="Newsroom draft")
    theirs = make_draft(cast["other"], cast["eve"], "Their story.", title="Other desk draft")
    client = logged_in(alice)
    # when she opens the admin's lists
    drafts = client.get("/admin/generation/draft/").content.decode()
    jobs = client.get("/admin/generation/generationjob/").content.decode()
    projects = client.get("/admin/contentstudio/project/").content.decode()
    memberships = client.get("/admin/contentstudio/membership/").content.decode()
    # then only the newsroom's rows are there
    assert "Newsroom draft" in drafts and "Other desk draft" not in drafts
    assert f"/admin/generation/generationjob/{mine.job_id}/" in jobs
    assert f"/admin/generation/generationjob/{theirs.job_id}/" not in jobs
    assert "Newsroom" in projects and "Other desk" not in projects
    assert "eve" not in memberships
    assert client.get(f"/admin/generation/draft/{theirs.pk}/change/").status_code == 302
    # and a superuser still sees everything
    root = alice.__class__.objects.create_superuser("root", password="root-password-1")
    everything = logged_in(root).get("/admin/generation/draft/").content.decode()
    assert "Newsroom draft" in everything and "Other desk draft" in everything
