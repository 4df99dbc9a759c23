"""Check adapters for the plagiarism checks: the lexical check (copied passages, with
supplied background told apart) and the semantic check (paraphrase, per source), each shaped
for a CheckResult as ``review.services.adapters`` does for the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import Count

from generation.models import Draft
from review import holds, source_indexes
from review.checks import containment, semantic
from review.checks.semantic import pairs as paraphrase_pairs
from review.checks.semantic.pairs import pair_features
from review.models import (
    CheckStatus,
    PassageSentence,
    Policy,
    SourcePassage,
)
from review.services.adapters import span_of
from review.services.embedding import get_embedder
from review.services.policies import policy_view

logger = logging.getLogger(__name__)


def _siblings(draft: Draft) -> list[Draft]:
    return list(Draft.objects.filter(job_id=draft.job_id).exclude(pk=draft.pk).order_by("pk"))


def _source_info(keys: list[str]) -> dict[str, dict[str, Any]]:
    """For index keys ("a:12", "p:3"): the passage text and where it comes from."""
    ids = {key: source_indexes.parse_source_key(key) for key in keys}
    passages = SourcePassage.objects.filter(pk__in=[i for i in ids.values() if i]).select_related(
        "document", "draft"
    )
    by_id = {p.pk: p for p in passages}
    info: dict[str, dict[str, Any]] = {}
    for key, pk in ids.items():
        passage = by_id.get(pk) if pk else None
        if passage is None:
            continue
        if passage.document is not None:
            doc = passage.document
            info[key] = {
                "kind": "archive",
                "text": passage.text,
                "title": doc.title or f"Archive document {doc.pk}",
                "citation": doc.citation,
                "license": doc.license,
                "url": doc.source_url,
                "author": doc.author,
                "document_id": doc.pk,
            }
        else:
            info[key] = {
                "kind": "published",
                "text": passage.text,
                "title": passage.draft.title or f"Draft {passage.draft_id}",
                "citation": f"Published draft {passage.draft_id}",
                "license": "",
                "url": "",
                "draft_id": passage.draft_id,
            }
    return info


def _source_id(info: dict[str, Any]) -> str | None:
    if info.get("document_id"):
        return f"doc:{info['document_id']}"
    if info.get("draft_id") and info.get("kind") == "published":
        return f"pub:{info['draft_id']}"
    return None


def _source_word_counts(source_ids: set[str]) -> dict[str, int]:
    """Words of each whole source (all its passages), for the share of it that is reused."""
    docs = [int(s[4:]) for s in source_ids if s.startswith("doc:")]
    pubs = [int(s[4:]) for s in source_ids if s.startswith("pub:")]
    counts: dict[str, int] = {}
    for doc_id, text in SourcePassage.objects.filter(document_id__in=docs).values_list(
        "document_id", "text"
    ):
        counts[f"doc:{doc_id}"] = counts.get(f"doc:{doc_id}", 0) + containment.count_tokens(text)
    for draft_id, text in SourcePassage.objects.filter(draft_id__in=pubs).values_list(
        "draft_id", "text"
    ):
        counts[f"pub:{draft_id}"] = counts.get(f"pub:{draft_id}", 0) + containment.count_tokens(
            text
        )
    return counts


def supplied_passages(draft: Draft) -> set[int]:
    """The archive passages given to the model as background for this draft (their ids)."""
    sources = (draft.background or {}).get("sources") or []
    return {int(s["passage_id"]) for s in sources if s.get("passage_id")}


def run_lexical(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    project_indexes, behind = source_indexes.indexes_for_check(draft.project_id)
    fetched: dict[str, dict[str, Any]] = {}

    def fetch(keys: list[str]) -> dict[str, str]:
        fetched.update(_source_info(keys))
        return {key: value["text"] for key, value in fetched.items() if key in keys}

    # The draft's stored language (detected by the pipeline before the checks) sizes its query
    # windows; the check itself detects nothing.
    matches = project_indexes.lexical.find_matches(
        text, fetch_texts=fetch, language=draft.language or None
    )
    # A draft is never its own source: a correction of a published draft is checked against
    # everything but the text it corrects.
    matches = [m for m in matches if fetched.get(m["key"], {}).get("draft_id") != draft.pk]
    # Sources given to the model as background: a short quote of one is what it was given
    # for; a long run of its wording is still a copy, and says where it came from.
    supplied = supplied_passages(draft)
    matches = containment.supplied_matches(
        matches,
        draft_text=text,
        is_supplied=lambda key: (
            source_indexes.parse_source_key(key) in supplied and key.startswith("a:")
        ),
    )
    supplied_sources = {_source_id(fetched.get(m["key"], {})) for m in matches if m["supplied"]} - {
        None
    }
    # Sources are the archive and published items. Candidates of the same job share a prompt
    # and are alike by design: their similarity is a diversity figure of the job (job page),
    # never a reason to hold.
    groups = containment.group_by_source(
        matches,
        draft_text=text,
        source_of=lambda key: _source_id(fetched.get(key, {})),
        passage_words={key: containment.count_tokens(v["text"]) for key, v in fetched.items()},
        source_words=_source_word_counts({_source_id(v) for v in fetched.values()} - {None}),
    )
    detailed = []
    for group in groups[:10]:
        for m in group["passages"][:5]:
            detailed.append(
                {
                    **m,
                    "draft_share": group["draft_share"],
                    "source_share": group["source_share"],
                    "source": fetched.get(m["key"], {}),
                    "supplied": m["supplied"],
                }
            )
    spans = [
        span_of(
            s,
            e,
            "plagiarism",
            f"{m['draft_share']:.0%} of the draft from {m['source'].get('title', m['key'])}"
            + (" (supplied background)" if m["supplied"] else ""),
            m["similarity"],
        )
        for m in detailed
        for s, e in containment.long_spans(
            text, m["draft_spans"], min_words=containment.MIN_SPAN_WORDS
        )
        or m["draft_spans"]
    ]
    top = groups[0] if groups else None
    top_source = detailed[0]["source"] if detailed else {}
    return {
        "status": CheckStatus.OK,
        "engine": "minhash-lsh",
        "engine_version": project_indexes.lexical.fingerprint,
        "scores": {
            # The best single passage (percent of it in the draft): the passage threshold.
            "max_similarity": round(max((m["similarity"] for m in matches), default=0.0), 1),
            # The source named first: the one the draft takes most of its text from.
            "best_source": top_source.get("title") if top else None,
            # The model was given that source as background (the reason says so).
            "best_source_supplied": bool(top and top["source"] in supplied_sources),
            "draft_share": top["draft_share"] if top else 0.0,
            "source_share": top["source_share"] if top else 0.0,
            "sources": len(groups),
            "matches": len(matches),
            "indexed_passages": len(project_indexes.lexical),
            "coverage": round(
                len(project_indexes.lexical) / (len(project_indexes.lexical) + behind), 4
            )
            if behind
            else 1.0,
        },
        "spans": spans,
        "details": {
            "partial": bool(behind),
            "matches": detailed,
            "sources": [
                {
                    "source": g["source"],
                    "title": fetched.get(g["passages"][0]["key"], {}).get("title"),
                    "supplied": g["source"] in supplied_sources,
                    "draft_share": g["draft_share"],
                    "source_share": g["source_share"],
                    "best_passage_similarity": g["best_passage_similarity"],
                }
                for g in groups[:10]
            ],
        },
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
        **_lexical_partial(behind, len(project_indexes.lexical)),
    }


def coverage_note(indexed: int, total: int, unit: str) -> str:
    """What a check run during an import says about the part of the archive it saw."""
    share = indexed / total if total else 1.0
    return (
        f"Checked against {share:.0%} of the archive: import running ({indexed:,} of {total:,} "
        f"{unit} indexed so far); it runs again by itself when indexing finishes."
    )


def _lexical_partial(behind: int, indexed: int) -> dict[str, Any]:
    """While an import is being indexed the check runs against what is indexed so far: a
    real result (the draft is routed on it, not held as not run) that says how much it saw,
    re-run when indexing finishes (``embedding.checks_rerun_after_indexing``)."""
    if not behind:
        return {}
    total = indexed + behind
    return {"reason": coverage_note(indexed, total, "passages")}


def _source_sentence_counts(sources: set[str]) -> dict[str, int]:
    """Indexed sentences per source ("document:12", "draft:7")."""
    counts: dict[str, int] = {}
    for prefix, field in (("document", "passage__document_id"), ("draft", "passage__draft_id")):
        ids = [int(s.split(":")[1]) for s in sources if s.startswith(f"{prefix}:")]
        if not ids:
            continue
        rows = (
            PassageSentence.objects.filter(**{f"{field}__in": ids})
            .values(field)
            .annotate(n=Count("pk"))
        )
        counts.update({f"{prefix}:{row[field]}": row["n"] for row in rows})
    return counts


def run_semantic(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        embedder = get_embedder()
    except semantic.EmbeddingModelUnavailable as exc:
        return {
            "status": CheckStatus.NOT_RUN,
            "reason": exc.reason,
            "engine": semantic.ENGINE,
            "engine_version": semantic.ENGINE_VERSION,
        }
    project_indexes, _ = source_indexes.indexes_for_check(draft.project_id, lexical=False)
    # Near misses (down to 0.05 under the lower of the policy's threshold and the check's
    # default) are shown, labelled as below the threshold.
    # With the pair classifier on, sentences align (and count) at the lower of the policy's
    # threshold and the classifier's, and the classifier decides per source.
    classifier = settings.PARAPHRASE_PAIR_CLASSIFIER
    counted = paraphrase_pairs.align_threshold(rules.semantic_threshold, classifier=classifier)
    threshold = max(0.5, min(semantic.DEFAULT_THRESHOLD, counted) - 0.05)
    if classifier:
        threshold = min(threshold, counted)
    result = semantic.check_semantic(
        text, embedder=embedder, index=project_indexes.semantic, threshold=threshold
    )
    matches = list(result["matches"])
    # Only the archive and published items: candidates of the same job are alike by design
    # (one prompt); the job page shows their similarity as a diversity figure instead.
    # Where each archive match comes from, and the matching source sentence.
    passage_ids = {source_indexes.parse_source_key(m["key"]) for m in matches} - {None}
    info = _source_info([f"a:{pk}" for pk in passage_ids] + [f"p:{pk}" for pk in passage_ids])
    sentence_rows = {
        (row.passage_id, row.number): row
        for row in PassageSentence.objects.filter(passage_id__in=passage_ids).only(
            "passage_id", "number", "start", "end"
        )
    }
    # A source is a document of the archive or a published draft, whatever passages it was
    # cut into: a paraphrase of a long article spreads over several of its passages.
    # A draft is never its own source (a correction is not compared with what it corrects).
    own = {
        pk
        for pk in passage_ids
        if (info.get(f"p:{pk}") or info.get(f"a:{pk}") or {}).get("draft_id") == draft.pk
    }
    if own:
        matches = [
            m
            for m in matches
            if source_indexes.parse_source_key(semantic.split_key(m["key"])[0]) not in own
        ]
        passage_ids -= own
    source_of_passage: dict[int, str] = {}
    for pk in passage_ids:
        found = info.get(f"a:{pk}") or info.get(f"p:{pk}") or {}
        if found.get("document_id"):
            source_of_passage[pk] = f"document:{found['document_id']}"
        elif found.get("draft_id"):
            source_of_passage[pk] = f"draft:{found['draft_id']}"
    source_sizes = _source_sentence_counts(set(source_of_passage.values()))

    def source_of(key: str) -> str | None:
        pk = source_indexes.parse_source_key(semantic.split_key(key)[0])
        return source_of_passage.get(pk) if pk else None

    # Restating a source given to the model as background is what it was given for: shown,
    # labelled, never a reason to hold (a long run of its words is the lexical check's).
    supplied = supplied_passages(draft)

    def is_supplied(key: str) -> bool:
        item = semantic.split_key(key)[0]
        return item.startswith("a:") and source_indexes.parse_source_key(item) in supplied

    detailed = []
    for m in sorted(matches, key=lambda m: -m["score"]):
        item, number = semantic.split_key(m["key"])
        source = dict(info.get(item) or {})
        pk = source_indexes.parse_source_key(item)
        row = sentence_rows.get((pk, number)) if pk else None
        if row is not None and source.get("text"):
            source["sentence"] = source["text"][row.start : row.end]
        source.pop("text", None)
        # One threshold everywhere: a near miss is shown (the editor may want to see it) but
        # labelled as below the threshold, and it counts for nothing.
        given = is_supplied(m["key"])
        detailed.append(
            {
                **m,
                "source": source,
                "supplied": given,
                "counts": m["score"] >= counted and not given,
            }
        )
    checked = result["sentences_checked"]
    aligned = semantic.align_sources(
        [m for m in matches if not is_supplied(m["key"])],
        sentences_checked=checked,
        threshold=counted,
        source_sizes=source_sizes,
        source_of=source_of,
    )
    titles = {
        source_of(m["key"]): m["source"].get("title") for m in detailed if source_of(m["key"])
    }

    def features(alignment: Mapping[str, Any]) -> dict[str, float]:
        # Each aligned draft sentence with the source sentence it restates, in source order.
        pairs = []
        for m in alignment["pairs"]:
            item, number = semantic.split_key(m["key"])
            pk = source_indexes.parse_source_key(item)
            row = sentence_rows.get((pk, number)) if pk else None
            whole = (info.get(item) or {}).get("text") or ""
            said = whole[row.start : row.end] if row is not None else ""
            pairs.append((text[m["draft_start"] : m["draft_end"]], said, (pk or 0, number)))
        order = {key: rank for rank, key in enumerate(sorted({p[2] for p in pairs}))}
        # The source's indexed text the alignment touches: its passages, in order.
        touched = sorted({semantic.split_key(m["key"])[0] for m in alignment["pairs"]})
        source_text = " ".join((info.get(item) or {}).get("text") or "" for item in touched)
        return pair_features(
            alignment,
            [(d, s, order[key]) for d, s, key in pairs],
            draft_text=text,
            source_text=source_text,
        )

    lead = holds.semantic_lead_scores(
        aligned,
        policy_view(rules),
        name=titles.get,
        features=features if classifier else None,
    )
    paraphrased = {(m["draft_start"], m["draft_end"]) for m in detailed if m["counts"]}
    spans = []
    seen: set[tuple[int, int]] = set()
    for m in detailed:
        span = (m["draft_start"], m["draft_end"])
        if span in seen:
            continue
        seen.add(span)
        below = "" if m["counts"] else f" (below the threshold {counted:.2f})"
        if m["supplied"]:
            below = " (supplied background)"
        spans.append(
            span_of(
                *span,
                "semantic",
                f"paraphrase {m['score']:.2f} of {m['source'].get('title', m['key'])}{below}",
                m["score"],
            )
        )
    # Pending rows are counted on a partial index (cheap); the archive's size, a count that
    # grows with the archive, only while some are pending. The draft's own published text is
    # no source of it (a correction's): not counted either.
    sources = SourcePassage.objects.filter(project_id=draft.project_id).exclude(draft_id=draft.pk)
    unembedded = sources.filter(embedded_at__isnull=True).count()
    total = sources.count() if unembedded else 0
    coverage = 1.0 if not total else round((total - unembedded) / total, 4)
    partial = {}
    if unembedded:
        # A real result against what is indexed so far (routed on, not held as not run) that
        # says how much it saw; the draft's checks run again by themselves when indexing
        # finishes (embedding.checks_rerun_after_indexing).
        partial = {"reason": coverage_note(total - unembedded, total, "passages")}
    return {
        "status": CheckStatus.OK,
        "engine": semantic.ENGINE,
        "engine_version": f"{semantic.ENGINE_VERSION}/{result['model']}",
        "scores": {
            "max_score": round(max((m["score"] for m in detailed), default=0.0), 4),
            "paraphrased_sentences": len(paraphrased),
            "sentences_checked": checked,
            "paraphrased_share": round(len(paraphrased) / checked, 3) if checked else 0.0,
            # Per source: the draft's sentences aligned with the lead source, and the share
            # of that source's sentences they restate (the policy holds on both).
            **lead,
            "indexed_sentences": len(project_indexes.semantic),
            "passages_pending": unembedded,
            "coverage": coverage,
        },
        "spans": spans,
        "details": {
            "matches": detailed[:100],
            "sources": [
                {
                    "source": a["source"],
                    "title": titles.get(a["source"]) or a["source"],
                    "draft_sentences": a["draft_sentences"],
                    "draft_share": a["draft_share"],
                    "source_sentences": a["source_sentences"],
                    "source_share": a["source_share"],
                    "mean_score": a["mean_score"],
                }
                for a in aligned[:10]
            ],
            "threshold": rules.semantic_threshold,
            "shown_from": threshold,
            "partial": bool(unembedded),
        },
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
        **partial,
    }
