"""Write the dev split of the paraphrase set by a third process, and the dev same-genre set.

Why: the paraphrase decision (``review/checks/semantic/pairs.py``) is fitted and its operating
point chosen on a dev split; the test split (``bench/make_test_paraphrases.py``: "retell for a
news reader" at temperature 0.95, seed 7; "sentence by sentence" at 0.8, seed 8) must come from
another process, and the old dev split (``bench/make_paraphrases.py``, 33 paraphrases, "rewrite
in your own words", temperature 0.7, seed 1) was too close to its sources to stand for them.
This split (``bench/data/paraphrases_dev.jsonl``) is made by a third process, other prompts and
temperatures on other sources, in three variants written one after the other:

* c: "tell a reader what this paragraph says, in your own words ... cover each of its points",
  temperature 1.0, top-p 0.95, seed 13; 18 outputs, 3 paraphrases (most drifted or talked about
  the request: stopped);
* d: "summarise this paragraph for a reader in your own words, keeping its facts", temperature
  1.0, top-p 0.95, seed 17; 5 outputs, 1 paraphrase (stopped likewise);
* e: "restate this passage for a student in simpler words; keep all of its facts and points",
  temperature 0.9, top-p 0.9, seed 23 on its first 18 sources, then seeds 23, 24 and 25 (three
  samples per source in one batch, ``DEV_SAMPLES=3``) on 70 more; 220 outputs, 101 paraphrases.
  Stopped once the split held over 100 paraphrases (111 of the 190 sources used in all).

Sources: State of the Union paragraphs of 40-90 words inside ``bench_review.py``'s lexical
archive (:func:`layout`, the benchmark's own construction) that are none of the old dev, test
or plagiarism-set sources, none of the test split's same-genre or filler paragraphs (those lie
outside the archive), and no near duplicate (``review.tools.splits``, word-shingle Jaccard) of a
test source, test output or outside paragraph. Fixed seed 41.

Model: SmolLM2-135M-Instruct, the default. The first 6 outputs of variant c came from the
packaged GGUF through transformers; the rest from the studio's ONNX conversion of the same GGUF
(``ONNX_DIR``, the "auto" conversion of ``manage.py studio_setup``), one thread. Outputs shorter
than 12 words are kept out; a leading "Here is ...:" is stripped.

Labels (``bench/data/paraphrases_dev_labels.json``, ``[title, seed, is_paraphrase]`` per output
line; ``label`` joins them into the output file): the session that wrote this script read every
output beside its source and set ``is_paraphrase`` true when the output restates most of the
source's content (its main claims, loosely or with errors as the 135M model writes, possibly
shortened, possibly wrapped in a remark about the request), false when it drifts off the source,
keeps only one of several points (a first sentence copied alone), talks about the passage or
the request instead of restating it, garbles who did what, or degenerates into repetition: 105
of the 243 outputs. The same rule as the test split's; one reader, no second opinion.

The dev same-genre set (:func:`dev_same_genre`): paragraphs of 40 words or more of the archive
that are outside the benchmark's semantic index, not trained on by the toxicity heads, no dev
source, and no near duplicate of a paragraph of the semantic index or of a test text: what a
same-genre draft meets, built as ``review_sets.load`` builds the test one, from other paragraphs.

    DEV_VARIANT=e DEV_SAMPLES=3 ONNX_DIR=<converted model> \\
        .venv/bin/python bench/make_dev_paraphrases.py   # appends, skips written sources
    .venv/bin/python bench/make_dev_paraphrases.py label   # joins the labels
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django  # noqa: E402

django.setup()

DATA = ROOT / "bench" / "data"
OUT = DATA / "paraphrases_dev.jsonl"
LABELS = DATA / "paraphrases_dev_labels.json"
PROMPT = (
    "Tell a reader what this paragraph says, in your own words and in a few sentences. Cover "
    "each of its points. Write only your version.\n\n{text}"
)
TEMPERATURE, TOP_P, SEED, MAX_NEW = 1.0, 0.95, 13, 120
# The second dev variant (``DEV_VARIANT=d``): a summarise prompt, seed 17, the same sampling.
VARIANT = os.environ.get("DEV_VARIANT", "c")
if VARIANT == "d":
    PROMPT = (
        "Summarise this paragraph for a reader in your own words, keeping its facts.\n\n"
        "Paragraph: {text}"
    )
    SEED = 17
# The third (``DEV_VARIANT=e``): a restate-for-a-student prompt, temperature 0.9, top-p 0.9,
# seed 23 (variants c and d mostly drifted or talked about the request: stopped early).
if VARIANT == "e":
    PROMPT = (
        "Restate this passage for a student in simpler words. Keep all of its facts and "
        "points; leave nothing out. Write only your restatement.\n\nPassage: {text}"
    )
    TEMPERATURE, TOP_P, SEED = 0.9, 0.9, 23
# Samples per source (seeds SEED, SEED + 1, ...): one batch, about the time of one sample.
SAMPLES = int(os.environ.get("DEV_SAMPLES", "1"))
COUNT = 190
FRAMING = re.compile(r"^(here is|here's|sure|certainly)[^\n]*:\s*", re.IGNORECASE)
# As bench_review.py builds its archive and semantic index.
ARCHIVE_SIZE, SEMANTIC_OTHERS = 12_000, 1_000


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def layout(rows: dict[str, dict]) -> tuple[list[str], list[str], int]:
    """``bench_review.py``'s archive: (archive titles, the other titles shuffled, how many of
    them are inside the archive). The semantic index holds the paraphrase sources and
    ``others[:SEMANTIC_OTHERS]``; the test's same-genre and filler paragraphs are
    ``others[inside:]``."""
    import review_sets

    cases = lines(DATA / "plagiarism_set.jsonl")
    para_dev = [p for p in lines(DATA / "paraphrases.jsonl") if p.get("is_paraphrase", True)]
    outputs = review_sets.test_paraphrases(labelled_only=False)
    wanted = (
        {c["source_title"] for c in cases if c["source_title"]}
        | {p["source_title"] for p in para_dev}
        | {p["source_title"] for p in outputs}
    )
    others = [t for t in rows if t not in wanted]
    random.Random(3).shuffle(others)
    inside = max(ARCHIVE_SIZE - len(wanted), 0)
    return sorted(wanted) + others[:inside], others, inside


def test_texts(rows: dict[str, dict], others: list[str], inside: int) -> list[str]:
    """Every test text a dev text must not near-duplicate: test sources and outputs, and the
    paragraphs outside the archive (the test's same-genre and filler paragraphs)."""
    import review_sets

    out = []
    for p in review_sets.test_paraphrases(labelled_only=False):
        out += [p["source_text"], p["paraphrase"]]
    return out + [rows[t]["text"] for t in others[inside:]]


def pick_sources(rows: dict[str, dict]) -> list[dict[str, str]]:
    from review.tools.splits import near_duplicates

    _, others, inside = layout(rows)
    pool = [t for t in others[:inside] if 40 <= len(rows[t]["text"].split()) <= 90]
    picked = random.Random(41).sample(pool, COUNT + 40)
    texts = [rows[t]["text"] for t in picked]
    close = {p.left for p in near_duplicates(texts, test_texts(rows, others, inside))}
    return [rows[t] for i, t in enumerate(picked) if i not in close][:COUNT]


def dev_same_genre(rows: dict[str, dict], count: int = 800) -> list[str]:
    """Same-genre dev paragraphs (module docstring); the dev sources are excluded."""
    from review_sets import test_paraphrases, trained_on, training_sentences, unrelated_to

    from review.tools.splits import near_duplicates

    _, others, inside = layout(rows)
    sources = {p["source_title"] for p in lines(OUT)} if OUT.is_file() else set()
    trained = training_sentences()
    pool = [
        t
        for t in others[SEMANTIC_OTHERS:inside]
        if t not in sources
        and len(rows[t]["text"].split()) >= 40
        and not trained_on(rows[t]["text"], trained)
    ]
    indexed = (
        sorted(
            {p["source_title"] for p in lines(DATA / "paraphrases.jsonl")}
            | {p["source_title"] for p in test_paraphrases(labelled_only=False)}
            | sources
        )
        + others[:SEMANTIC_OTHERS]
    )
    texts = unrelated_to(
        [rows[t]["text"] for t in pool[: count * 2]], [rows[t]["text"] for t in indexed]
    )
    close = {p.left for p in near_duplicates(texts, test_texts(rows, others, inside))}
    return [t for i, t in enumerate(texts) if i not in close][:count]


def generate() -> None:
    import torch
    from django.conf import settings as django_settings

    from bench.make_unseen_drafts import generation_config
    from generation.backends import load_backend
    from generation.backends.types import SamplingSettings
    from generation.defaults import DEFAULT_MODEL_SOURCE
    from review.setup import sotu_rows

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    rows = {r.fields["title"]: r.fields for r in sotu_rows()}
    sources = pick_sources(rows)
    config = generation_config()
    backend = load_backend(config, cache_root=Path(django_settings.MODEL_CACHE_DIR))
    settings = SamplingSettings(
        max_new_tokens=MAX_NEW, temperature=TEMPERATURE, top_p=TOP_P, top_k=50
    )
    done = {p["source_title"] for p in lines(OUT)} if OUT.is_file() else set()
    written = skipped = 0
    with OUT.open("a", encoding="utf-8") as out:
        for number, source in enumerate(sources, 1):
            if source["title"] in done:
                continue
            prompt = backend.render_prompt(system="", user=PROMPT.format(text=source["text"]))
            seeds = [SEED + i for i in range(SAMPLES)]
            results = backend.generate(prompt=prompt, n=len(seeds), seeds=seeds, settings=settings)
            for seed, result in zip(seeds, results, strict=True):
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
                        f"temperature {TEMPERATURE}, top_p {TOP_P}, seed {seed}, "
                        f"max_new_tokens {MAX_NEW}"
                    ),
                    "process": f"dev split, variant {VARIANT} (third process)",
                }
                out.write(json.dumps(row) + "\n")
                out.flush()
                written += 1
            print(f"{number}/{len(sources)} written={written} skipped={skipped}", file=sys.stderr)


def label() -> None:
    """Join the labels (``[title, seed, is_paraphrase]`` per output line, in file order)."""
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    rows = lines(OUT)
    if [(t, s) for t, s, _ in labels] != [(r["source_title"], _seed(r)) for r in rows]:
        raise SystemExit(f"{LABELS} does not match {OUT} line by line")
    for row, (_, _, value) in zip(rows, labels, strict=True):
        row["is_paraphrase"] = bool(value)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{sum(r['is_paraphrase'] for r in rows)} of {len(rows)} labelled paraphrases")


def _seed(row: dict) -> str:
    return row["settings"].split("seed ")[1].split(",")[0]


if __name__ == "__main__":
    label() if sys.argv[1:] == ["label"] else generate()
