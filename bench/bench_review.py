# Over 500 lines: one script builds every labelled review set and measures each check on it.
"""Benchmark of the review checks as editors meet them: accuracy on labelled sets, and speed
against what a user would pick instead, measured side by side in this run.

Run from the repository root: ``.venv/bin/python bench/bench_review.py`` (``BENCH_QUICK=1``:
a 2,000-paragraph archive instead of 12,000; ``BENCH_PARAPHRASE_ONLY=1``: the paraphrase
figures alone). One ``name: value`` line per figure on stdout;
every rate with its n and 95% Wilson interval beside it. Every rate comes from a test split
(``bench/review_sets.py``): nothing in it was trained on, calibrated on or tuned on, and the
near-duplicate guard (``review.tools.splits``) keeps it apart from what was.

* ``review_false_hold_rate_benign_test``: harmless test texts held by any check (toxicity,
  lexical, semantic): the toxicity test split's harmless texts (news and ad sentences, package
  summaries, 300 drafts the default model wrote from briefs no calibration used), the
  plagiarism set's 300 unrelated drafts, and 400 same-genre paragraphs of the archive's
  collection that are in neither index and near-duplicate no archive paragraph. Goal
  <= 0.01. ``..._baseline``: alt-profanity-check alone at 0.5 with datasketch for plagiarism.
* ``toxicity_recall_test``: toxic test sentences held (at least 200, four categories), goal
  >= 0.9; ``..._baseline_profanity_check``: alt-profanity-check alone at 0.5.
* ``paraphrase_recall_test``: the default model's paraphrases of archive paragraphs made by
  another process than the dev split (``make_test_paraphrases.py``: other sources, prompt,
  temperature, seed), the outputs a person labelled as paraphrases; goal >= 0.8. How many of
  the other outputs (drifted off the source) were held goes to stderr.
  ``paraphrase_recall_dev``: the dev split the paraphrase thresholds were tuned on, for
  comparison only.
* ``paraphrase_false_flag_same_genre``: the same-genre paragraphs above held by the lexical or
  semantic check. Goal <= 0.01.
* ``plagiarism_partial_recall_test``: 200 drafts with 25-30% of their words one run of an
  archive paragraph, inside same-genre filler (paragraphs outside the archive). Goal >= 0.95.
  ``plagiarism_partial_recall`` (the plagiarism set's ~30% partial copies in package-summary
  filler), ``plagiarism_source_top1`` and ``plagiarism_false_flag_rate`` as before.
* Each ``..._baseline_datasketch``: datasketch's own tool for "which passages does this draft
  contain": ``MinHashLSHEnsemble`` (containment >= 0.2, 128 permutations, 5-word shingles,
  passages hashed with ``MinHash.bulk``), its candidates verified and routed as ours are.
* ``plagiarism_speedup_vs_datasketch``: p95 time of a datasketch ``MinHashLSH`` check at equal
  recall (same passages, queried with the same draft windows, hashed with ``MinHash.bulk``) /
  p95 of ours (``LexicalIndex.find_matches``), both then verifying candidates the same way.
  Goal >= 1.

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

from django.conf import settings  # noqa: E402

from review import holds  # noqa: E402
from review.checks import containment, semantic, toxicity  # noqa: E402
from review.checks.plagiarism import SHINGLE_WORDS, LexicalIndex, split_passages  # noqa: E402
from review.checks.plagiarism.compare import DraftText, verify  # noqa: E402
from review.checks.semantic import pairs  # noqa: E402
from review.checks.semantic.pairs import pair_features  # noqa: E402
from review.checks.toxicity import head as toxicity_head  # noqa: E402
from review.setup import sotu_rows  # noqa: E402
from review.tools.splits import rate_line  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import review_sets  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
# Only the paraphrase figures (``paraphrase_recall_test``, ``paraphrase_recall_dev``,
# ``paraphrase_false_flag_same_genre``): no datasketch side, copies, toxicity or benign texts.
PARAPHRASE_ONLY = os.environ.get("BENCH_PARAPHRASE_ONLY") == "1"
ARCHIVE_SIZE = 2_000 if QUICK else 12_000
SEMANTIC_OTHERS = 300 if QUICK else 1_000
DATA = ROOT / "bench" / "data"
# A passage is a candidate when this share of the draft's shingles lies in it (containment).
ENSEMBLE_CONTAINMENT = 0.2


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
POLICY = holds.PolicyView(
    toxicity_thresholds=holds.DEFAULT_TOXICITY_THRESHOLDS,
    lexical_threshold=holds.DEFAULT_LEXICAL_THRESHOLD,
    semantic_threshold=holds.DEFAULT_SEMANTIC_THRESHOLD,
    semantic_share=holds.DEFAULT_SEMANTIC_SHARE,
    semantic_source_share=holds.DEFAULT_SEMANTIC_SOURCE_SHARE,
    blocking_rule_kinds=holds.DEFAULT_BLOCKING_RULE_KINDS,
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
    pieces: dict[str, str],
    wholes: dict[str, str],
) -> dict:
    """The semantic check's outcome as ``source_checks.run_semantic`` scores it: with the pair
    classifier on, sentences align at the lower of the policy's threshold and the classifier's
    (``pairs.align_threshold``) and the classifier decides on each source."""
    classifier = settings.PARAPHRASE_PAIR_CLASSIFIER
    threshold = pairs.align_threshold(holds.DEFAULT_SEMANTIC_THRESHOLD, classifier=classifier)
    result = semantic.check_semantic(text, embedder=embedder, index=index, threshold=threshold)
    hit = {(m["draft_start"], m["draft_end"]) for m in result["matches"]}
    checked = result["sentences_checked"]
    aligned = semantic.align_sources(
        result["matches"], sentences_checked=checked, threshold=threshold, source_sizes=sizes
    )

    def features(a: dict) -> dict[str, float]:
        return pair_features(
            a,
            [
                (
                    text[m["draft_start"] : m["draft_end"]],
                    pieces[m["key"]],
                    semantic.split_key(m["key"])[1],
                )
                for m in a["pairs"]
            ],
            draft_text=text,
            source_text=wholes[a["source"]],
        )

    return {
        "kind": "semantic",
        "status": "ok",
        "scores": {
            "paraphrased_sentences": len(hit),
            "sentences_checked": checked,
            "paraphrased_share": len(hit) / checked if checked else 0.0,
            **holds.semantic_lead_scores(
                aligned, POLICY, features=features if classifier else None
            ),
        },
    }


def log_benign_breakdown(
    sets: review_sets.Sets,
    tox_held: object,
    harmless_reasons: list[list[str]],
    unrelated_reasons: list[list[str]],
    same_reasons: list[list[str]],
) -> None:
    """Which check holds the harmless test texts, per subset (stderr): toxicity, copying
    (lexical), paraphrase (semantic); a text held by several counts under each."""
    cut = len(sets.harmless_tox) - sets.unseen_drafts
    subsets = {
        "toxicity split, sentences and summaries": (
            sets.harmless_tox[:cut],
            harmless_reasons[:cut],
        ),
        "unseen default-model drafts": (sets.harmless_tox[cut:], harmless_reasons[cut:]),
        "unrelated drafts": ([c["text"] for c in sets.unrelated], unrelated_reasons),
        "same-genre paragraphs": (sets.same_genre, same_reasons),
    }
    for name, (texts, reasons) in subsets.items():
        tox = [tox_held(t) for t in texts]  # type: ignore[operator]
        copy = [any(x.startswith("Plagiarism") for x in r) for r in reasons]
        para = [any(x.startswith("Paraphrase") for x in r) for r in reasons]
        other = [bool(r) and not (c or p) for r, c, p in zip(reasons, copy, para, strict=True)]
        held = [t or bool(r) for t, r in zip(tox, reasons, strict=True)]
        log(
            f"benign held, {name}: {sum(held)}/{len(texts)} (toxicity {sum(tox)}, copying "
            f"{sum(copy)}, paraphrase {sum(para)}, other {sum(other)})"
        )


def main() -> None:
    from datasketch import MinHash, MinHashLSH, MinHashLSHEnsemble

    started = time.perf_counter()
    cases = lines(DATA / "plagiarism_set.jsonl")
    rows = {r.fields["title"]: r.fields for r in sotu_rows()}
    para_dev = [p for p in lines(DATA / "paraphrases.jsonl") if p.get("is_paraphrase", True)]
    para_test = review_sets.test_paraphrases()
    para_outputs = review_sets.test_paraphrases(labelled_only=False)
    wanted = (
        {c["source_title"] for c in cases if c["source_title"]}
        | {p["source_title"] for p in para_dev}
        | {p["source_title"] for p in para_outputs}
    )
    others = [t for t in rows if t not in wanted]
    random.Random(3).shuffle(others)
    inside = max(ARCHIVE_SIZE - len(wanted), 0)
    titles = sorted(wanted) + others[:inside]
    archive = Archive([rows[t] for t in titles])
    log(f"archive: {len(titles):,} paragraphs, {len(archive.passage_text):,} passages")
    # Paragraphs of the same collection in neither index: same voice and topics, not copies.
    sets = review_sets.load(rows, titles, others[inside:])
    para_test = sets.paraphrases_test
    log(
        f"test split: {len(sets.toxic)} toxic, {len(sets.harmless_tox)} harmless for toxicity "
        f"({sets.unseen_drafts} unseen default-model drafts), {len(sets.unrelated)} unrelated "
        f"drafts, {len(sets.same_genre)} same-genre paragraphs, {len(para_test)} paraphrases, "
        f"{len(sets.partial)} partial copies; dev: {len(para_dev)} paraphrases"
    )

    # -- ours: the lexical index ------------------------------------------------------------
    index = LexicalIndex("bench-review")
    index.add_many(archive.passage_text.items())

    # -- datasketch's side: MinHash.bulk over the same passages; MinHashLSHEnsemble answers
    # "which passages contain much of this draft" (containment, its tool for this question);
    # a MinHashLSH over draft windows is the speed baseline at equal recall.
    if not PARAPHRASE_ONLY:
        keys = list(archive.passage_text)
        t0 = time.perf_counter()
        passage_shingles = [shingles(archive.passage_text[k]) for k in keys]
        hashes = MinHash.bulk(passage_shingles, num_perm=128)
        ensemble = MinHashLSHEnsemble(threshold=ENSEMBLE_CONTAINMENT, num_perm=128, num_part=16)
        ensemble.index(
            (k, m, len(set(sh))) for k, m, sh in zip(keys, hashes, passage_shingles, strict=True)
        )
        windows_lsh = MinHashLSH(threshold=0.3, num_perm=128)
        for k, m in zip(keys, hashes, strict=True):
            windows_lsh.insert(k, m)
        log(f"datasketch indexes built in {time.perf_counter() - t0:.0f} s")

    def minhash(items: list[bytes]) -> MinHash:
        m = MinHash(num_perm=128)
        m.update_batch(items)
        return m

    def verified(text: str, candidates: set[str]) -> list:
        draft = DraftText(text, k=SHINGLE_WORDS, window_sizes=index.window_sizes)
        return [
            m
            for k in candidates
            if (
                m := verify(
                    draft, key=k, source=archive.passage_text[k], k=SHINGLE_WORDS, min_span_words=8
                )
            )
            is not None
        ]

    def datasketch_check(text: str) -> dict:
        items = shingles(text)
        candidates = set(ensemble.query(minhash(items), len(set(items))))
        matches = verified(text, candidates)
        matches_text["text"] = text
        return lexical_outcome(archive, matches)

    def datasketch_windows(text: str) -> tuple[list, float]:
        started = time.perf_counter()
        draft = DraftText(text, k=SHINGLE_WORDS, window_sizes=index.window_sizes)
        words = text.split()
        candidates: set[str] = set()
        window_shingles = [shingles(" ".join(words[w0:w1])) for w0, w1 in draft.windows]
        for m in MinHash.bulk(window_shingles, num_perm=128):
            candidates.update(windows_lsh.query(m))
        return verified(text, candidates), time.perf_counter() - started

    # -- plagiarism: the copy kinds of the plagiarism set, partial copies of the test split ----
    copies = [c for c in cases if c["label"] == "copy"]
    if os.environ.get("BENCH_SMOKE") == "1":
        copies = [c for c in copies if c["kind"] == "partial"][:4] + copies[:4]
        para_dev = sets.paraphrases_dev
    if PARAPHRASE_ONLY:
        copies, sets.partial = [], []
    ours_times, ds_times = [], []
    flagged: dict[str, dict[str, list[bool]]] = {"ours": {}, "ds": {}}
    top1 = {"ours": 0, "ds": 0}
    for case in copies:
        outcome, elapsed = ours_lexical(index, archive, case["text"])
        ours_times.append(elapsed)
        flagged["ours"].setdefault(case["kind"], []).append(bool(holds.route([outcome], POLICY)))
        top1["ours"] += outcome["scores"]["best_source"] == case["source_title"]
        base = datasketch_check(case["text"])
        flagged["ds"].setdefault(case["kind"], []).append(bool(holds.route([base], POLICY)))
        top1["ds"] += base["scores"]["best_source"] == case["source_title"]
        ds_times.append(datasketch_windows(case["text"])[1])
    for kind, values in flagged["ours"].items():
        log(f"{kind}: ours {sum(values)}/{len(values)}, datasketch {sum(flagged['ds'][kind])}")
    partial_ours = partial_ds = 0
    for case in sets.partial:
        outcome, _ = ours_lexical(index, archive, case["text"])
        partial_ours += bool(holds.route([outcome], POLICY))
        partial_ds += bool(holds.route([datasketch_check(case["text"])], POLICY))

    # -- semantic: paraphrases (dev and test) and same-genre paragraphs ------------------------
    embedder = semantic.Embedder()
    vectors = semantic.VectorIndex()
    para_titles = sorted({p["source_title"] for p in para_dev + para_outputs})
    para_titles += others[:SEMANTIC_OTHERS]
    vector_keys, texts = [], []
    sizes: dict[str, int] = {}
    for number, title in enumerate(para_titles):
        pieces = semantic.index_passages(rows[title]["text"])
        sizes[f"s:{number}"] = len(pieces)
        for piece in pieces:
            vector_keys.append(semantic.passage_key(f"s:{number}", piece.number))
            texts.append(piece.text)
    pieces = dict(zip(vector_keys, texts, strict=True))
    wholes: dict[str, str] = {}
    for key, piece in pieces.items():
        source = semantic.split_key(key)[0]
        wholes[source] = f"{wholes[source]} {piece}" if source in wholes else piece
    t0 = time.perf_counter()
    vectors.add(vector_keys, embedder.encode(texts))
    log(f"semantic index: {len(texts):,} sentences embedded in {time.perf_counter() - t0:.0f} s")

    def plagiarism_reasons(text: str) -> list[str]:
        outcome, _ = ours_lexical(index, archive, text)
        return holds.route(
            [outcome, semantic_outcome(embedder, vectors, text, sizes, pieces, wholes)], POLICY
        )

    def plagiarism_held(text: str) -> bool:
        return bool(plagiarism_reasons(text))

    dev_held = sum(plagiarism_held(p["paraphrase"]) for p in para_dev)
    test_held = sum(plagiarism_held(p["paraphrase"]) for p in para_test)
    drifted = [p for p in para_outputs if not p.get("is_paraphrase")]
    if os.environ.get("BENCH_SMOKE") == "1":
        drifted = drifted[:4]
    drifted_held = sum(plagiarism_held(p["paraphrase"]) for p in drifted)
    log(f"test outputs a person did not count as paraphrases, held: {drifted_held}/{len(drifted)}")
    if PARAPHRASE_ONLY:
        same_reasons = [plagiarism_reasons(t) for t in sets.same_genre]
        log(
            "same-genre paragraphs held: "
            f"{sum(any(x.startswith('Plagiarism') for x in r) for r in same_reasons)} for "
            f"copying, {sum(any(x.startswith('Paraphrase') for x in r) for r in same_reasons)} "
            "for paraphrase"
        )
        print(rate_line("paraphrase_recall_test", test_held, len(para_test)))
        print(rate_line("paraphrase_recall_dev", dev_held, len(para_dev)))
        print(
            rate_line(
                "paraphrase_false_flag_same_genre",
                sum(bool(r) for r in same_reasons),
                len(sets.same_genre),
            )
        )
        log(f"total {time.perf_counter() - started:.0f} s")
        return
    test_held_ds = sum(
        bool(holds.route([datasketch_check(p["paraphrase"])], POLICY)) for p in para_test
    )
    same_reasons = [plagiarism_reasons(t) for t in sets.same_genre]
    same_held = [bool(r) for r in same_reasons]
    log(
        "same-genre paragraphs held: "
        f"{sum(any(x.startswith('Plagiarism') for x in r) for r in same_reasons)} for copying, "
        f"{sum(any(x.startswith('Paraphrase') for x in r) for r in same_reasons)} for paraphrase"
    )
    unrelated_reasons = [plagiarism_reasons(c["text"]) for c in sets.unrelated]
    unrelated_held = [bool(r) for r in unrelated_reasons]
    unrelated_ds = [
        bool(holds.route([datasketch_check(c["text"])], POLICY)) for c in sets.unrelated
    ]

    # -- toxicity and the whole review on harmless test texts -----------------------------------
    head = toxicity_head.get_head_detector()
    thresholds = holds.DEFAULT_TOXICITY_THRESHOLDS

    def tox_held(text: str) -> bool:
        scores = toxicity.check_toxicity(text, head)["overall"]
        return any(v >= thresholds.get(c, 0.5) for c, v in scores.items())

    def profanity_held(texts: list[str]) -> list[bool]:
        return [bool(x) for x in toxicity_head.profanity_scores(texts) >= 0.5]

    toxic_held = sum(tox_held(t) for t in sets.toxic)
    toxic_base = sum(profanity_held(sets.toxic))
    # Harmless test texts: toxicity's harmless test split and the unrelated drafts go through
    # toxicity and plagiarism; same-genre paragraphs through both as well.
    harmless_reasons = [plagiarism_reasons(t) for t in sets.harmless_tox]
    harmless_plag = [bool(r) for r in harmless_reasons]
    benign = (
        [t or p for t, p in zip(map(tox_held, sets.harmless_tox), harmless_plag, strict=True)]
        + [
            t or p
            for t, p in zip(
                map(tox_held, [c["text"] for c in sets.unrelated]), unrelated_held, strict=True
            )
        ]
        + [t or p for t, p in zip(map(tox_held, sets.same_genre), same_held, strict=True)]
    )
    benign_texts = sets.harmless_tox + [c["text"] for c in sets.unrelated] + sets.same_genre
    benign_base = [
        p or d
        for p, d in zip(
            profanity_held(benign_texts),
            [False] * len(sets.harmless_tox) + unrelated_ds + [False] * len(sets.same_genre),
            strict=True,
        )
    ]
    log_benign_breakdown(sets, tox_held, harmless_reasons, unrelated_reasons, same_reasons)
    drafts_held = sum(benign[len(sets.harmless_tox) - sets.unseen_drafts : len(sets.harmless_tox)])
    log(f"unseen default-model drafts held: {drafts_held}/{sets.unseen_drafts}")

    n = len(benign)
    print(rate_line("review_false_hold_rate_benign_test", sum(benign), n))
    print(rate_line("review_false_hold_rate_benign_test_baseline", sum(benign_base), n))
    print(rate_line("toxicity_recall_test", toxic_held, len(sets.toxic)))
    print(rate_line("toxicity_recall_test_baseline_profanity_check", toxic_base, len(sets.toxic)))
    partial = flagged["ours"]["partial"]
    print(rate_line("plagiarism_partial_recall", sum(partial), len(partial)))
    print(
        rate_line(
            "plagiarism_partial_recall_baseline_datasketch",
            sum(flagged["ds"]["partial"]),
            len(partial),
        )
    )
    print(rate_line("plagiarism_partial_recall_test", partial_ours, len(sets.partial)))
    print(
        rate_line(
            "plagiarism_partial_recall_test_baseline_datasketch", partial_ds, len(sets.partial)
        )
    )
    print(rate_line("plagiarism_source_top1", top1["ours"], len(copies)))
    print(rate_line("plagiarism_source_top1_baseline_datasketch", top1["ds"], len(copies)))
    print(rate_line("paraphrase_recall_test", test_held, len(para_test)))
    print(rate_line("paraphrase_recall_test_baseline_datasketch", test_held_ds, len(para_test)))
    # Tuned on (the thresholds were chosen on these): for comparison, not a result.
    print(rate_line("paraphrase_recall_dev", dev_held, len(para_dev)))
    print(rate_line("paraphrase_false_flag_same_genre", sum(same_held), len(sets.same_genre)))
    print(rate_line("plagiarism_false_flag_rate", sum(unrelated_held), len(sets.unrelated)))
    print(
        rate_line(
            "plagiarism_false_flag_rate_baseline_datasketch", sum(unrelated_ds), len(sets.unrelated)
        )
    )
    print(f"plagiarism_speedup_vs_datasketch: {p95(ds_times) / p95(ours_times):.2f}")
    log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
