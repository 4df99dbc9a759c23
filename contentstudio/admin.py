from __future__ import annotations

from django.contrib import admin

from contentstudio.admin_base import ProjectScopedAdmin, ReadOnlyAdmin
from contentstudio.models import ApiToken, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    list_display = ["name", "slug", "content_type", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are created and revoked on the project's API tokens page (the key is shown once
    there); the admin lists them without the hash."""

    list_display = ["name", "project", "prefix", "scope", "created_by", "revoked_at"]
    list_filter = ["scope"]
    exclude = ["key_hash"]
