"""A Chinese draft, end to end in a real headless Chromium against the real ASGI server and
worker: generated from a Chinese template and streamed, checked, found by a Chinese word in the
queue search, edited (the diff shows the characters added), re-checked and approved.

The model is a real one running real forward passes, but it is not a language model of Chinese:
the tiny GPT-2 of the other tests has a byte-level tokenizer trained on English, so its random
weights would stream English fragments and stray bytes. This test builds the same tiny GPT-2
(random weights) with a character-level tokenizer whose vocabulary is the Chinese characters of
a few sentences, so every token it samples is a whole Chinese character or punctuation mark:
the stream, the job page, the saved draft and its checks all carry Chinese text, though the
text itself is meaningless.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from generation.models import Draft, GenerationJob
from review.lifecycle import DraftStatus
from review.models import Policy, UnreadableLanguage
from tests.factories import make_draft
from tests.test_browser_review import (  # noqa: F401 - fixtures
    CHROMIUM_ARGS,
    _orm_beside_playwright,
    browser,
    login,
)

S = DraftStatus
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_indexes")]

CORPUS = (
    "随着深度学习技术的发展，自然语言处理领域涌现出了大语言模型。"
    "市政府周一宣布，新图书馆将于明年春天在河边开放，届时市民可以免费借阅图书。"
    "一场暴风雨袭击了沿海地区，气象部门提醒居民注意安全，渔船已经全部回港。"
    "学校的学生们在操场上举行了运动会，家长和老师都来为他们加油！"
)
HAN = re.compile(r"[\u4e00-\u9fff]")
ADDED = "市长发表了讲话。"


@pytest.fixture(scope="module")
def chinese_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 (random weights) whose tokens are single Chinese characters."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("models") / "tiny-gpt2-zh"
    chars = sorted(set(CORPUS))
    vocab = {"<|endoftext|>": 0, "[UNK]": 1} | {c: i + 2 for i, c in enumerate(chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="[UNK]",
        model_max_length=512,
    )
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=512,
        vocab_size=len(tokenizer),
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(config)
    # Random weights may sample end-of-text (or [UNK]) within the first few tokens, and a draft
    # of one character would leave nothing to check. One channel of the final layer norm is
    # held at 1 and only those two tokens read it, at -1e4: they are never sampled, and every
    # other token's logits are the random model's own.
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = 0.0
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[:2, 0] = -1e4
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_a_chinese_draft_is_streamed_checked_found_edited_and_approved(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    chinese_model_dir: Path,
) -> None:
    from generation import services as generation
    from generation.models import LanguageModel
    from review import services

    newsroom = cast["newsroom"]
    LanguageModel.objects.create(
        name="tiny-gpt2-zh",
        source_kind="local",
        source=str(chinese_model_dir),
        is_default=True,
        max_new_tokens_limit=256,
        max_new_tokens=40,
        temperature=0.9,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.0,
    )
    template = generation.template_create(
        project=newsroom,
        user=cast["alice"],
        name="新闻报道",
        system_prompt="你是一名严谨的新闻记者。",
        body="标题：{{headline}}\n导语：{{lede}}\n正文：",
        variables=[{"name": "headline"}, {"name": "lede", "multiline": True}],
    )
    version = template.current_version
    # The toxicity and sentence models read English only: this project lets such a draft
    # through to the queue with the reason shown.
    services.policy_get(project=newsroom)
    Policy.objects.filter(project=newsroom).update(unreadable_language=UnreadableLanguage.INFORM)
    # Another Chinese draft in the queue, which the search must leave out.
    other = make_draft(
        newsroom,
        cast["bob"],
        "学校的学生们在操场上举行了运动会。",
        status=S.AWAITING_REVIEW,
        title="运动会",
    )

    page = login(browser, asgi_server, "bob")
    page.goto(f"{asgi_server}/p/newsroom/generate/")
    page.select_option("#id_template", str(version.template_id))
    assert "新闻报道" in page.locator("#id_template option:checked").inner_text()
    page.fill(f"#var-{version.template_id}-headline", "暴风雨袭击沿海")
    page.fill(f"#var-{version.template_id}-lede", "周一，一场暴风雨袭击了沿海地区。")
    page.fill("#id_n_candidates", "1")
    page.click("#generate-form button[type=submit]")
    page.wait_for_url("**/jobs/*/")
    job = GenerationJob.objects.exclude(pk=other.job_id).get()
    assert "暴风雨袭击沿海" in job.variables["headline"]
    page.wait_for_function(
        "() => document.querySelector('#job-status').textContent === 'Succeeded'",
        timeout=120_000,
    )
    streamed = page.locator(".candidate [data-role=text]").first.text_content()
    draft = Draft.objects.get(job=job)
    assert streamed == draft.model_output, "the page shows exactly what was saved"
    assert len(HAN.findall(streamed)) >= 10 and "\ufffd" not in streamed
    # The prompt the model was given is the Chinese template, rendered.
    job.refresh_from_db()
    assert "标题：暴风雨袭击沿海" in job.prompt

    # The worker checks it; unreadable checks inform, so it reaches the queue.
    page.locator(".candidate [data-role=draft] a").first.click()
    page.wait_for_url(f"**/p/newsroom/drafts/{draft.pk}/**")
    page.wait_for_function(
        "() => document.querySelector('#draft-status').dataset.status === 'awaiting_review'",
        timeout=90_000,
    )
    page.reload()  # the editor's form carries the version the page was loaded with
    page.wait_for_selector("#action-approve")
    text = page.locator("#draft-text").inner_text()
    assert HAN.findall(streamed)[0] in text

    # e opens the editor; a Chinese sentence is added at the end.
    page.keyboard.press("e")
    page.wait_for_selector("#editor-section:not([hidden])")
    page.click("#editor")
    page.keyboard.press("Control+End")
    page.keyboard.insert_text(ADDED)
    with page.expect_navigation():
        page.click("#edit-save")
    assert "Saved as a new revision" in page.locator(".messages").inner_text()
    # The diff marks the added characters only: no whole line deleted and inserted again.
    assert "".join(page.locator("#model-diff ins").all_inner_texts()) == ADDED
    assert page.locator("#model-diff del").count() == 0
    page.wait_for_function(
        "() => document.querySelector('#draft-status').dataset.status === 'awaiting_review'",
        timeout=90_000,
    )

    # The queue's search finds the draft by a Chinese word of its edited text, and only it.
    page.goto(f"{asgi_server}/queue/")
    page.wait_for_selector(f'tr[data-draft="{other.pk}"]')
    page.keyboard.press("/")
    page.keyboard.insert_text("市长")
    page.keyboard.press("Enter")
    page.wait_for_url("**/queue/?*search=*")
    ids = page.eval_on_selector_all(
        "#queue-rows tr.queue-row", "rows => rows.map(r => Number(r.dataset.draft))"
    )
    assert ids == [draft.pk]

    page.goto(f"{asgi_server}/p/newsroom/drafts/{draft.pk}/")
    page.wait_for_selector("#action-approve")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.locator("#draft-status").inner_text() == "Approved"
    draft.refresh_from_db()
    assert draft.status == S.APPROVED
    assert draft.body.rstrip().endswith(ADDED) or ADDED in draft.body
    page.context.close()
