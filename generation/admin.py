from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from contentstudio.admin_base import ProjectScopedAdmin, ReadOnlyAdmin
from contentstudio.durations import seconds_text
from contentstudio.models import Project
from generation import selectors, tasks, tuning
from generation.models import (
    BackendKind,
    Candidate,
    Draft,
    GenerationJob,
    JobEvent,
    LanguageModel,
    PromptTemplate,
    PromptTemplateVersion,
)


class LanguageModelForm(forms.ModelForm):
    """The API key is write-only: stored for the workers, never rendered back into the page."""

    server_api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored and never shown again. Leave empty to keep the stored key.",
    )
    clear_server_api_key = forms.BooleanField(label="Remove the stored API key", required=False)

    class Meta:
        model = LanguageModel
        # The admin's fieldsets choose what shows; the form only adds the write-only key.
        exclude: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.server_api_key:
            self.fields[
                "server_api_key"
            ].help_text = (
                "A key is stored (not shown). Type a new one to replace it; leave empty to keep it."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_server_api_key"):
            cleaned["server_api_key"] = ""
        elif not cleaned.get("server_api_key"):
            cleaned["server_api_key"] = self.instance.server_api_key if self.instance.pk else ""
        self.instance.server_api_key = cleaned["server_api_key"]
        return cleaned


def _backend_checks(obj: LanguageModel) -> str:
    rows = []
    for name, label in BackendKind.choices:
        check = (obj.backend_checks or {}).get(name)
        if check:
            state = "OK" if check.get("ok") else "FAILED"
            rows.append(
                f"{label}: {state} at {check.get('at', '')[:19]}: {check.get('message', '')}"
            )
    return "\n".join(rows) or "No backend checked yet."


def tuning_summary(obj: LanguageModel) -> str:
    """This host's tuning record as text (the admin escapes it)."""
    from django.conf import settings

    record = tuning.read_record(settings.DATA_DIR)
    if not record:
        return "Nothing measured on this host yet: run `manage.py studio_tune`."
    host = record.get("fingerprint", {})
    lines = [f"Host: {host.get('cpu', '?')}, {host.get('cores', '?')} cores"]
    if not settings.TUNING:
        lines.append("Not applied: CONTENTSTUDIO_TUNING=0 (the settings serve as they are).")
    for section in ("generation", "engine", "embedding"):
        result = record.get(section)
        if not result:
            lines.append(f"{section}: not measured")
            continue
        about = f" on {result['model']}" if result.get("model") else ""
        if section == "generation" and result.get("model") and result["model"] != obj.name:
            about += " (another model; the choice is the worker's, for every ONNX model)"
        if section == "engine":
            about += " (ONNX Runtime on the conversion or llama.cpp on the GGUF; that model only)"
            if result.get("llamacpp"):
                about += f"; llama.cpp perplexity {result['llamacpp']}"
        lines.append(
            f"{section}{about}, measured {result.get('measured_at', '?')} "
            f"(load {', '.join(f'{x:.1f}' for x in result.get('load_average', []))}): "
            f"chosen {result.get('chosen')}, {result.get('speedup_vs_reference')}x the reference"
        )
        for trial in result.get("trials", []):
            if trial.get("error"):
                state = f"refused: {trial['error']}"
            elif not trial.get("same_outputs"):
                state = f"refused, outputs differ: {trial.get('difference')}"
            else:
                state = f"best {trial.get('best_s')} s, runs {trial.get('seconds')}"
            lines.append(f"  {trial.get('setting')}: {state}")
    return "\n".join(lines)


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    form = LanguageModelForm
    list_display = [
        "name",
        "backend",
        "source_kind",
        "source",
        "device",
        "enabled",
        "is_default",
        "languages_shown",
        "last_check_ok",
        "load_time",
        "last_check_at",
    ]
    list_filter = ["enabled", "backend", "source_kind", "device"]
    readonly_fields = [
        "languages_shown",
        "onnx_dir",
        "onnx_conversion",
        "backend_check_results",
        "host_tuning",
        "last_check_at",
        "last_check_ok",
        "last_check_message",
        "load_time",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "is_default"]}),
        (
            "Languages",
            {
                "fields": ["languages", "languages_shown"],
                "description": "The languages this model writes. The generate form and the API "
                "warn when a job's template or brief is in another one. Left empty, they are "
                "taken from the model's card (a local folder's README.md, a hub model's card "
                "in the local cache) or what is known of a packaged model.",
            },
        ),
        ("Source", {"fields": ["source_kind", "source", "revision", "device", "dtype"]}),
        (
            "Backend",
            {
                "fields": ["backend", "backend_check_results"],
                "description": "The backend that runs this model. Check each backend with the "
                "actions of the model list.",
            },
        ),
        (
            "ONNX Runtime GenAI",
            {"fields": ["onnx_precision", "onnx_dir", "onnx_conversion"]},
        ),
        (
            "This host's measured settings",
            {
                "fields": ["host_tuning"],
                "description": "What `manage.py studio_tune` (or a worker's start) measured on "
                "this host and chose: the fastest setting that writes the same outputs.",
            },
        ),
        (
            "OpenAI-compatible server (vLLM, llama.cpp server, transformers serve, TGI)",
            {
                "fields": [
                    "server_url",
                    "server_model",
                    "server_api_key",
                    "clear_server_api_key",
                    "server_api",
                    "server_timeout",
                    "server_max_retries",
                    "server_sampling_extras",
                    "server_concurrent_requests",
                    "server_honours_n",
                ]
            },
        ),
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
                    "load_time",
                    "last_check_message",
                ]
            },
        ),
    ]
    actions = [
        "check_models",
        "check_transformers",
        "check_onnx",
        "check_llamacpp",
        "check_openai",
        "convert_onnx",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LanguageModel]:
        # Superusers run the installation and see every model; other staff see the shared
        # models and those tuned for their own projects (a tuned model has seen its project's
        # texts), as everywhere else in the studio (generation.selectors.models_listed).
        models = super().get_queryset(request)
        if request.user.is_superuser:
            return models
        mine = Project.objects.filter(memberships__user=request.user)
        return models.filter(pk__in=selectors.models_listed(projects=mine).values("pk"))

    @admin.display(description="Writes")
    def languages_shown(self, obj: LanguageModel) -> str:
        return obj.languages_label

    @admin.display(description="Load time", ordering="last_check_load_seconds")
    def load_time(self, obj: LanguageModel) -> str:
        return seconds_text(obj.last_check_load_seconds)

    @admin.display(description="Measured here")
    def host_tuning(self, obj: LanguageModel) -> str:
        return tuning_summary(obj)

    @admin.display(description="Checks per backend")
    def backend_check_results(self, obj: LanguageModel) -> str:
        return _backend_checks(obj)

    def _queue_checks(
        self, request: HttpRequest, queryset: QuerySet[LanguageModel], backend: str
    ) -> None:
        for model in queryset:
            tasks.model_check.delay(model.pk, backend)
        self.message_user(
            request,
            f"{backend} check queued for {queryset.count()} model(s); the result appears under "
            "'Checks per backend' when the worker is done (reload the model's page).",
            messages.INFO,
        )

    @admin.action(description="Check with transformers (load in a worker, generate)")
    def check_transformers(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        self._queue_checks(request, queryset, BackendKind.TRANSFORMERS)

    @admin.action(description="Check with ONNX Runtime GenAI (needs a conversion)")
    def check_onnx(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        self._queue_checks(request, queryset, BackendKind.ONNX)

    @admin.action(description="Check with llama.cpp (a GGUF model; needs `make llamacpp`)")
    def check_llamacpp(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        self._queue_checks(request, queryset, BackendKind.LLAMACPP)

    @admin.action(description="Check the OpenAI-compatible server (models list, generate)")
    def check_openai(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        self._queue_checks(request, queryset, BackendKind.OPENAI)

    @admin.action(description="Convert to ONNX (once; checked by perplexity), then check it")
    def convert_onnx(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        for model in queryset:
            tasks.model_convert_onnx.delay(model.pk)
        self.message_user(
            request,
            f"Conversion queued for {queryset.count()} model(s) on the generate queue; the "
            "outcome appears under 'Checks per backend' (about a minute for a small model).",
            messages.INFO,
        )

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
class PromptTemplateAdmin(ProjectScopedAdmin):
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
