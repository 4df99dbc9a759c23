"""Dev split of the partial copies: where the lexical check's anchors and run length were chosen.

Builds the archive as ``bench_review.py`` does, the test split's partial copies (only to keep
apart from), and a dev split built the same way from other archive paragraphs and other filler
(``review_sets.partial_dev_cases``); checks the two apart with the near-duplicate guard; then
prints, for several minimum run lengths, the dev recall and the lexical holds of dev same-genre
paragraphs (outside the archive, not in the test split's same-genre set or filler; those that
near-duplicate an archive paragraph counted apart). Never reads a test figure.

    .venv/bin/python bench/partial_dev.py     # BENCH_QUICK=1: the 2,000-paragraph archive
"""

from __future__ import annotations

import random
import re
import sys

import bench_review as br  # sets up Django
import review_sets

from review import holds
from review.checks.plagiarism import LexicalIndex
from review.checks.plagiarism.index import _within, long_runs
from review.setup import sotu_rows
from review.tools.splits import check_apart, near_duplicates, rate_line


def main() -> None:
    rows = {r.fields["title"]: r.fields for r in sotu_rows()}
    cases = br.lines(br.DATA / "plagiarism_set.jsonl")
    dev_para = [p for p in br.lines(br.DATA / "paraphrases.jsonl") if p.get("is_paraphrase", True)]
    outputs = review_sets.test_paraphrases(labelled_only=False)
    wanted = {c["source_title"] for c in cases if c["source_title"]}
    wanted |= {p["source_title"] for p in dev_para + outputs}
    others = [t for t in rows if t not in wanted]
    random.Random(3).shuffle(others)
    inside = max(br.ARCHIVE_SIZE - len(wanted), 0)
    titles = sorted(wanted) + others[:inside]
    trained = review_sets.training_sentences()
    clean = [t for t in others[inside:] if not review_sets.trained_on(rows[t]["text"], trained)]
    test = review_sets.partial_cases(rows, titles, clean[400:], count=200)
    same_genre = set([t for t in clean if len(rows[t]["text"].split()) >= 40][:600])
    dev = review_sets.partial_dev_cases(rows, titles, clean[400:], test)
    leaks = check_apart({"dev": [c["text"] for c in dev], "test": [c["text"] for c in test]})
    print(f"dev {len(dev)}, test {len(test)} partial copies; near duplicates across: {len(leaks)}")
    test_text = " ".join(c["text"] for c in test)
    negatives = [
        rows[t]["text"]
        for t in clean[400:]
        if t not in same_genre
        and len(rows[t]["text"].split()) >= 40
        and not any(s in test_text for s in re.split(r"(?<=[.!?])\s+", rows[t]["text"]) if s)
    ]
    random.Random(9).shuffle(negatives)
    negatives = negatives[:500]
    copies = {p.left for p in near_duplicates(negatives, [rows[t]["text"] for t in titles])}

    archive = br.Archive([rows[t] for t in titles])
    index = LexicalIndex("partial-dev")
    index.add_many(archive.passage_text.items())

    def verified(text: str) -> list:  # every verified match; the rules below filter them
        return index.find_matches(
            text, fetch_texts=archive.fetch, min_similarity=101, min_run_words=0
        )

    def held(text: str, matches: list, run_words: int) -> bool:
        runs = long_runs(text, matches, min_words=run_words)
        kept = [
            m
            for m in matches
            if m["similarity"] >= 20 or any(_within(s, runs) for s in m["draft_spans"])
        ]
        br.matches_text["text"] = text
        return bool(holds.route([br.lexical_outcome(archive, kept)], br.POLICY))

    pos = [(c["text"], verified(c["text"])) for c in dev]
    neg = [(t, verified(t)) for t in negatives]
    for run_words in (15, 20, 25, 30, 10**6):
        name = f"run>={run_words}" if run_words < 10**6 else "passage similarity only"
        flags = [held(t, m, run_words) for t, m in neg]
        print(rate_line(f"dev_recall {name}", sum(held(t, m, run_words) for t, m in pos), len(pos)))
        dups = sum(f for i, f in enumerate(flags) if i in copies)
        print(
            rate_line(f"dev_same_genre_held {name}", sum(flags), len(flags)),
            f"({dups} of them near duplicates of the archive)",
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
