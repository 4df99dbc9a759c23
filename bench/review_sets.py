"""The labelled sets of ``bench_review.py``: which texts are test, which are dev, and the
same-genre texts drawn from the archive's own collection.

Every reported rate comes from a test split: the toxicity stand-in's ``TEST_FILES`` (never
trained or calibrated on, kept apart by the near-duplicate guard), the paraphrases of
``paraphrases_test.jsonl`` (other sources, prompt, temperature and seed than the dev split the
paraphrase thresholds were tuned on), and partial copies built here from archive paragraphs
inside same-genre filler (paragraphs of the same collection that are not in the archive).
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def training_sentences() -> set[str]:
    """The State of the Union sentences the toxicity heads train on as harmless examples."""
    from review.tools.train_toxicity_head import sotu_negatives

    return set(sotu_negatives(4000)) | set(sotu_negatives(1000, seed=14, min_words=2, max_words=5))


def trained_on(text: str, trained: set[str]) -> bool:
    return any(" ".join(s.split()) in trained for s in re.split(r"(?<=[.!?])\s+", text))


@dataclass
class Sets:
    toxic: list[str]  # toxicity test split, toxic
    harmless_tox: list[str]  # toxicity test split, harmless (incl. 300 unseen drafts)
    unseen_drafts: int  # how many of harmless_tox are the default model's unseen drafts
    unrelated: list[dict]  # plagiarism set: unrelated drafts (package summaries)
    paraphrases_dev: list[dict]  # where the paraphrase thresholds were tuned
    paraphrases_test: list[dict]
    same_genre: list[str]  # archive-collection paragraphs in neither index
    partial: list[dict]  # test: 25-30% of the draft from one archive paragraph


def toxicity_test_split() -> tuple[list[str], list[str], int]:
    from review.checks.toxicity import head as toxicity_head
    from review.tools import toxicity_eval
    from review.tools.train_toxicity_head import TEST_FILES

    toxic, harmless, drafts = [], [], 0
    for path in TEST_FILES:
        for row in toxicity_eval.read_labelled(path, known=toxicity_head.CATEGORIES):
            (toxic if row["categories"] else harmless).append(row["text"])
            drafts += path.name == "unseen_drafts.jsonl"
    return toxic, harmless, drafts


def test_paraphrases(*, labelled_only: bool = True) -> list[dict]:
    """Both variants of the test split; the outputs a person labelled as paraphrases."""
    rows = lines(DATA / "paraphrases_test.jsonl") + lines(DATA / "paraphrases_test_b.jsonl")
    return [p for p in rows if p.get("is_paraphrase") or not labelled_only]


def partial_cases(
    rows: dict[str, dict], sources: list[str], filler: list[str], *, count: int, seed: int = 5
) -> list[dict]:
    """``count`` drafts, each 25-30% one contiguous run of an archive paragraph (``sources``)
    placed at a sentence boundary inside whole sentences of same-genre paragraphs that are in
    no index (``filler``)."""
    rng = random.Random(seed)
    pool = [t for t in sources if len(rows[t]["text"].split()) >= 45]
    filler_sentences = [
        s
        for t in filler
        for s in re.split(r"(?<=[.!?])\s+", rows[t]["text"])
        if 6 <= len(s.split()) <= 40
    ]
    cases = []
    for title in rng.sample(pool, count):
        words = rows[title]["text"].split()
        run = rng.randint(30, min(60, len(words)))
        start = rng.randint(0, len(words) - run)
        copied = " ".join(words[start : start + run])
        share = rng.uniform(0.25, 0.30)
        want = round(run / share) - run  # filler words
        picked: list[str] = []
        at = rng.randrange(len(filler_sentences))
        while sum(len(s.split()) for s in picked) < want:
            picked.append(filler_sentences[at % len(filler_sentences)])
            at += 1
        # trim the last filler sentence so that the copied share stays within 25-30%
        extra = sum(len(s.split()) for s in picked) - want
        if extra > 0:
            last = picked[-1].split()
            picked[-1] = " ".join(last[: max(len(last) - extra, 3)]).rstrip(",;") + "."
        cut = rng.randint(1, len(picked))
        text = " ".join([*picked[:cut], copied, *picked[cut:]])
        cases.append(
            {
                "source_title": title,
                "text": text,
                "copied_share": round(run / len(text.split()), 3),
            }
        )
    return cases


def partial_dev_cases(
    rows: dict[str, dict],
    sources: list[str],
    filler: list[str],
    test: list[dict],
    *,
    count: int = 300,
    seed: int = 105,
) -> list[dict]:
    """The dev split of the partial copies: built as :func:`partial_cases` builds the test
    split, from archive paragraphs that no test case copies and filler paragraphs none of whose
    sentences is in a test case. The lexical check's anchors and run length were chosen on it
    (``bench/partial_dev.py``), never on the test split."""
    used = {c["source_title"] for c in test}
    test_text = " ".join(c["text"] for c in test)
    free = [
        t
        for t in filler
        if not any(
            s in test_text
            for s in re.split(r"(?<=[.!?])\s+", rows[t]["text"])
            if len(s.split()) >= 6
        )
    ]
    return partial_cases(rows, [t for t in sources if t not in used], free, count=count, seed=seed)


def unrelated_to(texts: list[str], archive: list[str]) -> list[str]:
    """``texts`` less the near duplicates (``review.tools.splits``) of an archive paragraph.

    The collection repeats itself (a President's yearly formula, a message quoting an earlier
    one): such a paragraph is a copy of the archive, not unrelated same-genre text, and a check
    that holds it is right. Decided by the guard alone, never by a check's output.
    """
    from review.tools.splits import near_duplicates

    copies = {pair.left for pair in near_duplicates(texts, archive)}
    return [t for i, t in enumerate(texts) if i not in copies]


def load(rows: dict[str, dict], archive_titles: list[str], outside: list[str]) -> Sets:
    """The sets, given the archive's paragraphs and the collection's paragraphs outside it."""
    toxic, harmless, drafts = toxicity_test_split()
    cases = lines(DATA / "plagiarism_set.jsonl")
    trained = training_sentences()
    clean = [t for t in outside if not trained_on(rows[t]["text"], trained)]
    same_genre = unrelated_to(
        [rows[t]["text"] for t in clean if len(rows[t]["text"].split()) >= 40][:600],
        [rows[t]["text"] for t in archive_titles],
    )[:400]
    sets = Sets(
        toxic=toxic,
        harmless_tox=harmless,
        unseen_drafts=drafts,
        unrelated=[c for c in cases if c["kind"] == "unrelated"],
        paraphrases_dev=[
            p for p in lines(DATA / "paraphrases.jsonl") if p.get("is_paraphrase", True)
        ],
        paraphrases_test=test_paraphrases(),
        same_genre=same_genre,
        partial=partial_cases(rows, archive_titles, clean[400:], count=200),
    )
    if os.environ.get("BENCH_SMOKE") == "1":  # a few of each, to try the code, not a figure
        for field in ("toxic", "harmless_tox", "unrelated", "same_genre", "partial"):
            setattr(sets, field, getattr(sets, field)[-8:])
        sets.unseen_drafts = min(sets.unseen_drafts, 8)
        sets.paraphrases_dev = sets.paraphrases_dev[:4]
        sets.paraphrases_test = sets.paraphrases_test[:4]
    return sets
