"""Check adapters: run one check on a draft's text and shape its result for a CheckResult.

Each ``run_<check>(draft, text, policy)`` returns the stored fields (status, engine and
version, scores, spans, details, timings); the pipeline stores and routes them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db.models import Count

from generation.models import Draft
from review import indexes, policy
from review.checks import containment, ethics, semantic, toxicity
from review.models import (
    CheckStatus,
    PassageSentence,
    Policy,
    SourcePassage,
)
from review.services.embedding import get_embedder
from review.services.policies import policy_view

logger = logging.getLogger(__name__)


def _toxicity_config() -> toxicity.ToxicityConfig:
    return toxicity.ToxicityConfig(
        model_name=settings.TOXICITY_MODEL or None,
        checkpoint=settings.TOXICITY_CHECKPOINT or None,
        config_dir=settings.TOXICITY_CONFIG_DIR or None,
        device=settings.CHECKS_DEVICE,
    )


def toxicity_model_info() -> dict[str, Any]:
    """Which toxicity model scores drafts now, without loading it (for the Policy page)."""
    from review.checks import toxicity_head

    config = _toxicity_config()
    if config.model_name or config.checkpoint:
        return {"model": config.model_name or config.checkpoint, "stand_in": None}
    return {"model": toxicity_head.ENGINE, "stand_in": toxicity_head.load_metrics()}


def _span(start: int, end: int, kind: str, label: str, score: float | None = None) -> dict:
    return {"start": start, "end": end, "kind": kind, "label": label, "score": score}


def run_toxicity(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    config = _toxicity_config()
    if config.model_name or config.checkpoint:
        # Detoxify whenever it is configured; the offline stand-in otherwise.
        result = toxicity.run_toxicity_check(text, config=config)
    else:
        result = toxicity.run_head_check(text)
    if result["status"] != "ok":
        return {
            "status": CheckStatus.NOT_RUN,
            "reason": result["reason"] or "",
            "details": result,
            "engine": result["engine"],
            "engine_version": result["engine_version"] or "",
        }
    thresholds = rules.toxicity_thresholds or policy.DEFAULT_TOXICITY_THRESHOLDS
    spans = []
    for sentence in result["sentences"]:
        over = [
            (score, category)
            for category, score in sentence["scores"].items()
            # Highlight from 80% of the hold threshold: close calls deserve a look too.
            if score >= 0.8 * thresholds.get(category, 0.5)
        ]
        if over:
            score, category = max(over)
            spans.append(
                _span(
                    sentence["start"],
                    sentence["end"],
                    "toxicity",
                    f"{category.replace('_', ' ')} {score:.2f}",
                    round(score, 3),
                )
            )
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"] or "",
        "scores": {k: round(v, 4) for k, v in result["overall"].items()},
        "spans": spans,
        "details": {
            "model": result["model"],
            "stand_in": result["stand_in"],
            "sentences": result["sentences"],
            "whole_text": result["whole_text"],
            "truncated": result["whole_text_truncated"],
        },
        "timings": result["timings"],
    }


def run_ethics(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    result = ethics.check_ethics(text, rules=rules.rules or {})
    spans = [
        _span(
            hit["start"],
            hit["end"],
            "ethics",
            f"{hit['rule_kind'].replace('_', ' ')}: {hit['message']}",
        )
        for hit in result["hits"]
        if hit["start"] is not None and hit["end"] is not None
    ]
    return {
        "status": CheckStatus.OK,
        "engine": result["engine"],
        "engine_version": result["engine_version"],
        "scores": dict(result["counts"]),
        "spans": spans,
        "details": {"hits": result["hits"], "truncated": result["truncated"]},
        "timings": result["timings"],
    }


def _siblings(draft: Draft) -> list[Draft]:
    return list(Draft.objects.filter(job_id=draft.job_id).exclude(pk=draft.pk).order_by("pk"))


def _source_info(keys: list[str]) -> dict[str, dict[str, Any]]:
    """For index keys ("a:12", "p:3"): the passage text and where it comes from."""
    ids = {key: indexes.parse_source_key(key) for key in keys}
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
        counts[f"doc:{doc_id}"] = counts.get(f"doc:{doc_id}", 0) + len(text.split())
    for draft_id, text in SourcePassage.objects.filter(draft_id__in=pubs).values_list(
        "draft_id", "text"
    ):
        counts[f"pub:{draft_id}"] = counts.get(f"pub:{draft_id}", 0) + len(text.split())
    return counts


def run_lexical(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    project_indexes, behind = indexes.indexes_for_check(draft.project_id)
    fetched: dict[str, dict[str, Any]] = {}

    def fetch(keys: list[str]) -> dict[str, str]:
        fetched.update(_source_info(keys))
        return {key: value["text"] for key, value in fetched.items() if key in keys}

    matches = project_indexes.lexical.find_matches(text, fetch_texts=fetch)
    # Sources are the archive and published items. Candidates of the same job share a prompt
    # and are alike by design: their similarity is a diversity figure of the job (job page),
    # never a reason to hold.
    groups = containment.group_by_source(
        matches,
        draft_text=text,
        source_of=lambda key: _source_id(fetched.get(key, {})),
        passage_words={key: len(v["text"].split()) for key, v in fetched.items()},
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
                }
            )
    spans = [
        _span(
            s,
            e,
            "plagiarism",
            f"{m['draft_share']:.0%} of the draft from {m['source'].get('title', m['key'])}",
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
            "draft_share": top["draft_share"] if top else 0.0,
            "source_share": top["source_share"] if top else 0.0,
            "sources": len(groups),
            "matches": len(matches),
            "indexed_passages": len(project_indexes.lexical),
        },
        "spans": spans,
        "details": {
            "partial": bool(behind),
            "matches": detailed,
            "sources": [
                {
                    "source": g["source"],
                    "title": fetched.get(g["passages"][0]["key"], {}).get("title"),
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


def _lexical_partial(behind: int, indexed: int) -> dict[str, Any]:
    """While an import is being indexed the check may run ahead of the lexical index: not a
    pass (the policy counts it as not run) and re-run when indexing finishes."""
    if not behind:
        return {}
    total = indexed + behind
    return {
        "status": CheckStatus.NOT_RUN,
        "reason": (
            f"The lexical check covered {indexed / total:.0%} of the archive ({indexed:,} of "
            f"{total:,} passages indexed so far); it runs again by itself when indexing "
            "finishes."
        ),
    }


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
    project_indexes, _ = indexes.indexes_for_check(draft.project_id, lexical=False)
    # Near misses (down to 0.05 under the lower of the policy's threshold and the check's
    # default) are shown, labelled as below the threshold.
    threshold = max(0.5, min(semantic.DEFAULT_THRESHOLD, rules.semantic_threshold) - 0.05)
    result = semantic.check_semantic(
        text, embedder=embedder, index=project_indexes.semantic, threshold=threshold
    )
    matches = list(result["matches"])
    # Only the archive and published items: candidates of the same job are alike by design
    # (one prompt); the job page shows their similarity as a diversity figure instead.
    # Where each archive match comes from, and the matching source sentence.
    passage_ids = {indexes.parse_source_key(m["key"]) for m in matches} - {None}
    info = _source_info([f"a:{pk}" for pk in passage_ids] + [f"p:{pk}" for pk in passage_ids])
    sentence_rows = {
        (row.passage_id, row.number): row
        for row in PassageSentence.objects.filter(passage_id__in=passage_ids).only(
            "passage_id", "number", "start", "end"
        )
    }
    # A source is a document of the archive or a published draft, whatever passages it was
    # cut into: a paraphrase of a long article spreads over several of its passages.
    source_of_passage: dict[int, str] = {}
    for pk in passage_ids:
        found = info.get(f"a:{pk}") or info.get(f"p:{pk}") or {}
        if found.get("document_id"):
            source_of_passage[pk] = f"document:{found['document_id']}"
        elif found.get("draft_id"):
            source_of_passage[pk] = f"draft:{found['draft_id']}"
    source_sizes = _source_sentence_counts(set(source_of_passage.values()))

    def source_of(key: str) -> str | None:
        pk = indexes.parse_source_key(semantic.split_key(key)[0])
        return source_of_passage.get(pk) if pk else None

    detailed = []
    for m in sorted(matches, key=lambda m: -m["score"]):
        item, number = semantic.split_key(m["key"])
        source = dict(info.get(item) or {})
        pk = indexes.parse_source_key(item)
        row = sentence_rows.get((pk, number)) if pk else None
        if row is not None and source.get("text"):
            source["sentence"] = source["text"][row.start : row.end]
        source.pop("text", None)
        # One threshold everywhere: a near miss is shown (the editor may want to see it) but
        # labelled as below the threshold, and it counts for nothing.
        detailed.append({**m, "source": source, "counts": m["score"] >= rules.semantic_threshold})
    checked = result["sentences_checked"]
    aligned = semantic.align_sources(
        matches,
        sentences_checked=checked,
        threshold=rules.semantic_threshold,
        source_sizes=source_sizes,
        source_of=source_of,
    )
    titles = {
        source_of(m["key"]): m["source"].get("title") for m in detailed if source_of(m["key"])
    }
    lead = policy.semantic_lead_scores(aligned, policy_view(rules), name=titles.get)
    paraphrased = {(m["draft_start"], m["draft_end"]) for m in detailed if m["counts"]}
    spans = []
    seen: set[tuple[int, int]] = set()
    for m in detailed:
        span = (m["draft_start"], m["draft_end"])
        if span in seen:
            continue
        seen.add(span)
        below = "" if m["counts"] else f" (below the threshold {rules.semantic_threshold:.2f})"
        spans.append(
            _span(
                *span,
                "semantic",
                f"paraphrase {m['score']:.2f} of {m['source'].get('title', m['key'])}{below}",
                m["score"],
            )
        )
    total = SourcePassage.objects.filter(project_id=draft.project_id).count()
    unembedded = SourcePassage.objects.filter(
        project_id=draft.project_id, embedded_at__isnull=True
    ).count()
    coverage = 1.0 if not total else round((total - unembedded) / total, 4)
    partial = {}
    if unembedded:
        # Not a pass: the policy treats a partial run as not run, and the draft's checks run
        # again by themselves when indexing finishes (embedding.embed_chain_step).
        partial = {
            "status": CheckStatus.NOT_RUN,
            "reason": (
                f"The semantic check covered {coverage:.0%} of the archive "
                f"({total - unembedded:,} of {total:,} passages indexed so far); it runs again "
                "by itself when indexing finishes."
            ),
        }
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
