"""Write the test split of the paraphrase set by another process than the dev split.

Why: ``paraphrase_recall_test`` must come from paraphrases that no threshold was tuned on and
that were not made the way the tuned ones were. The dev split (``bench/data/paraphrases.jsonl``,
``bench/make_paraphrases.py``) asked the default model to "rewrite in your own words" at
temperature 0.7, seed 1. This split uses other source paragraphs (disjoint from the dev sources,
from the plagiarism set's and between the two variants) and other prompts and settings:

* variant a (``paraphrases_test.jsonl``): a "retell for a news reader" prompt, temperature
  0.95, top-p 0.95, seed 7;
* variant b (``PARAPHRASE_VARIANT=b``, ``paraphrases_test_b.jsonl``): a "sentence by sentence,
  same facts, same order" prompt, temperature 0.8, top-p 0.9, seed 8.

How: 130 State of the Union paragraphs (40-90 words, fixed seed) per variant each go to
SmolLM2-135M-Instruct (the studio's ONNX build when ``ONNX_DIR`` names one, else the packaged
GGUF through transformers; one thread), at most 110 new tokens. Outputs shorter than 12 words
are kept out; a leading "Here is ...:" is stripped. Then a person read every output beside its
source and set ``is_paraphrase``: true when the output restates most of the source's content
(loosely or with errors, as the 135M model does), false when it drifts off the source, talks
about the rewriting or degenerates into repetition. The benchmark's recall counts the true
ones. The committed files hold what was read: variant a's first 128 outputs (59 paraphrases)
and variant b's first 92 (48); variant b was stopped once the split held over 100.
Each line: ``{"source_title", "source_text", "paraphrase", "model", "settings", "process",
"is_paraphrase"}``.

    ONNX_DIR=var/models/onnx-int8 .venv/bin/python bench/make_test_paraphrases.py
    PARAPHRASE_VARIANT=b ONNX_DIR=var/models/onnx-int8 \\
        .venv/bin/python bench/make_test_paraphrases.py
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django

django.setup()

from django.conf import settings as django_settings  # noqa: E402

from bench.make_unseen_drafts import generation_config  # noqa: E402
from generation.backends import load_backend  # noqa: E402
from generation.backends.types import SamplingSettings  # noqa: E402
from generation.defaults import DEFAULT_MODEL_SOURCE  # noqa: E402
from review.setup import sotu_rows  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
PROMPT = (
    "Retell this passage for a news reader in plain modern English. Use different words and "
    "sentences, keep the facts and the order of the ideas. Write only the retelling.\n\n"
    "Passage: {text}"
)
# Two variants, both unlike the dev split's process; ``PARAPHRASE_VARIANT=b`` writes the second
# (other sources again, a sentence-by-sentence prompt, temperature 0.8, seed 8).
VARIANT = os.environ.get("PARAPHRASE_VARIANT", "a")
if VARIANT == "b":
    PROMPT = (
        "Paraphrase the passage below sentence by sentence for today's readers: the same facts "
        "in the same order, in new words. Output the paraphrase only.\n\n{text}"
    )
SETTINGS = SamplingSettings(
    max_new_tokens=110,
    temperature=0.8 if VARIANT == "b" else 0.95,
    top_p=0.9 if VARIANT == "b" else 0.95,
    top_k=50,
)
SEED = 8 if VARIANT == "b" else 7
OUT = DATA / ("paraphrases_test_b.jsonl" if VARIANT == "b" else "paraphrases_test.jsonl")
FRAMING = re.compile(r"^(here is|here's|sure|certainly)[^\n]*:\s*", re.IGNORECASE)


def used_titles() -> set[str]:
    titles: set[str] = set()
    for name in ("paraphrases.jsonl", "plagiarism_set.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                titles.add(json.loads(line).get("source_title") or "")
    return titles


def pick_sources(count: int = 130, seed: int = 29) -> list[dict[str, str]]:
    taken = used_titles()
    if VARIANT == "b":  # disjoint from variant a's sources too
        taken |= {s["title"] for s in _pick(taken, count, seed)}
        return _pick(taken, count, seed + 2)
    return _pick(taken, count, seed)


def _pick(taken: set[str], count: int, seed: int) -> list[dict[str, str]]:
    rows = [
        r
        for r in sotu_rows()
        if 40 <= len(r.fields["text"].split()) <= 90 and r.fields["title"] not in taken
    ]
    return [r.fields for r in random.Random(seed).sample(rows, count)]


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    config = generation_config()
    backend = load_backend(config, cache_root=Path(django_settings.MODEL_CACHE_DIR))
    done = set()
    if OUT.is_file():
        done = {json.loads(x)["source_title"] for x in OUT.read_text().splitlines() if x.strip()}
    written = skipped = 0
    with OUT.open("a", encoding="utf-8") as out:
        for number, source in enumerate(pick_sources(), 1):
            if source["title"] in done:
                continue
            prompt = backend.render_prompt(system="", user=PROMPT.format(text=source["text"]))
            [result] = backend.generate(prompt=prompt, n=1, seeds=[SEED], settings=SETTINGS)
            text = FRAMING.sub("", result.text.strip()).strip()
            if len(text.split()) < 12:
                skipped += 1
                continue
            row = {
                "source_title": source["title"],
                "source_text": source["text"],
                "paraphrase": text,
                "model": DEFAULT_MODEL_SOURCE,
                "settings": (
                    f"temperature {SETTINGS.temperature}, top_p {SETTINGS.top_p}, seed {SEED}, "
                    "max_new_tokens 110"
                ),
                "process": f"test split, variant {VARIANT}",
            }
            out.write(json.dumps(row) + "\n")
            out.flush()
            written += 1
            print(f"{number}/130 written={written} skipped={skipped}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
