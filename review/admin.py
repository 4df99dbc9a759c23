from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from contentstudio.admin_base import ProjectScopedAdmin, ReadOnlyAdmin
from review.models import (
    ArchiveDocument,
    Assignment,
    CheckResult,
    CheckRun,
    CheckSummary,
    Comment,
    DraftEvent,
    DraftRevision,
    EditLock,
    ImportRun,
    Policy,
    PolicyEvent,
)


@admin.register(ArchiveDocument)
class ArchiveDocumentAdmin(ProjectScopedAdmin):
    list_display = ["title", "project", "author", "license", "published_date", "imported_at"]
    list_filter = ["project", "license"]
    search_fields = ["title", "citation", "author"]
    readonly_fields = ["content_hash", "import_run", "imported_at"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The text is indexed: change it by importing, remove it on the archive page.
        return False


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    list_display = [
        "source_name",
        "project",
        "status",
        "processed",
        "imported",
        "duplicates",
        "created_at",
    ]
    list_filter = ["status", "project"]


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    # Changed on the project's Policy page only, so every change gets its PolicyEvent.
    list_display = ["project", "lexical_threshold", "semantic_threshold", "updated_at"]


@admin.register(PolicyEvent)
class PolicyEventAdmin(ReadOnlyAdmin):
    list_display = ["policy", "actor", "created_at"]


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = ["draft", "draft_version", "kind", "status", "engine", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(CheckRun)
class CheckRunAdmin(ReadOnlyAdmin):
    list_display = [
        "draft",
        "draft_version",
        "worker",
        "attempts",
        "claimed_at",
        "heartbeat_at",
        "finished_at",
    ]


@admin.register(CheckSummary)
class CheckSummaryAdmin(ReadOnlyAdmin):
    list_display = [
        "draft",
        "toxicity_max",
        "lexical_max",
        "semantic_share",
        "ethics_hits",
        "not_run",
    ]


@admin.register(DraftEvent)
class DraftEventAdmin(ReadOnlyAdmin):
    list_display = ["draft", "actor", "action", "from_status", "to_status", "created_at"]
    list_filter = ["action"]


@admin.register(DraftRevision)
class DraftRevisionAdmin(ReadOnlyAdmin):
    list_display = ["draft", "number", "author", "created_at"]


@admin.register(Comment)
class CommentAdmin(ReadOnlyAdmin):
    list_display = ["draft", "author", "kind", "created_at"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["draft", "assignee", "due_at", "assigned_by"]


@admin.register(EditLock)
class EditLockAdmin(ReadOnlyAdmin):
    list_display = ["draft", "user", "acquired_at", "expires_at"]
