"""Check adapters: run one check on a draft's text and shape its result for a CheckResult.

Each ``run_<check>(draft, text, policy)`` returns the stored fields (status, engine and
version, scores, spans, details, timings); the pipeline stores and routes them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from contentstudio.html import html_to_text
from generation.models import Draft
from review import indexes, policy
from review.checks import ethics, plagiarism, semantic, toxicity
from review.models import (
    CheckStatus,
    PassageSentence,
    Policy,
    SourcePassage,
)
from review.services.embedding import get_embedder

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


def run_lexical(draft: Draft, text: str, rules: Policy) -> dict[str, Any]:
    started = time.perf_counter()
    project_indexes = indexes.indexes_for(draft.project_id)
    fetched: dict[str, dict[str, Any]] = {}

    def fetch(keys: list[str]) -> dict[str, str]:
        fetched.update(_source_info(keys))
        return {key: value["text"] for key, value in fetched.items() if key in keys}

    matches = project_indexes.lexical.find_matches(text, fetch_texts=fetch)
    for sibling in _siblings(draft):
        sibling_text = html_to_text(sibling.body)
        match = plagiarism.compare_texts(text, sibling_text, key=f"d:{sibling.pk}")
        if match is not None and match["similarity"] >= 20.0:
            matches.append(match)
            fetched[f"d:{sibling.pk}"] = {
                "kind": "sibling",
                "text": sibling_text,
                "title": sibling.title or f"Draft {sibling.pk}",
                "citation": f"Sibling draft {sibling.pk} of job {draft.job_id}",
                "license": "",
                "url": "",
                "draft_id": sibling.pk,
            }
    matches.sort(key=lambda m: -m["similarity"])
    detailed = [{**m, "source": fetched.get(m["key"], {})} for m in matches[:50]]
    spans = [
        _span(
            s,
            e,
            "plagiarism",
            f"{m['similarity']:.0f}% of {m['source'].get('title', m['key'])}",
            m["similarity"],
        )
        for m in detailed
        for s, e in m["draft_spans"]
    ]
    best = detailed[0] if detailed else None
    return {
        "status": CheckStatus.OK,
        "engine": "minhash-lsh",
        "engine_version": project_indexes.lexical.fingerprint,
        "scores": {
            "max_similarity": round(best["similarity"], 1) if best else 0.0,
            "best_source": best["source"].get("title") if best else None,
            "matches": len(matches),
            "indexed_passages": len(project_indexes.lexical),
        },
        "spans": spans,
        "details": {"matches": detailed},
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
    }


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
    project_indexes = indexes.indexes_for(draft.project_id)
    threshold = min(semantic.DEFAULT_THRESHOLD, rules.semantic_threshold)
    result = semantic.check_semantic(
        text, embedder=embedder, index=project_indexes.semantic, threshold=threshold
    )
    matches = list(result["matches"])
    sources: dict[str, dict[str, Any]] = {}
    # Sibling drafts of the same job: embedded now (a handful of short texts).
    siblings = _siblings(draft)
    if siblings:
        sibling_index = semantic.VectorIndex()
        sibling_texts: dict[str, str] = {}
        for sibling in siblings:
            sibling_text = html_to_text(sibling.body)
            item = f"d:{sibling.pk}"
            pieces = semantic.index_passages(sibling_text)
            if not pieces:
                continue
            sibling_index.add(
                [semantic.passage_key(item, p.number) for p in pieces],
                embedder.encode([p.text for p in pieces]),
            )
            for p in pieces:
                sibling_texts[semantic.passage_key(item, p.number)] = p.text
            sources[item] = {
                "kind": "sibling",
                "title": sibling.title or f"Draft {sibling.pk}",
                "citation": f"Sibling draft {sibling.pk} of job {draft.job_id}",
                "license": "",
                "url": "",
                "draft_id": sibling.pk,
            }
        if len(sibling_index):
            more = semantic.check_semantic(
                text, embedder=embedder, index=sibling_index, threshold=threshold
            )
            matches.extend(more["matches"])
            for m in more["matches"]:
                sources.setdefault(m["key"], {})["sentence"] = sibling_texts.get(m["key"], "")
    # Where each archive match comes from, and the matching source sentence.
    passage_ids = {indexes.parse_source_key(m["key"]) for m in matches} - {None}
    info = _source_info([f"a:{pk}" for pk in passage_ids] + [f"p:{pk}" for pk in passage_ids])
    sentence_rows = {
        (row.passage_id, row.number): row
        for row in PassageSentence.objects.filter(passage_id__in=passage_ids).only(
            "passage_id", "number", "start", "end"
        )
    }
    detailed = []
    for m in sorted(matches, key=lambda m: -m["score"]):
        item, number = semantic.split_key(m["key"])
        source = dict(info.get(item) or sources.get(item) or {})
        pk = indexes.parse_source_key(item)
        row = sentence_rows.get((pk, number)) if pk else None
        if row is not None and source.get("text"):
            source["sentence"] = source["text"][row.start : row.end]
        elif m["key"] in sources:
            source["sentence"] = sources[m["key"]].get("sentence", "")
        source.pop("text", None)
        detailed.append({**m, "source": source})
    paraphrased = {
        (m["draft_start"], m["draft_end"])
        for m in detailed
        if m["score"] >= rules.semantic_threshold
    }
    checked = result["sentences_checked"]
    spans = []
    seen: set[tuple[int, int]] = set()
    for m in detailed:
        span = (m["draft_start"], m["draft_end"])
        if span in seen:
            continue
        seen.add(span)
        spans.append(
            _span(
                *span,
                "semantic",
                f"paraphrase {m['score']:.2f} of {m['source'].get('title', m['key'])}",
                m["score"],
            )
        )
    unembedded = SourcePassage.objects.filter(
        project_id=draft.project_id, embedded_at__isnull=True
    ).count()
    return {
        "status": CheckStatus.OK,
        "engine": semantic.ENGINE,
        "engine_version": f"{semantic.ENGINE_VERSION}/{result['model']}",
        "scores": {
            "max_score": round(max((m["score"] for m in detailed), default=0.0), 4),
            "paraphrased_sentences": len(paraphrased),
            "sentences_checked": checked,
            "paraphrased_share": round(len(paraphrased) / checked, 3) if checked else 0.0,
            "indexed_sentences": len(project_indexes.semantic),
            "passages_pending": unembedded,
        },
        "spans": spans,
        "details": {"matches": detailed[:100], "threshold": threshold},
        "timings": {"total_ms": round((time.perf_counter() - started) * 1000, 1)},
    }
