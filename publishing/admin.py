"""Publishing in the admin: read-only (changes go through the services and pages, which keep
versions immutable, audit every act and never show a secret)."""

from __future__ import annotations

from django.contrib import admin

from contentstudio.admin_base import ReadOnlyAdmin
from publishing.models import (
    Delivery,
    DeliveryEvent,
    Destination,
    DestinationEvent,
    Publication,
    PublicationVersion,
)


@admin.register(Publication)
class PublicationAdmin(ReadOnlyAdmin):
    list_display = ["headline", "project", "status", "current_version", "updated_at"]
    list_filter = ["status", "project"]
    search_fields = ["headline"]


@admin.register(PublicationVersion)
class PublicationVersionAdmin(ReadOnlyAdmin):
    list_display = ["publication", "number", "kind", "headline", "created_at"]
    list_filter = ["kind"]

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Destination)
class DestinationAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "kind", "url", "enabled", "secret_hint"]
    list_filter = ["kind", "enabled"]
    # The encrypted secret stays out of the admin altogether.
    exclude = ["secret_encrypted"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["destination", "version", "status", "attempts", "last_status_code"]
    list_filter = ["status"]


@admin.register(DestinationEvent)
class DestinationEventAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "action", "actor", "created_at"]
    list_filter = ["action"]


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    list_display = ["delivery", "from_status", "to_status", "action", "actor", "created_at"]
    list_filter = ["to_status"]
