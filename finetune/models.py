"""Fine-tuning runs, their audit trail and lifecycle, and the (model output, editor's final text)
pairs, with the approvals whose pair could not be kept."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q

from contentstudio.audit import AuditEvent
from contentstudio.models import Project
from contentstudio.transitions import WORK_TRANSITIONS, Lifecycle, WorkStatus, final_states
from generation.models import Device, Draft, LanguageModel, PromptTemplateVersion

# A run's states: queued (no worker yet), running (loading, training or evaluating), succeeded
# (the best weights are a new LanguageModel if they beat the base model on the validation
# texts, else nothing is registered), failed (``error`` says why, ``error_field`` names the
# input at fault), cancelled (the best weights so far were still measured, and registered if
# they beat the base).
RunStatus = WorkStatus
RUN_TRANSITIONS = WORK_TRANSITIONS
RUN_FINAL_STATES = final_states(RUN_TRANSITIONS)


class FineTuneRun(models.Model):
    """One fine-tuning of a base model on a project's texts, with its live progress."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="finetune_runs")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    base_model = models.ForeignKey(
        LanguageModel, on_delete=models.PROTECT, related_name="finetune_runs"
    )
    # The registered result (the best weights), set when the run ends with a checkpoint.
    result_model = models.OneToOneField(
        LanguageModel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="finetune_origin",
    )
    # {"archive": true, "drafts": false, "pairs": false, "template_id": null,
    #  "date_from": "", "date_to": ""}
    data = models.JSONField(default=dict)
    # Resolved trainer settings (finetune.training.config.TrainSettings).
    settings = models.JSONField(default=dict)
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.AUTO)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # What the worker is doing: loading | tokenising | base_eval | training | evaluating |
    # test | saving.
    phase = models.CharField(max_length=20, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    # [{"step", "epoch", "loss", "val_loss", "val_ppl", "lr", "elapsed"}, ...]
    history = models.JSONField(default=list, blank=True)
    # {"train": n, "validation": n, "test": n, "train_tokens": n, "test_tokens": n}
    counts = models.JSONField(default=dict, blank=True)
    # The estimate shown before the run started (finetune.training.estimate.Estimate).
    estimate = models.JSONField(default=dict, blank=True)
    seconds_left = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    # Training speed after the warm-up steps (loop.SPEED_SKIP_STEPS); what later estimates
    # use. Null for a run that stopped before any steady step.
    steady_tokens_per_second = models.FloatField(null=True, blank=True)
    parameters = models.PositiveBigIntegerField(null=True, blank=True)
    trainable_parameters = models.PositiveBigIntegerField(null=True, blank=True)
    base_test_ppl = models.FloatField(null=True, blank=True)
    test_ppl = models.FloatField(null=True, blank=True)
    best_val_ppl = models.FloatField(null=True, blank=True)
    # The base model's validation perplexity: a run registers a model only below it.
    base_val_ppl = models.FloatField(null=True, blank=True)
    best_step = models.PositiveIntegerField(null=True, blank=True)
    stopped_early = models.BooleanField(default=False)
    output_dir = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    error_field = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = "fine-tuning run"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="finetune_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Fine-tuning run {self.pk} of {self.base_model_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in RUN_FINAL_STATES

    @property
    def not_registered(self) -> bool:
        """It trained to the end (or was stopped) but beat the base at no checkpoint."""
        return (
            self.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED)
            and self.result_model_id is None
            and self.base_val_ppl is not None
        )

    @property
    def status_text(self) -> str:
        """The status as pages say it: "Succeeded, no better than the base: not registered"."""
        label = self.get_status_display()
        return f"{label}, no better than the base: not registered" if self.not_registered else label

    @property
    def ppl_ratio(self) -> float | None:
        if self.test_ppl and self.base_test_ppl:
            return self.test_ppl / self.base_test_ppl
        return None


class FineTuneEvent(AuditEvent):
    """The audit trail of a run: every status change, who and when."""

    run = models.ForeignKey(FineTuneRun, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} on run {self.run_id}"


# Every status change of a run goes through this: the table above, a conditional UPDATE, and a
# FineTuneEvent with from/to in the same transaction (contentstudio.transitions).
RUN_LIFECYCLE = Lifecycle(
    name="run",
    model=FineTuneRun,
    moves=RUN_TRANSITIONS,
    event_model=FineTuneEvent,
    event_fk="run",
)


class EditPair(models.Model):
    """What the model wrote and what the editor approved, kept at each approval: supervised
    fine-tuning data, and the edit distance of the acceptance dashboard."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="edit_pairs")
    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="edit_pairs")
    # The draft version that was approved (a draft reopened and approved again adds a pair).
    draft_version = models.PositiveIntegerField()
    model = models.ForeignKey(
        LanguageModel, null=True, on_delete=models.SET_NULL, related_name="edit_pairs"
    )
    model_name = models.CharField(max_length=100)
    template_version = models.ForeignKey(
        PromptTemplateVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="edit_pairs",
    )
    # The exact prompt the model saw (after the chat template): the input of the pair.
    prompt = models.TextField()
    model_output = models.TextField()
    final_text = models.TextField()
    # Word-level diff: [["=", "same words"], ["-", "removed"], ["+", "added"], ...]
    diff = models.JSONField(default=list)
    # Word edits between output and final text (data.word_diff), and that over the longer
    # text's word count (0..1).
    edit_distance = models.PositiveIntegerField()
    edit_ratio = models.FloatField()
    approved_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    seconds_to_approval = models.FloatField()

    class Meta:
        ordering = ["-approved_at"]
        indexes = [models.Index(fields=["project", "model", "-approved_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "draft_version"], name="edit_pair_once_per_version"
            ),
        ]

    def __str__(self) -> str:
        return f"Edit pair of draft {self.draft_id} v{self.draft_version}"


class MissedPair(models.Model):
    """An approval whose edit pair could not be kept (the approval itself stands). The pages
    that offer the pairs say how many are missing and why; keeping the pair later removes it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="missed_pairs")
    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="missed_pairs")
    draft_version = models.PositiveIntegerField()
    approved_at = models.DateTimeField()
    # The last failure, as the log has it (exception type and message).
    reason = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    failed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-failed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "draft_version"], name="missed_pair_once_per_version"
            ),
        ]

    def __str__(self) -> str:
        return f"Missed pair of draft {self.draft_id} v{self.draft_version}"


class EvaluationRun(models.Model):
    """The held-out test step: N archive documents no tuned model under test trained on, each
    turned into a brief, k candidates per variant (model, grounding on/off, settings) written
    through the product's backends, and each scored against the real document.

    ``document_ids`` is the split (recorded, never recomputed); ``training_ids`` the archive
    documents the variants' fine-tune runs trained or selected checkpoints on (recomputed from
    each run's data selection and seed when the evaluation was created, and kept here)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluations")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # [{"label": "tiny-gpt2, grounded", "model_id": 3, "model": "tiny-gpt2", "grounding": 3}]
    variants = models.JSONField(default=list)
    # Sampling settings shared by every variant (generation.backends.types.SamplingSettings).
    settings = models.JSONField(default=dict)
    k = models.PositiveIntegerField(default=2)
    seed = models.PositiveIntegerField(default=0)
    document_ids = models.JSONField(default=list)
    training_ids = models.JSONField(default=list, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # One row per (variant, document, candidate): evaluation.ROW_FIELDS.
    rows = models.JSONField(default=list, blank=True)
    # {"seconds": s, "tokens": n, "tokens_per_second": r, "source": "measured on ..."}
    estimate = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    error_field = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # Beaten by a timer thread while the worker runs it; the sweep fails a silent one.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="evaluation_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in RUN_FINAL_STATES
