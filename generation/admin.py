from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from contentstudio.admin_base import ReadOnlyAdmin
from generation import tasks
from generation.models import (
    Candidate,
    Draft,
    GenerationJob,
    JobEvent,
    LanguageModel,
    PromptTemplate,
    PromptTemplateVersion,
)


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "source_kind",
        "source",
        "device",
        "enabled",
        "is_default",
        "last_check_ok",
        "last_check_load_seconds",
        "last_check_at",
    ]
    list_filter = ["enabled", "source_kind", "device"]
    readonly_fields = [
        "last_check_at",
        "last_check_ok",
        "last_check_message",
        "last_check_load_seconds",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "is_default"]}),
        ("Source", {"fields": ["source_kind", "source", "revision", "device", "dtype"]}),
        (
            "Default generation settings",
            {
                "fields": [
                    "max_new_tokens_limit",
                    "max_new_tokens",
                    "min_new_tokens",
                    "temperature",
                    "top_p",
                    "top_k",
                    "repetition_penalty",
                    "no_repeat_ngram_size",
                ]
            },
        ),
        (
            "Last check",
            {
                "fields": [
                    "last_check_at",
                    "last_check_ok",
                    "last_check_load_seconds",
                    "last_check_message",
                ]
            },
        ),
    ]
    actions = ["check_models"]

    @admin.action(description="Check: load in a worker and generate a test output")
    def check_models(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        # Runs on the generate queue so it proves what matters: the worker can load the model.
        for model in queryset:
            tasks.model_check.delay(model.pk)
        self.message_user(
            request,
            f"Check queued for {queryset.count()} model(s); the result appears in the "
            "'Last check' columns when the worker is done (reload this page).",
            messages.INFO,
        )


class VersionInline(admin.TabularInline):
    model = PromptTemplateVersion
    extra = 0
    fields = ["number", "system_prompt", "body", "variables", "note", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # versions are immutable: edit the template in the studio to add one


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "content_type", "archived"]
    list_filter = ["project", "content_type", "archived"]
    search_fields = ["name"]
    inlines = [VersionInline]


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    fields = ["index", "seed", "status", "completion_tokens", "finish_reason", "text"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    """The job's moves, in order: who or which worker, and why."""

    model = JobEvent
    extra = 0
    fields = ["created_at", "from_status", "to_status", "actor", "worker", "reason"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "status",
        "model",
        "n_candidates",
        "worker",
        "heartbeat_at",
        "created_at",
    ]
    list_filter = ["status", "project", "model"]
    inlines = [CandidateInline, JobEventInline]


@admin.register(Draft)
class DraftAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "project", "status", "model_name", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["title", "body"]
