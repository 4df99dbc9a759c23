from django.apps import AppConfig


class FineTuneConfig(AppConfig):
    """Fine-tuning runs, the trainer, edit pairs and acceptance: an app above generation and
    review (it imports both; neither knows it). The label is the one it had as
    generation.finetune, so existing tables and migrations carry over unchanged."""

    name = "finetune"
    label = "finetune"
    verbose_name = "Fine-tuning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from finetune import receivers  # noqa: F401 - connects the receivers
