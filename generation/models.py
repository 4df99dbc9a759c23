# Over 500 lines: the generation app's tables in one module (each model short, one history).
"""Language models, prompt templates, generation jobs and the drafts they produce."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from contentstudio.audit import AuditEvent, actor_field
from contentstudio.models import ContentType, Project
from contentstudio.transitions import WORK_TRANSITIONS, Lifecycle, WorkStatus, final_states
from generation import languages as lang


class ModelSource(models.TextChoices):
    # A Hugging Face hub id ("HuggingFaceTB/SmolLM2-135M-Instruct"); needs the hub or its cache.
    HUB = "hub", "Hub id"
    # A directory on the worker's disk written by save_pretrained.
    LOCAL = "local", "Local directory"
    # "package:file.gguf": a GGUF file shipped inside an installed Python package, converted
    # once into the model cache directory, then loaded like a local directory.
    PACKAGE_GGUF = "package_gguf", "GGUF file in an installed package"


class Device(models.TextChoices):
    AUTO = "auto", "Auto (CUDA when present)"
    CPU = "cpu", "CPU"
    CUDA = "cuda", "CUDA"


class DType(models.TextChoices):
    AUTO = "auto", "Auto (fp32 on CPU, bf16 on CUDA)"
    FLOAT32 = "float32", "float32"
    FLOAT16 = "float16", "float16"
    BFLOAT16 = "bfloat16", "bfloat16"


class BackendKind(models.TextChoices):
    # PyTorch: any hub id, local directory or packaged GGUF; the GPU path (fp16/bf16 on CUDA).
    TRANSFORMERS = "transformers", "transformers (PyTorch)"
    # ONNX Runtime GenAI on a copy converted once (generation.backends.convert); fast on CPU.
    ONNX = "onnx", "ONNX Runtime GenAI"
    # llama.cpp on a GGUF file as it is (packaged or local), CPU; `make llamacpp` installs it.
    LLAMACPP = "llamacpp", "llama.cpp (GGUF, CPU)"
    # A server speaking the OpenAI API (vLLM, llama.cpp server, transformers serve, TGI).
    OPENAI = "openai", "OpenAI-compatible server"


class OnnxPrecision(models.TextChoices):
    AUTO = "auto", "Chosen by measurement (int4 if within 5% perplexity, else int8)"
    INT4 = "int4", "int4"
    INT8 = "int8", "int8"
    FP32 = "fp32", "fp32"


class ServerApi(models.TextChoices):
    COMPLETIONS = "completions", "/v1/completions (the studio applies the chat template)"
    CHAT = "chat", "/v1/chat/completions (the server applies its chat template)"


def _validate_languages(value: str) -> None:
    from django.core.exceptions import ValidationError

    try:
        lang.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


class LanguageModel(models.Model):
    """A model configuration that admins manage; workers load it once per process."""

    name = models.CharField(max_length=100, unique=True)
    source_kind = models.CharField(max_length=20, choices=ModelSource.choices)
    source = models.CharField(
        max_length=500,
        help_text="Hub id, absolute directory, or 'package:file.gguf' for a packaged GGUF.",
    )
    revision = models.CharField(max_length=100, blank=True, help_text="Hub branch, tag or commit.")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.AUTO)
    dtype = models.CharField(max_length=10, choices=DType.choices, default=DType.AUTO)
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    # The languages the model writes (generation.languages): a job in another is warned about.
    languages = models.CharField(
        max_length=200,
        blank=True,
        validators=[_validate_languages],
        help_text="ISO 639-1 codes of the languages this model writes, separated by commas "
        "(en, zh), or * for any. Left empty, it is taken from the model's card where known "
        "(SmolLM2: en); a job whose template or brief is in another language gets a warning.",
    )
    # Which backend runs the model (generation/backends/); the rest of the path is the same.
    backend = models.CharField(
        max_length=20, choices=BackendKind.choices, default=BackendKind.TRANSFORMERS
    )
    # ONNX: the precision asked for; the conversion writes where it went and what it measured.
    onnx_precision = models.CharField(
        max_length=10, choices=OnnxPrecision.choices, default=OnnxPrecision.AUTO
    )
    onnx_dir = models.CharField(max_length=500, blank=True)
    onnx_conversion = models.JSONField(default=dict, blank=True)
    # OpenAI-compatible server. The key is stored for the workers and never shown again.
    server_url = models.CharField(
        max_length=500, blank=True, help_text="Base URL with /v1, e.g. http://vllm.internal:8000/v1"
    )
    server_model = models.CharField(
        max_length=200, blank=True, help_text="The model name the server serves."
    )
    server_api_key = models.CharField(max_length=500, blank=True)
    server_api = models.CharField(
        max_length=20, choices=ServerApi.choices, default=ServerApi.COMPLETIONS
    )
    server_timeout = models.FloatField(
        default=60.0, validators=[MinValueValidator(0.1)], help_text="Seconds per read."
    )
    server_max_retries = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(10)]
    )
    server_sampling_extras = models.BooleanField(
        default=False,
        help_text="Also send top_k, repetition_penalty and min_tokens (vLLM understands them; "
        "transformers serve refuses fields it does not know).",
    )
    server_concurrent_requests = models.BooleanField(
        default=True,
        help_text="Send the candidates' requests at the same time. Untick for servers that seed "
        "one global generator (transformers serve): one after another, each seed then holds.",
    )
    server_honours_n = models.BooleanField(
        default=False,
        help_text="Send one request with n (vLLM) instead of one per candidate; candidates then "
        "no longer have a seed each.",
    )
    # Set for a model fine-tuned on one project's texts (the finetune app): only that
    # project may use it, since its weights have seen that project's archive and drafts.
    # Empty: every project may.
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="private_models",
    )
    # The most new tokens a request may ask for; prompt + output must also fit the context.
    max_new_tokens_limit = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(1)]
    )
    # Default generation settings; a request may override each.
    max_new_tokens = models.PositiveIntegerField(default=200, validators=[MinValueValidator(1)])
    min_new_tokens = models.PositiveIntegerField(default=0)
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0.0)])
    top_p = models.FloatField(
        default=0.95, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    top_k = models.PositiveIntegerField(default=50)
    repetition_penalty = models.FloatField(default=1.1, validators=[MinValueValidator(0.01)])
    no_repeat_ngram_size = models.PositiveIntegerField(default=0)
    # Written by the "check" action (a task on the generate queue, so it tests the worker).
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True)
    last_check_message = models.TextField(blank=True)
    last_check_load_seconds = models.FloatField(null=True, blank=True)
    # Per backend: {"onnx": {"ok": true, "message": "...", "at": "..."}, ...}
    backend_checks = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_model"
            ),
            models.CheckConstraint(
                condition=Q(max_new_tokens__lte=models.F("max_new_tokens_limit")),
                name="model_default_tokens_within_limit",
            ),
            models.CheckConstraint(
                condition=Q(min_new_tokens__lte=models.F("max_new_tokens")),
                name="model_min_tokens_below_max",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.languages.strip():
            # What the model says of itself (its card); stays empty when nothing is known.
            self.languages = ",".join(lang.default_languages(self))
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from urllib.parse import urlsplit

        from django.core.exceptions import ValidationError

        if self.backend == BackendKind.OPENAI:
            errors = {}
            parts = urlsplit(self.server_url or "")
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                errors["server_url"] = "A base URL like http://host:8000/v1 is required."
            if not self.server_model.strip():
                errors["server_model"] = "The name of the model the server serves is required."
            if errors:
                raise ValidationError(errors)

    @property
    def language_codes(self) -> tuple[str, ...]:
        """The declared languages (``("*",)``: any; ``()``: not declared)."""
        return lang.model_languages(self)

    @property
    def languages_label(self) -> str:
        """ "English", "English and Chinese", "any language", "not declared"."""
        return lang.describe(self.language_codes)

    def default_settings(self) -> dict[str, float | int]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }


class PromptTemplate(models.Model):
    """A named prompt of a project. Its text lives in versions; editing adds a version."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    content_type = models.CharField(
        max_length=20, choices=ContentType.choices, default=ContentType.NEWS_REPORT
    )
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="template_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def current_version(self) -> PromptTemplateVersion | None:
        return self.versions.order_by("-number").first()


class PromptTemplateVersion(models.Model):
    """An immutable version of a template: drafts point at the exact version they used."""

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    system_prompt = models.TextField(blank=True)
    # The user message with {{variable}} placeholders.
    body = models.TextField()
    # [{"name": "headline", "label": "Headline", "required": true, "multiline": false}, ...]
    variables = models.JSONField(default=list)
    # How many archive passages a job of this template asks for as background (0: none).
    background = models.PositiveSmallIntegerField(default=0)
    # How many more candidates a job of this template draws when none of its candidates covers
    # half of the brief's key terms (0: none; at most generation.quality.TOPUP_MAX).
    topup = models.PositiveSmallIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="template_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    @property
    def variable_names(self) -> list[str]:
        return [v["name"] for v in self.variables]


# A job's states: queued (no worker yet), running (loading the model or generating), succeeded
# (every candidate became a draft), failed (``error`` says why), cancelled (finished candidates
# stay as drafts). generation.services.job_transition is the only writer of ``status`` and
# records each move as a JobEvent.
JobStatus = WorkStatus
JOB_TRANSITIONS = WORK_TRANSITIONS
JOB_FINAL_STATES = final_states(JOB_TRANSITIONS)


class GenerationJob(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="jobs")
    template_version = models.ForeignKey(
        PromptTemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    variables = models.JSONField(default=dict, blank=True)
    seed_text = models.TextField(blank=True, help_text="Free prompt when no template is used.")
    # Archive passages asked for as background (0: none); the worker retrieves them.
    background = models.PositiveSmallIntegerField(default=0)
    # More candidates drawn when none of the first covers the brief (0: none), and what the
    # worker did: {"drawn": 2, "first": 4, "covered": 1, "note": "Drew 2 more: ..."}.
    topup = models.PositiveSmallIntegerField(default=0)
    topup_record = models.JSONField(default=dict, blank=True)
    # The exact text sent to the model (after the chat template), set when the job runs.
    prompt = models.TextField(blank=True)
    # Resolved generation settings: the model's defaults overridden by the request.
    settings = models.JSONField(default=dict)
    n_candidates = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(8)]
    )
    base_seed = models.BigIntegerField()
    # The draft this job regenerates, if any.
    parent_draft = models.ForeignKey(
        "Draft", null=True, blank=True, on_delete=models.SET_NULL, related_name="regenerations"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Written every few seconds by a timer thread of the worker from the claim on, also while
    # the job waits for the model to load or to be free; a stale one means the worker died (the
    # periodic sweep fails the job; a page view never decides that).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the job's message was last sent to the broker; the sweep sends it again when a queued
    # job waited much longer than that (the in-memory broker loses messages with its process).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(n_candidates__gte=1) & Q(n_candidates__lte=8),
                name="job_candidates_1_to_8",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="job_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in JOB_FINAL_STATES


class JobEvent(AuditEvent):
    """One move of a job (audit trail), written in the same transaction as the move."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=10)
    to_status = models.CharField(max_length=10)
    # The person who asked (cancel, create); None for the worker and the sweep.
    actor = actor_field(related_name="+")
    worker = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "pk"]

    def __str__(self) -> str:
        return f"Job {self.job_id}: {self.from_status} -> {self.to_status}"


JOB_LIFECYCLE = Lifecycle(
    name="job",
    model=GenerationJob,
    moves=JOB_TRANSITIONS,
    event_model=JobEvent,
    event_fk="job",
)


class CandidateStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    STREAMING = "streaming", "Writing"
    FINISHED = "finished", "Finished"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


# Why a candidate stopped, as the backends report it: "eos" (the model ended its text),
# "length" (it reached max_new_tokens: cut off, perhaps mid-sentence), "cancelled", "error".
FINISH_LENGTH = "length"
CUT_OFF_LABEL = "cut off at the token limit"


class Candidate(models.Model):
    """One of the texts a job writes. Its text is saved periodically while streaming."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="candidates")
    index = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    settings = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=CandidateStatus.choices, default=CandidateStatus.PENDING
    )
    text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=20, blank=True)  # see FINISH_LENGTH
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="candidate_unique_index"),
        ]

    def __str__(self) -> str:
        return f"Candidate {self.index} of job {self.job_id}"

    @property
    def quality_score(self) -> float | None:
        score = (self.quality or {}).get("score")
        return float(score) if score is not None else None

    @property
    def cut_off(self) -> bool:
        """It stopped at the token limit, not at an end the model chose."""
        return self.finish_reason == FINISH_LENGTH

    @property
    def tokens_per_second(self) -> float | None:
        if not (self.first_token_at and self.completion_tokens > 1):
            return None
        end = self.finished_at
        if end is None:
            return None
        seconds = (end - self.first_token_at).total_seconds()
        return (self.completion_tokens - 1) / seconds if seconds > 0 else None


# The state a draft is written in. Its review states, and the table that moves a draft between
# them, belong to the review app (review/lifecycle.py): generation only stores the value.
DRAFT_INITIAL_STATUS = "generated"


class Draft(models.Model):
    """A finished candidate with its full provenance; editors review and edit it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drafts")
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="drafts")
    candidate = models.OneToOneField(Candidate, on_delete=models.CASCADE, related_name="draft")
    title = models.CharField(max_length=300, blank=True)
    # What the model wrote (plain text), never changed; ``body`` is the current text as
    # sanitised HTML (see contentstudio.html): the model's paragraphs, then editors' edits.
    model_output = models.TextField()
    body = models.TextField()
    # The language of the current text (ISO 639-1, "und" when unsure; empty before it was
    # first detected): review detects it whenever the draft is written or edited.
    language = models.CharField(max_length=8, blank=True, default="")
    # One of review.lifecycle.DraftStatus; only review's transition service changes it.
    status = models.CharField(max_length=20, default=DRAFT_INITIAL_STATUS)
    # Optimistic concurrency: every change increments it; a stale write is refused.
    version = models.PositiveIntegerField(default=1)
    # Provenance, copied so that later edits of the model or template change nothing here.
    model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="drafts")
    model_name = models.CharField(max_length=100)
    model_source = models.CharField(max_length=500)
    model_revision = models.CharField(max_length=100, blank=True)
    template_version = models.ForeignKey(
        PromptTemplateVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="drafts",
    )
    variables = models.JSONField(default=dict, blank=True)
    prompt = models.TextField()
    settings = models.JSONField(default=dict)
    seed = models.BigIntegerField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=20, blank=True)  # as Candidate's
    # The provenance of the backend that wrote it, stored under its first name "engine" (the
    # column and the API key stay): {"backend", "version", "weights" (checksum or revision),
    # "precision", "device", "sampler", "threads", "server"}; generation.backends.types.Provenance.
    engine = models.JSONField(default=dict, blank=True)
    # The archive background put into the prompt (generation.grounding.BackgroundRecord):
    # {"requested", "query", "sources": [{document_id, title, start, end, score, text, ...}],
    #  "dropped", "trimmed", "note"}; {} when none was asked for.
    background = models.JSONField(default=dict, blank=True)
    # {"queue_seconds", "load_seconds", "ttft_seconds", "generation_seconds", "tokens_per_second"}
    timings = models.JSONField(default=dict)
    # Quality signals, computed once when the candidates are written (generation.quality):
    # {"score", "components", "reasons", "coverage", "relevance", "fluency", "repetition",
    # "completeness", "length", "unsupported", "register", "off_brief", "best", "version"}.
    # Relevance is added by the checks, where the sentence model is loaded. {}: written before.
    quality = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "status", "-created_at"]),
            # The approval queue's default view: drafts needing a person, oldest first.
            models.Index(
                fields=["project", "created_at", "id"],
                condition=Q(status__in=["awaiting_review", "changes_requested", "held"]),
                name="draft_queue_oldest",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Draft {self.pk}"

    @property
    def quality_score(self) -> float | None:
        score = (self.quality or {}).get("score")
        return float(score) if score is not None else None

    @property
    def cut_off(self) -> bool:
        """The model's text stopped at the token limit (it may end mid-sentence)."""
        return self.finish_reason == FINISH_LENGTH
