"""Write the paraphrase set once with the studio's default model, and commit the texts.

How: 40 State of the Union paragraphs (40-90 words, fixed seed, from the ``sotu`` package, the
demo archive) are each given to SmolLM2-135M-Instruct (the default model, packaged GGUF loaded by
the transformers backend exactly as the worker loads it) with the prompt below, sampled at
temperature 0.7, top-p 0.9, seed 1, at most 140 new tokens. The outputs are written unedited to
``bench/data/paraphrases.jsonl`` with the source's title and text. Outputs that are empty or
shorter than 12 words are kept out (counted on stderr). Then a person read each output beside
its source and set ``is_paraphrase`` (33 of 40: the 135M model sometimes answers with remarks
about the rewriting, or drifts off the source); the benchmark's recall counts those 33.

The committed set was written by the earlier ``generation.engine`` path (``model.generate`` with
a torch sampler per row, removed in issue 18); the backend samples with the studio's own
sampler, so a rerun writes other texts, to be labelled again.

    .venv/bin/python bench/make_paraphrases.py   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django

django.setup()

from generation.backends import load_backend  # noqa: E402
from generation.backends.types import BackendConfig, SamplingSettings  # noqa: E402
from generation.defaults import DEFAULT_MODEL_SOURCE  # noqa: E402
from review.setup import sotu_rows  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "paraphrases.jsonl"
PROMPT = (
    "Rewrite the following paragraph in your own words. Keep every fact, change the wording "
    "and sentence structure. Answer with the rewritten paragraph only.\n\n{text}"
)


def pick_sources(count: int = 40, seed: int = 11) -> list[dict[str, str]]:
    rows = [r for r in sotu_rows() if 40 <= len(r.fields["text"].split()) <= 90]
    rng = random.Random(seed)
    return [r.fields for r in rng.sample(rows, count)]


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    cache = Path(os.environ.get("CONTENTSTUDIO_MODEL_CACHE", "var/models")).resolve()
    config = BackendConfig(
        backend="transformers", source_kind="package_gguf", source=DEFAULT_MODEL_SOURCE
    )
    backend = load_backend(config, cache_root=cache)
    settings = SamplingSettings(max_new_tokens=140, temperature=0.7, top_p=0.9)
    written = skipped = 0
    with OUT.open("w", encoding="utf-8") as out:
        for number, source in enumerate(pick_sources(), 1):
            prompt = backend.render_prompt(system="", user=PROMPT.format(text=source["text"]))
            [result] = backend.generate(prompt=prompt, n=1, seeds=[1], settings=settings)
            text = result.text.strip()
            if len(text.split()) < 12:
                skipped += 1
                continue
            out.write(
                json.dumps(
                    {
                        "source_title": source["title"],
                        "source_text": source["text"],
                        "paraphrase": text,
                        "model": DEFAULT_MODEL_SOURCE,
                        "settings": "temperature 0.7, top_p 0.9, seed 1, max_new_tokens 140",
                    }
                )
                + "\n"
            )
            out.flush()
            written += 1
            print(f"{number}/40 written={written} skipped={skipped}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
