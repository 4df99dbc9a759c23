from django.apps import AppConfig


class FineTuneConfig(AppConfig):
    """Fine-tuning runs and learning from editors (its own app: own models and migrations)."""

    name = "generation.finetune"
    label = "finetune"
    verbose_name = "Fine-tuning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generation.finetune import receivers  # noqa: F401 - connects the receivers
