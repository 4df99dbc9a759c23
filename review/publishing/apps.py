from django.apps import AppConfig


class PublishingConfig(AppConfig):
    """Publication, the export API and webhooks: its own app (label ``publishing``) with its own
    tables and migrations, inside ``review/`` because it is the last step of a draft's review."""

    name = "review.publishing"
    label = "publishing"
    verbose_name = "Publishing"
    default_auto_field = "django.db.models.BigAutoField"
