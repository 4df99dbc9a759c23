"""Publications (immutable versions with provenance), destinations and webhook deliveries.

Each stateful row has an audit table beside it: PublicationEvent and DeliveryEvent hold every
move with from/to (written by the lifecycles in ``publishing.lifecycles``), DestinationEvent
every change an admin makes to a destination (kept after the destination is deleted).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q

from contentstudio.audit import AuditEvent, actor_field
from contentstudio.models import Project
from generation.models import Draft


class PublicationStatus(models.TextChoices):
    # Waiting for ``scheduled_for``; the periodic task publishes it then.
    SCHEDULED = "scheduled", "Scheduled"
    # Live: its newest version is what destinations and the export API show.
    PUBLISHED = "published", "Published"
    # Killed: a kill version went to every destination; the export shows it as canceled.
    UNPUBLISHED = "unpublished", "Unpublished"
    # The schedule was cancelled by a person, or refused when its time came (``error`` says why).
    CANCELLED = "cancelled", "Cancelled"


class Publication(models.Model):
    """One draft's life as published content. Its texts live in immutable versions."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="publications")
    draft = models.OneToOneField(Draft, on_delete=models.CASCADE, related_name="publication")
    # The public identifier (ninjs uri, feed ids, webhook payloads): never the database id.
    guid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=12, choices=PublicationStatus.choices)
    # Headline, summary and tags: the current version's, or the scheduled ones until it exists.
    headline = models.CharField(max_length=300, blank=True)
    summary = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    current_version = models.PositiveIntegerField(default=0)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    scheduled_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    error = models.TextField(blank=True)
    first_published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Every change moves it (the API's "updated since" filter and cursor order use it).
    updated_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["project", "updated_at", "id"], name="publication_project_cursor"),
            models.Index(fields=["updated_at", "id"], name="publication_cursor"),
            models.Index(
                fields=["scheduled_for"],
                condition=Q(status="scheduled"),
                name="publication_due",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PublicationStatus.values), name="publication_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="scheduled") | Q(scheduled_for__isnull=False),
                name="publication_scheduled_has_time",
            ),
        ]

    def __str__(self) -> str:
        return self.headline or f"Publication {self.pk}"


class PublicationTag(models.Model):
    """The current tags of a publication, one row each, for the API's tag filter (a JSON list
    cannot be searched the same way on SQLite and PostgreSQL)."""

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE, related_name="tag_rows")
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["publication", "name"], name="publication_tag_unique")
        ]
        indexes = [models.Index(fields=["name", "publication"])]

    def __str__(self) -> str:
        return self.name


class VersionKind(models.TextChoices):
    # The first publication of the draft.
    PUBLISH = "publish", "Published"
    # A corrected text, replacing the previous version everywhere.
    CORRECTION = "correction", "Correction"
    # Unpublished: destinations take the item down.
    KILL = "kill", "Unpublished"


class ImmutableError(Exception):
    pass


class PublicationVersion(models.Model):
    """What was published, exactly, at one moment. Never changed after it is written: a
    correction or a kill is a new version."""

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=VersionKind.choices)
    headline = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    # Sanitised with contentstudio.html.sanitize; ``body_text`` is its plain text.
    body_html = models.TextField()
    body_text = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    byline = models.CharField(max_length=300)
    ai_disclosure = models.TextField()
    # The IPTC digital source type URI (trained algorithmic media, or composite when edited).
    digital_source_type = models.CharField(max_length=200)
    # Model, template, settings, seed, checks and scorers, reviewers' decisions (see provenance).
    provenance = models.JSONField(default=dict)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["publication", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["publication", "number"], name="publication_version_unique"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=VersionKind.values), name="publication_version_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number} ({self.kind}) of publication {self.publication_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ImmutableError("A publication version is never changed: write a new one.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableError("A publication version is never deleted.")

    @property
    def idempotency_key(self) -> str:
        """Names this version everywhere it is delivered (the webhook-id): a retry carries the
        same key, so a receiver that saw it already does nothing."""
        return f"pub_{self.publication.guid.hex}_v{self.number}"


class PublicationEvent(AuditEvent):
    """The audit trail of a publication: scheduled, published, corrected, unpublished, schedule
    cancelled or refused, delivery retried by hand."""

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE, related_name="events")
    # The move ("" -> scheduled when it is made; published -> published for a correction; the
    # same status twice for an act that moves nothing, such as a retried delivery). Blank on
    # rows written before the publication lifecycle existed.
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    action = models.CharField(max_length=30)
    version = models.PositiveIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["publication", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} on publication {self.publication_id}"


# --- Destinations and deliveries ---------------------------------------------------------------


class DestinationKind(models.TextChoices):
    # Any HTTPS endpoint: our JSON, signed as the Standard Webhooks specification says.
    GENERIC = "generic", "Generic JSON webhook"
    # WordPress REST API with an application password (posts created, then updated by id).
    WORDPRESS = "wordpress", "WordPress"
    # Ghost Admin API with an Admin API key (a short-lived JWT per request).
    GHOST = "ghost", "Ghost"


class Destination(models.Model):
    """A publishing system that receives a project's publications."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="destinations")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=DestinationKind.choices)
    url = models.URLField(max_length=500)
    # WordPress user name (the application password is the secret).
    username = models.CharField(max_length=150, blank=True)
    # Encrypted (Fernet, key derived from SECRET_KEY): the signing secret, the application
    # password or the Ghost Admin API key. Never shown again after it is entered.
    secret_encrypted = models.TextField()
    # The last characters, so admins can tell which secret is configured.
    secret_hint = models.CharField(max_length=8, blank=True)
    enabled = models.BooleanField(default=True)
    # A flush holds this lease while it sends, so deliveries to one destination go one at a
    # time and in order even with several workers.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Per-destination sequence of deliveries (their order).
    next_sequence = models.PositiveBigIntegerField(default=1)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="destination_unique_name"),
            models.CheckConstraint(
                condition=Q(kind__in=DestinationKind.values), name="destination_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class DestinationAction(models.TextChoices):
    CREATE = "create", "Created"
    ENABLE = "enable", "Enabled"
    DISABLE = "disable", "Disabled"
    DELETE = "delete", "Deleted"


class DestinationEvent(AuditEvent):
    """What admins did to a project's destinations. Kept when the destination is deleted (the
    row keeps its name); ``data`` holds kind, address and user name, never a secret or its
    hint."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="destination_events"
    )
    destination = models.ForeignKey(
        Destination, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    name = models.CharField(max_length=100)
    actor = actor_field(related_name="+")
    action = models.CharField(max_length=10, choices=DestinationAction.choices)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["project", "created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=DestinationAction.values),
                name="destination_event_action_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} of destination {self.name}"


class DeliveryStatus(models.TextChoices):
    # Waiting to be sent (first try, or a retry at ``next_attempt_at``).
    PENDING = "pending", "Waiting"
    # The receiver accepted it (2xx).
    DELIVERED = "delivered", "Delivered"
    # Retries ran out (or the receiver refused it for good); "retry now" sends it again.
    FAILED = "failed", "Failed"
    # A newer version of the same publication reached the destination first; sending this
    # one would put old text back, so it is not sent.
    SUPERSEDED = "superseded", "Superseded"


class Delivery(models.Model):
    """One version sent to one destination, with every attempt's outcome."""

    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries"
    )
    publication = models.ForeignKey(
        Publication, on_delete=models.CASCADE, related_name="deliveries"
    )
    version = models.ForeignKey(
        PublicationVersion, on_delete=models.CASCADE, related_name="deliveries"
    )
    sequence = models.PositiveBigIntegerField()
    event_type = models.CharField(max_length=40)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["destination", "sequence"]
        constraints = [
            # The idempotency key is per version: a version goes to a destination once.
            models.UniqueConstraint(fields=["destination", "version"], name="delivery_once"),
            models.UniqueConstraint(
                fields=["destination", "sequence"], name="delivery_unique_sequence"
            ),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["destination", "sequence"],
                condition=Q(status="pending"),
                name="delivery_pending",
            ),
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_due"
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk}: v{self.version_id} to {self.destination_id}"


class DeliveryEvent(AuditEvent):
    """One move of a delivery (delivered, failed, superseded, sent again by a person), written
    with the move. Each attempt's answer is in DeliveryAttempt; a failed attempt that leaves the
    delivery waiting for its retry is not a move."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=10)
    to_status = models.CharField(max_length=10)
    # The person who asked ("retry now"); None for the flush.
    actor = actor_field(related_name="+")
    action = models.CharField(max_length=20)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["delivery", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status} of delivery {self.delivery_id}"


class DeliveryAttempt(models.Model):
    """The log of one attempt (response code or error, how long it took)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    ok = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"Attempt {self.number} of delivery {self.delivery_id}"


class RemoteObject(models.Model):
    """The id a destination gave a publication (a WordPress post, a Ghost post), so later
    versions update it instead of creating another."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="remotes")
    publication = models.ForeignKey(Publication, on_delete=models.CASCADE, related_name="remotes")
    remote_id = models.CharField(max_length=200)
    # Ghost refuses an update that does not carry the post's current updated_at.
    remote_updated_at = models.CharField(max_length=64, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "publication"], name="remote_object_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.remote_id} at {self.destination_id}"


class FeedSettings(models.Model):
    """A project's feed for ordinary readers. Off until an admin turns it on: the studio's own
    feeds (``/api/v1/projects/<slug>/feed.*``) stay for members and tokens either way."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="feed_settings")
    # Anonymous readers may read /feeds/<slug>/feed.json and feed.atom (404 while off).
    public = models.BooleanField(default=False)
    # Where readers find a published article: ``{guid}`` and ``{slug}`` are filled in, and a
    # base without either gets the guid appended (https://news.example.com/a/{guid}).
    public_base_url = models.URLField(max_length=500, blank=True)
    updated_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feed settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(public=False) | ~Q(public_base_url=""),
                name="feed_public_has_base_url",
            )
        ]

    def __str__(self) -> str:
        return f"Feed of {self.project}"
