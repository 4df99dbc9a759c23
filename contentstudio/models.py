"""The core domain: projects and the people who work in them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import validate_slug
from django.db import models


class ContentType(models.TextChoices):
    NEWS_REPORT = "news_report", "News report"
    AD_COPY = "ad_copy", "Ad copy"
    ARTICLE = "article", "Article"
    SCRIPT = "script", "Script"
    SOCIAL_POST = "social_post", "Social post"


class Role(models.TextChoices):
    # Configures the project: models, templates, rules, members; and everything an editor can.
    ADMIN = "admin", "Admin"
    # Edits, approves, rejects, requests changes, releases held drafts, starts generation jobs.
    EDITOR = "editor", "Editor"
    # Reads everything, comments and recommends; cannot change a draft's state.
    REVIEWER = "reviewer", "Reviewer"
    # Reads everything, changes nothing.
    VIEWER = "viewer", "Viewer"


# Higher rank includes the powers of every lower rank.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.REVIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True, validators=[validate_slug])
    description = models.TextField(blank=True)
    content_type = models.CharField(
        max_length=20, choices=ContentType.choices, default=ContentType.NEWS_REPORT
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class TokenScope(models.TextChoices):
    # Reads publications, drafts, check results and jobs of the token's project.
    READ = "read", "Read"
    # Also writes: requests generation jobs, publishes, corrects, unpublishes (as an editor).
    READ_WRITE = "read_write", "Read and write"


class ApiToken(models.Model):
    """A per-project key for integrations. Only a SHA-256 of the key is stored: the key itself is
    shown once, when it is created, and cannot be recovered (a lost key is revoked and replaced).
    A token acts with the role its scope allows, never more than its creator still holds."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the key, to tell tokens apart in lists and logs (not a secret).
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.READ)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope__in=TokenScope.values), name="api_token_scope_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) for {self.project}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class WorkerBeat(models.Model):
    """The heartbeat of one worker process (written where workers are processes of their own,
    on Redis): the workers page and the banner every page shows read it
    (contentstudio.liveness)."""

    # Celery's node name, stable across restarts of the same worker: "review@host".
    name = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    # Set by a clean shutdown; a killed worker just stops beating.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"Worker {self.name}"
