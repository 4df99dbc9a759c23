from django.apps import AppConfig


class PublishingConfig(AppConfig):
    """Publication, the export API and webhooks: the last step of a draft, on top of review.

    Moved out of ``review/`` (it was ``review.publishing``); the label stays ``publishing`` so
    its tables and migration history are the same, and a database created before the move
    migrates forward untouched.
    """

    name = "publishing"
    label = "publishing"
    verbose_name = "Publishing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from publishing import receivers  # noqa: F401  (connects to review's signals)
