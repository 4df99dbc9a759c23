from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "review"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generation import grounding
        from generation import languages as generation_languages
        from review import receivers  # noqa: F401 - connects the signal receivers
        from review.checks.language import detect_language
        from review.services import retrieval

        # Generation may not import review: its worker finds the archive search here.
        grounding.register_retriever(retrieval.background_passages)
        # And the language detector, for the warning about a model's languages.
        generation_languages.register_detector(detect_language)
