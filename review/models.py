# Over 500 lines: the review app's tables in one module (each model short, one history).
"""The review half of a draft's life: the archive it is compared against, the automated checks,
the project's policy, and everything people do to a draft (audit events, revisions, comments,
assignments, edit locks)."""

from __future__ import annotations

import uuid

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q

from contentstudio.audit import AuditEvent
from contentstudio.models import Project
from generation.models import Draft

# --- The archive --------------------------------------------------------------------------------


class ImportStatus(models.TextChoices):
    # Uploaded or requested; waiting for the worker.
    QUEUED = "queued", "Queued"
    # The worker is reading rows.
    RUNNING = "running", "Running"
    # Every row was read (bad rows are listed in ``errors``; the rest were imported).
    SUCCEEDED = "succeeded", "Finished"
    # The source could not be read at all (``error`` says why).
    FAILED = "failed", "Failed"


class ImportFormat(models.TextChoices):
    TEXT = "text", "Plain text file(s)"
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"


class ImportRun(models.Model):
    """One import of archive documents, with its progress and the rows it could not take."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_runs")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    source_name = models.CharField(max_length=300)
    format = models.CharField(max_length=10, choices=ImportFormat.choices)
    # Column -> field mapping for CSV/JSONL: {"text": "body", "title": "headline", ...}
    mapping = models.JSONField(default=dict, blank=True)
    # Defaults for fields no column provides (license, author...).
    defaults = models.JSONField(default=dict, blank=True)
    # An uploaded file is kept here until the worker has read it.
    upload = models.FileField(upload_to="imports/", blank=True)
    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    total = models.PositiveIntegerField(default=0)
    # Rows read and stored: written in the same transaction as each batch of documents, so a
    # worker that takes over a dead one's run resumes after it (review.services.imports).
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    # [{"line": 12, "message": "empty text"}, ...]
    errors = models.JSONField(default=list, blank=True)
    # The text encodings found, with the rows read in each: {"UTF-8": 12, "GB18030": 3}.
    encodings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # The worker holding the run, and its heartbeat (a timer thread): a run silent for
    # GENERATION_STALE_AFTER is taken over by another worker. Empty/None for an import run
    # in-process (the management command, the demo).
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.source_name}"

    @property
    def percent(self) -> int:
        return int(100 * self.processed / self.total) if self.total else 0


class ImportEvent(models.Model):
    """One move of an import (review.import_lifecycle), in the same transaction as the move."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    worker = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "pk"]

    def __str__(self) -> str:
        return f"Import {self.run_id}: {self.from_status} -> {self.to_status}"


class ArchiveDocument(models.Model):
    """A text the project's drafts must not copy: earlier stories, licensed material."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="archive")
    title = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    # ISO 639-1 code detected at import ("und" when unsure; empty: imported before detection).
    language = models.CharField(max_length=8, blank=True, default="")
    source_url = models.URLField(max_length=1000, blank=True)
    citation = models.CharField(max_length=1000, blank=True)
    author = models.CharField(max_length=300, blank=True)
    license = models.CharField(max_length=300, blank=True)
    published_date = models.DateField(null=True, blank=True)
    # sha256 of the normalised text: re-importing the same document changes nothing.
    content_hash = models.CharField(max_length=64)
    import_run = models.ForeignKey(
        ImportRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="archive_unique_text")
        ]

    def __str__(self) -> str:
        return self.title or f"Document {self.pk}"


class SourceKind(models.TextChoices):
    ARCHIVE = "archive", "Archive"
    PUBLISHED = "published", "Published item"


class SourcePassage(models.Model):
    """A piece (about 40-150 words) of something drafts are compared against: an archive
    document or a published draft. Both plagiarism indexes are built from these rows."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="passages")
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    document = models.ForeignKey(
        ArchiveDocument, null=True, blank=True, on_delete=models.CASCADE, related_name="passages"
    )
    draft = models.ForeignKey(
        Draft, null=True, blank=True, on_delete=models.CASCADE, related_name="source_passages"
    )
    number = models.PositiveIntegerField()
    # Offsets in the document's (or draft's) text, for the side-by-side view.
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()
    # Set when the sentence vectors are stored (embedding runs in the background).
    embedded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["project", "id"]),
            models.Index(
                fields=["project", "id"],
                condition=Q(embedded_at__isnull=True),
                name="passage_unembedded",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="archive", document__isnull=False, draft__isnull=True)
                | Q(kind="published", document__isnull=True, draft__isnull=False),
                name="passage_one_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.start}-{self.end})"

    @property
    def key(self) -> str:
        return f"{'a' if self.kind == SourceKind.ARCHIVE else 'p'}:{self.pk}"


class PassageSentence(models.Model):
    """One sentence of a passage and its embedding (float16 bytes) for the semantic check."""

    passage = models.ForeignKey(SourcePassage, on_delete=models.CASCADE, related_name="sentences")
    number = models.PositiveIntegerField()
    start = models.PositiveIntegerField()  # offsets within the passage text
    end = models.PositiveIntegerField()
    vector = models.BinaryField()

    class Meta:
        ordering = ["passage", "number"]
        constraints = [
            models.UniqueConstraint(fields=["passage", "number"], name="sentence_unique_number")
        ]

    def __str__(self) -> str:
        return f"Sentence {self.number} of passage {self.passage_id}"


class IndexState(models.Model):
    """What the plagiarism indexes of a project must contain. Processes compare these numbers
    with what they built: ``version`` moves with every change (catch up on new passages and on
    new ``SourceRemoval`` rows), ``epoch`` only when an index must start again from nothing
    (never for a removal: removals are applied one by one). ``segment`` names the shared,
    immutable base of the semantic index (a folder under DATA_DIR/indexes/project-<id>/);
    a rebuild writes a new one beside it and swaps this pointer."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="index_state")
    # Names this database's index: a shared (Redis) index built for another database that had
    # the same project id is never mistaken for this one's.
    token = models.UUIDField(default=uuid.uuid4, editable=False)
    version = models.PositiveBigIntegerField(default=0)
    epoch = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    # The embedding chain of the project (passages' ``embedded_at`` says what is done): one run
    # at a time holds a lease in the database, renewed by every batch. A run killed with its
    # worker leaves a lease that simply expires; then the next message takes over where the
    # last committed batch stopped. Not a cache lock: a lock that outlives its holder for
    # minutes while dropping every message is what left archives half-embedded for good.
    embed_owner = models.CharField(max_length=64, blank=True)
    embed_lease_until = models.DateTimeField(null=True, blank=True)
    # When the one message waiting for a held lease comes back (at most one waits).
    embed_retry_at = models.DateTimeField(null=True, blank=True)
    # The semantic base segment every process maps ("" = none yet: the in-process delta holds
    # every sentence). It holds the sentences with ids up to ``segment_upto`` that existed when
    # it was built, after the removals up to ``segment_removals_upto``; later sentences form
    # each process's small delta, later removals its tombstones.
    segment = models.CharField(max_length=100, blank=True)
    segment_upto = models.PositiveBigIntegerField(default=0)
    segment_removals_upto = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Index state of project {self.project_id}: v{self.version} e{self.epoch}"


class SourceRemoval(models.Model):
    """A source passage that left the indexes (archive document deleted, publication withdrawn
    or corrected). Every process applies the rows above its own mark to its indexes, instead of
    rebuilding them. Written under :func:`review.source_indexes.lock`, so ids grow in commit
    order."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # The index key of the passage: "a:<SourcePassage id>" or "p:<SourcePassage id>".
    key = models.CharField(max_length=40)
    removed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "id"])]

    def __str__(self) -> str:
        return f"Removal of {self.key} from project {self.project_id}"


# --- Policy -------------------------------------------------------------------------------------


class UnreadableLanguage(models.TextChoices):
    """What a check that cannot read a draft's language does (review.holds.route)."""

    HOLD = "hold", "Hold the draft"  # as any check that could not run
    INFORM = "inform", "Send it to the queue with the reason shown"


class Policy(models.Model):
    """How a project routes checked drafts, and its ethics rules. Edited by project admins."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="policy")
    # {"toxicity": 0.5, "severe_toxicity": 0.2, ...}: a category over its threshold holds.
    toxicity_thresholds = models.JSONField(default=dict)
    # Percent of a source passage found in the draft (lexical), cosine (semantic).
    lexical_threshold = models.FloatField(default=50.0)
    # Share of the draft's text taken from one source (a partial copy) that holds it.
    lexical_draft_share = models.FloatField(default=0.2)
    # Cosine at which a draft sentence is aligned with (paraphrases) a source sentence.
    semantic_threshold = models.FloatField(default=0.7)
    # Share of a draft's sentences aligned with one source that holds it...
    semantic_share = models.FloatField(default=0.3)
    # ...when they restate at least this share of that source's sentences.
    semantic_source_share = models.FloatField(default=0.25)
    # Rule kinds whose hits hold a draft: blocked_term, regex, pii, disclosure, claim.
    blocking_rule_kinds = models.JSONField(default=list)
    # Off by default: when on, a draft whose quality score (generation.quality) is under the
    # floor, or that covers fewer than half of its brief's key terms, is held with the reason.
    quality_hold = models.BooleanField(default=False)
    quality_floor = models.FloatField(default=0.45)
    # The ethics rule set (see review.checks.ethics.RuleSet).
    rules = models.JSONField(default=dict)
    unreadable_language = models.CharField(
        max_length=10, choices=UnreadableLanguage.choices, default=UnreadableLanguage.HOLD
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"Policy of {self.project}"


class PolicyEvent(AuditEvent):
    """The audit trail of a project's policy: who changed which fields, from what to what.

    Written in the transaction that changes the policy (``review.services.policies``), one row
    per save that changed something."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="events")
    # {field: {"from": old, "to": new}}; a threshold or rule of a dict field is named
    # "toxicity_thresholds.threat", "rules.blocked_terms".
    changes = models.JSONField(default=dict)

    class Meta:
        ordering = ["policy", "created_at", "pk"]
        indexes = [models.Index(fields=["policy", "created_at"])]

    def __str__(self) -> str:
        return f"Change of policy {self.policy_id} by {self.actor_id}"


# --- Checks -------------------------------------------------------------------------------------


class CheckKind(models.TextChoices):
    TOXICITY = "toxicity", "Toxicity"
    ETHICS = "ethics", "Ethics rules"
    LEXICAL = "lexical", "Plagiarism (lexical)"
    SEMANTIC = "semantic", "Plagiarism (semantic)"


class CheckStatus(models.TextChoices):
    # The check ran; ``scores``/``spans``/``matches`` hold what it found.
    OK = "ok", "Ran"
    # The check could not run (no model, index unavailable); ``reason`` says why. Never a pass.
    NOT_RUN = "not_run", "Not run"


class CheckResult(models.Model):
    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="checks")
    # The draft version that was checked; older results are kept but superseded.
    draft_version = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=CheckKind.choices)
    status = models.CharField(max_length=10, choices=CheckStatus.choices)
    reason = models.TextField(blank=True)
    engine = models.CharField(max_length=50)
    engine_version = models.CharField(max_length=50, blank=True)
    # Headline numbers for badges and routing: {"toxicity": 0.91, ...} / {"max_similarity": 62}
    scores = models.JSONField(default=dict)
    # Highlights in the draft: [{"start", "end", "kind", "label", "score"}]
    spans = models.JSONField(default=list)
    # Plagiarism matches with their sources, ethics hits, per-sentence toxicity: the raw result.
    details = models.JSONField(default=dict)
    timings = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["draft", "kind", "-draft_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "draft_version", "kind"], name="check_once_per_version"
            )
        ]
        indexes = [models.Index(fields=["draft", "draft_version"])]

    def __str__(self) -> str:
        return f"{self.kind} check of draft {self.draft_id} v{self.draft_version}"


class CheckRun(models.Model):
    """The claim on one draft version's checks: exactly one worker runs them.

    Created by the first worker to take the task (the unique constraint decides a race); its
    heartbeat is written while the checks run. A claim whose heartbeat stopped
    ``CHECKS_STALE_AFTER`` ago died with its worker, and another worker may take it over with a
    conditional UPDATE on the heartbeat it saw (see review.services.pipeline)."""

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="check_runs")
    draft_version = models.PositiveIntegerField()
    worker = models.CharField(max_length=200)
    attempts = models.PositiveSmallIntegerField(default=1)
    claimed_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "draft_version"], name="one_check_run_per_version"
            )
        ]
        indexes = [
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(finished_at__isnull=True),
                name="check_run_open",
            )
        ]

    def __str__(self) -> str:
        return f"Checks of draft {self.draft_id} v{self.draft_version} by {self.worker}"


class CheckSummary(models.Model):
    """The headline numbers of a draft's newest check run, for queue badges, filters and sorting
    without reading every CheckResult (one row per draft, updated when checks finish)."""

    draft = models.OneToOneField(Draft, on_delete=models.CASCADE, related_name="check_summary")
    draft_version = models.PositiveIntegerField()
    toxicity_max = models.FloatField(null=True, blank=True)
    toxicity_category = models.CharField(max_length=30, blank=True)
    ethics_hits = models.PositiveIntegerField(default=0)
    lexical_max = models.FloatField(null=True, blank=True)  # percent
    semantic_share = models.FloatField(null=True, blank=True)  # share of sentences
    not_run = models.PositiveSmallIntegerField(default=0)  # checks that could not run
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "check summaries"
        indexes = [
            models.Index(fields=["toxicity_max"]),
            models.Index(fields=["lexical_max"]),
        ]

    def __str__(self) -> str:
        return f"Check summary of draft {self.draft_id}"


# --- What people do to a draft -----------------------------------------------------------------


class DraftEvent(AuditEvent):
    """The audit trail: every state change and every action on a draft, who and when."""

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["draft", "created_at", "pk"]
        indexes = [models.Index(fields=["draft", "created_at"])]

    def __str__(self) -> str:
        return f"{self.action} on draft {self.draft_id}"


class DraftRevision(models.Model):
    """A saved text of a draft. Number 1 is the model's output."""

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=300, blank=True)
    body = models.TextField()
    author = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["draft", "number"]
        constraints = [
            models.UniqueConstraint(fields=["draft", "number"], name="revision_unique_number")
        ]

    def __str__(self) -> str:
        return f"Revision {self.number} of draft {self.draft_id}"


class CommentKind(models.TextChoices):
    COMMENT = "comment", "Comment"
    # A reviewer's recommendation: editors decide.
    RECOMMEND_APPROVE = "recommend_approve", "Recommends approval"
    RECOMMEND_REJECT = "recommend_reject", "Recommends rejection"
    RECOMMEND_CHANGES = "recommend_changes", "Recommends changes"


class Comment(models.Model):
    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="comments")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    author = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL
    )
    kind = models.CharField(max_length=20, choices=CommentKind.choices, default=CommentKind.COMMENT)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["draft", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.author} on draft {self.draft_id}"


class Assignment(models.Model):
    """Who should act on a draft next, and by when."""

    draft = models.OneToOneField(Draft, on_delete=models.CASCADE, related_name="assignment")
    assignee = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    assigned_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    assigned_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Draft {self.draft_id} -> {self.assignee}"


class EditLock(models.Model):
    """A soft lock: an editor has the draft open for editing; others see it until it expires."""

    draft = models.OneToOneField(Draft, on_delete=models.CASCADE, related_name="edit_lock")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Draft {self.draft_id} edited by {self.user}"
