"""Runs and edit pairs change only through the services: read-only in the admin."""

from __future__ import annotations

from django.contrib import admin

from contentstudio.admin_base import ReadOnlyAdmin
from finetune.models import EditPair, FineTuneEvent, FineTuneRun, MissedPair


@admin.register(FineTuneRun)
class FineTuneRunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "project", "base_model", "status", "step", "base_test_ppl", "test_ppl"]
    list_filter = ["status", "project"]


@admin.register(FineTuneEvent)
class FineTuneEventAdmin(ReadOnlyAdmin):
    list_display = ["run", "action", "from_status", "to_status", "actor", "created_at"]


@admin.register(EditPair)
class EditPairAdmin(ReadOnlyAdmin):
    list_display = ["draft", "model_name", "edit_distance", "edit_ratio", "approved_at"]
    list_filter = ["project"]


@admin.register(MissedPair)
class MissedPairAdmin(ReadOnlyAdmin):
    list_display = ["draft", "draft_version", "reason", "attempts", "failed_at"]
    list_filter = ["project"]
