from django.apps import AppConfig


class ContentStudioConfig(AppConfig):
    name = "contentstudio"
    verbose_name = "ContentStudio"
    default_auto_field = "django.db.models.BigAutoField"
