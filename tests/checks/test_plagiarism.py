"""Lexical plagiarism check: MinHash + LSH candidates, exact verification, band stores."""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from datasketch import MinHash

from review.checks.plagiarism import LexicalIndex, compare_texts, split_passages
from review.checks.plagiarism.band_store import BandStore, MemoryBandStore, RedisBandStore
from review.checks.plagiarism.shingles import (
    MinHasher,
    shingle_hashes,
    tokens,
    word_hash,
    word_hashes,
)
from review.checks.text import sentences, words

# -- crafted text -----------------------------------------------------------------------------

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "pi", "da"]
_SYLLABLES += ["ge", "ho", "ju", "be", "fa", "zu", "ri", "mo", "ta", "le"]
_VOCAB = sorted({"".join(random.Random(i).choices(_SYLLABLES, k=1 + i % 3)) for i in range(4000)})
_WEIGHTS = [1.0 / (rank + 1) for rank in range(len(_VOCAB))]


def make_text(seed: int, n_words: int) -> str:
    """Deterministic prose-like text: Zipf-distributed invented words in sentences of 8-20."""
    rng = random.Random(seed)
    out: list[str] = []
    while sum(len(s.split()) for s in out) < n_words:
        length = min(rng.randint(8, 20), n_words - sum(len(s.split()) for s in out))
        sentence = rng.choices(_VOCAB, weights=_WEIGHTS, k=max(length, 1))
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


ORIGINAL = (
    "The city council voted on Tuesday to close the old harbour bridge for eighteen months, "
    "arguing that the steel frame had corroded far faster than engineers expected when it was "
    "last inspected. Commuters will be diverted to a temporary ferry service that the port "
    "authority says can carry four hundred passengers an hour. Shop owners on the north bank "
    "warned that the closure could cost them a third of their trade, and asked the council to "
    "publish the full inspection report before work begins in the spring."
)

# Reworded throughout, but two phrases survive: a few shared 5-grams, far from a copy.
PARAPHRASE = (
    "On Tuesday councillors decided that the ageing bridge over the harbour must shut for a "
    "year and a half, because its steel structure has rusted much more quickly than the "
    "engineers predicted at the previous check. A stopgap ferry run by the port authority "
    "should be able to carry four hundred passengers an hour instead. Traders north of the "
    "river fear losing about one third of their business and asked the council to publish the "
    "full inspection report first."
)

ARCHIVE = {f"a:{i}": make_text(1000 + i, 60 + (i * 7) % 70) for i in range(200)}
ARCHIVE["a:500"] = ORIGINAL


def fetcher(texts: dict[str, str]):
    calls: list[list[str]] = []

    def fetch(keys: list[str]) -> dict[str, str]:
        calls.append(list(keys))
        return {k: texts[k] for k in keys if k in texts}

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


@pytest.fixture(scope="module")
def archive_index() -> LexicalIndex:
    index = LexicalIndex("test-project")
    index.add_many(ARCHIVE.items())
    return index


def last_word_end(text: str) -> int:
    return words(text)[-1].end


# -- hashing ----------------------------------------------------------------------------------


def test_fast_tokeniser_yields_the_same_words_as_text_words() -> None:
    text = "Café-owners' “rivals” said: don't pay 1,000.50 €, well-known C.E.O. José Ñúñez!\n\n2nd"
    starts, ends, hashes = tokens(text)
    reference = words(text)
    assert [(t.start, t.end) for t in reference] == list(zip(starts, ends, strict=True))
    assert hashes.tolist() == [word_hash(text[t.start : t.end]) for t in reference]
    assert word_hashes(text).tolist() == hashes.tolist()
    # Normalised forms hash alike: case and accents do not hide a copy.
    assert word_hash("Café") == word_hash("cafe")


def test_signatures_equal_datasketch_minhash_update_batch() -> None:
    hasher = MinHasher(num_perm=128, seed=1)
    rng = np.random.default_rng(3)
    sets = [rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) for n in (0, 1, 57, 3000)]
    signatures = hasher.signatures(sets)
    for values, signature in zip(sets, signatures, strict=True):
        reference = MinHash(num_perm=128, seed=1, hashfunc=int)
        reference.update_batch(values.tolist())
        assert signature.tolist() == reference.hashvalues.tolist()


def test_shingles_are_five_word_runs() -> None:
    hashes = word_hashes("a b c d e f")
    shingles = shingle_hashes(hashes)
    assert len(shingles) == 2
    assert shingle_hashes(word_hashes("x a b c d e"))[1] == shingles[0]
    assert len(shingle_hashes(word_hashes("a b c d"))) == 0


# -- passages ---------------------------------------------------------------------------------


def test_split_passages_keeps_a_short_text_whole() -> None:
    assert split_passages('  "Hello there, world."  ') == [(2, 23)]
    assert split_passages("") == []
    assert split_passages(" .,; ") == []


def test_split_passages_cuts_long_text_at_sentence_ends_within_bounds() -> None:
    text = "\n\n".join(make_text(seed, 130) for seed in range(6))
    passages = split_passages(text)
    sentence_ends = {s.end for s in sentences(text)}
    covered = 0
    for start, end in passages:
        n = len(words(text[start:end]))
        assert 40 <= n <= 150
        assert end in sentence_ends
        covered += n
    assert covered == len(words(text))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(passages))


def test_split_passages_cuts_a_sentence_without_punctuation() -> None:
    text = " ".join(["word"] * 400)
    passages = split_passages(text)
    assert [len(words(text[s:e])) for s, e in passages] == [100, 100, 100, 100]


# -- the check --------------------------------------------------------------------------------


def test_verbatim_copy_matches_fully_with_exact_spans(archive_index: LexicalIndex) -> None:
    source = ARCHIVE["a:42"]
    draft = "Intro sentence here for the reader. " + source + " Closing remark follows."
    matches = archive_index.find_matches(draft, fetch_texts=fetcher(ARCHIVE))
    assert [m["key"] for m in matches] == ["a:42"]
    match = matches[0]
    assert match["similarity"] == 100.0
    assert match["jaccard"] >= 80.0
    offset = draft.index(source)
    assert match["draft_spans"] == [[offset, offset + last_word_end(source)]]
    assert match["source_spans"] == [[0, last_word_end(source)]]
    assert json.loads(json.dumps(match)) == match


def test_small_edits_still_match_as_one_passage(archive_index: LexicalIndex) -> None:
    tokens = ORIGINAL.split(" ")
    # Every 15th word replaced, the last six words kept (a shingle needs five words).
    edited = " ".join(
        "EDITED" if i % 15 == 7 and i < len(tokens) - 6 else w for i, w in enumerate(tokens)
    )
    matches = archive_index.find_matches(edited, fetch_texts=fetcher(ARCHIVE))
    assert [m["key"] for m in matches] == ["a:500"]
    assert 50.0 <= matches[0]["similarity"] < 100.0
    # The edited words break shingles but the copy is shown as one passage on both sides.
    assert matches[0]["draft_spans"] == [[0, last_word_end(edited)]]
    assert matches[0]["source_spans"] == [[0, last_word_end(ORIGINAL)]]


def test_reordered_sentences_match_partly(archive_index: LexicalIndex) -> None:
    source = make_text(77, 130)
    index = LexicalIndex("reorder")
    index.add_many([*ARCHIVE.items(), ("a:77", source)])
    parts = [s.text for s in sentences(source)]
    random.Random(5).shuffle(parts)
    shuffled = " ".join(parts)
    matches = index.find_matches(shuffled, fetch_texts=fetcher({**ARCHIVE, "a:77": source}))
    assert [m["key"] for m in matches] == ["a:77"]
    assert 40.0 <= matches[0]["similarity"] < 100.0
    assert len(matches[0]["draft_spans"]) >= 3
    for (ds, de), (ss, se) in zip(
        matches[0]["draft_spans"], matches[0]["source_spans"], strict=True
    ):
        assert shuffled[ds:de] == source[ss:se]


def test_paraphrase_with_few_shared_five_grams_is_not_reported(
    archive_index: LexicalIndex,
) -> None:
    fetch = fetcher(ARCHIVE)
    assert archive_index.find_matches(PARAPHRASE, fetch_texts=fetch) == []
    # Compared exactly, the shared phrases are seen, and they are a small share of the source.
    exact = compare_texts(PARAPHRASE, ORIGINAL, key="a:500", min_span_words=5)
    assert exact is not None
    assert 0.0 < exact["similarity"] < 20.0
    assert sorted(PARAPHRASE[s:e] for s, e in exact["draft_spans"]) == [
        "and asked the council to publish the full inspection report",
        "carry four hundred passengers an hour",
    ]
    # By default stray phrases under eight words are not highlighted.
    default = compare_texts(PARAPHRASE, ORIGINAL)
    assert default is not None and len(default["draft_spans"]) == 1
    # The same source is found when copied, so the miss above is about the rewording.
    assert [m["key"] for m in archive_index.find_matches(ORIGINAL, fetch_texts=fetch)] == ["a:500"]


def test_unrelated_text_has_no_match_and_fetches_nothing(archive_index: LexicalIndex) -> None:
    fetch = fetcher(ARCHIVE)
    assert archive_index.find_matches(make_text(9999, 300), fetch_texts=fetch) == []
    assert fetch.calls == []  # type: ignore[attr-defined]


def test_copied_paragraph_inside_long_draft_has_spans_on_both_sides(
    archive_index: LexicalIndex,
) -> None:
    source = ARCHIVE["a:123"]
    before = "\n\n".join(make_text(seed, 120) for seed in range(5000, 5005))
    after = "\n\n".join(make_text(seed, 120) for seed in range(6000, 6005))
    draft = before + "\n\n" + source + "\n\n" + after
    matches = archive_index.find_matches(draft, fetch_texts=fetcher(ARCHIVE))
    assert [m["key"] for m in matches] == ["a:123"]
    offset = len(before) + 2
    assert matches[0]["draft_spans"] == [[offset, offset + last_word_end(source)]]
    assert matches[0]["source_spans"] == [[0, last_word_end(source)]]
    assert matches[0]["similarity"] == 100.0


def test_long_source_reports_its_copied_passage() -> None:
    old_draft = "\n\n".join(make_text(seed, 110) for seed in range(7000, 7008))
    paragraph_start = old_draft.index(make_text(7003, 110))
    paragraph = make_text(7003, 110)
    new_draft = make_text(8000, 200) + "\n\n" + paragraph
    index = LexicalIndex("long-source")
    index.add(key="d:1", text=old_draft)
    index.add(key="d:2", text=new_draft)
    texts = {"d:1": old_draft, "d:2": new_draft}
    matches = index.find_matches(new_draft, fetch_texts=fetcher(texts), exclude="d:2")
    assert [m["key"] for m in matches] == ["d:1"]
    # Similarity is per passage of the source: the copied paragraph is whole.
    assert matches[0]["similarity"] == 100.0
    assert matches[0]["source_spans"] == [
        [paragraph_start, paragraph_start + last_word_end(paragraph)]
    ]


def test_empty_and_very_short_texts_neither_crash_nor_match() -> None:
    index = LexicalIndex("short")
    index.add(key="a:1", text="")
    index.add(key="a:2", text="Too short.")
    index.add(key="a:3", text=ORIGINAL)
    fetch = fetcher({"a:1": "", "a:2": "Too short.", "a:3": ORIGINAL})
    assert len(index) == 3
    for draft in ("", "   ", "Too short.", "one two three four", "!!! ..."):
        assert index.find_matches(draft, fetch_texts=fetch) == []
        assert index.candidates(draft) == {}


def test_exclude_skips_the_draft_itself() -> None:
    index = LexicalIndex("exclude")
    index.add(key="d:45", text=ORIGINAL)
    fetch = fetcher({"d:45": ORIGINAL})
    assert [m["key"] for m in index.find_matches(ORIGINAL, fetch_texts=fetch)] == ["d:45"]
    assert index.find_matches(ORIGINAL, fetch_texts=fetch, exclude="d:45") == []
    assert index.find_matches(ORIGINAL, fetch_texts=fetch, exclude=["d:45", "p:1"]) == []


def test_keys_missing_from_fetch_texts_are_skipped() -> None:
    index = LexicalIndex("stale")
    index.add(key="a:1", text=ORIGINAL)
    assert index.find_matches(ORIGINAL, fetch_texts=lambda keys: {}) == []


def test_remove_and_replace_keys() -> None:
    index = LexicalIndex("writes")
    index.add(key="a:1", text=ORIGINAL)
    index.add(key="p:7", text=ARCHIVE["a:3"])
    assert index.remove("a:1") is True
    assert index.remove("a:1") is False
    assert "a:1" not in index
    assert index.candidates(ORIGINAL) == {}
    # Re-adding a key replaces its text: the old text no longer leads to it.
    index.add(key="p:7", text=ORIGINAL)
    assert len(index) == 1
    assert set(index.candidates(ORIGINAL)) == {"p:7"}
    assert index.candidates(ARCHIVE["a:3"]) == {}


def test_memory_store_compaction_keeps_answers() -> None:
    store = MemoryBandStore()
    index = LexicalIndex("compact", store=store)
    items = [(key, ARCHIVE[key]) for key in list(ARCHIVE)[:120]]
    for key, text in items:  # one at a time: exercises the run merging
        index.add(key=key, text=text)
    for key, _text in items[:80]:
        index.remove(key)
    assert len(index) == 40
    for key, text in items:
        found = index.candidates(text)
        assert (key in found) == (key not in dict(items[:80]))
    # Compaction ran: the arrays hold the live entries plus fewer dead ones than were removed.
    entries = sum(len(run) for run in store._runs)
    live = sum(len(index.band_entries([item])[0][1]) for item in items[80:])
    removed = sum(len(index.band_entries([item])[0][1]) for item in items[:80])
    assert entries - store._dead_entries == live
    assert store._dead_entries < removed


def test_rebuild_from_scratch_gives_the_same_answers() -> None:
    live = LexicalIndex("rebuild")
    texts = dict(ARCHIVE)
    live.add_many(list(texts.items())[:150])
    for key in list(texts)[:30]:
        live.remove(key)
        del texts[key]
    texts["a:7"] = ORIGINAL + " " + make_text(1, 30)
    live.add(key="a:7", text=texts["a:7"])
    for key in list(ARCHIVE)[150:]:
        live.add(key=key, text=texts[key])

    fresh = LexicalIndex("rebuild")
    assert fresh.rebuild(texts.items()) == len(texts)
    assert len(fresh) == len(live) == len(texts)
    for draft in (ORIGINAL, ARCHIVE["a:1"], ARCHIVE["a:40"] + " " + ARCHIVE["a:199"]):
        assert fresh.candidates(draft) == live.candidates(draft)
        fetch = fetcher(texts)
        assert fresh.find_matches(draft, fetch_texts=fetch) == live.find_matches(
            draft, fetch_texts=fetch
        )
    assert [m["key"] for m in fresh.find_matches(ARCHIVE["a:40"], fetch_texts=fetcher(texts))]


# -- Redis ------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="REDIS_URL is not set: the Redis band store is not tested"
)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"test-plagiarism-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)  # type: ignore[arg-type]
    leftovers = list(client.scan_iter(match=f"{prefix}*"))
    if leftovers:
        client.delete(*leftovers)


@needs_redis
def test_redis_store_gives_the_same_answers_as_memory_store(redis_prefix: str) -> None:
    memory = LexicalIndex("p1")
    shared = LexicalIndex("p1", redis_url=REDIS_URL, redis_prefix=redis_prefix)
    assert isinstance(shared.store, RedisBandStore)
    assert isinstance(shared.store, BandStore)
    try:
        for index in (memory, shared):
            index.add_many(ARCHIVE.items())
            index.remove("a:3")
            index.add(key="a:4", text=ORIGINAL + " " + ARCHIVE["a:4"])
        texts = {**ARCHIVE, "a:4": ORIGINAL + " " + ARCHIVE["a:4"]}
        del texts["a:3"]
        assert len(shared) == len(memory) == len(texts)
        assert "a:4" in shared and "a:3" not in shared
        drafts = [ORIGINAL, ARCHIVE["a:3"], ARCHIVE["a:10"] + " " + make_text(3, 200), ""]
        for draft in drafts:
            assert shared.candidates(draft) == memory.candidates(draft)
            assert shared.find_matches(draft, fetch_texts=fetcher(texts)) == memory.find_matches(
                draft, fetch_texts=fetcher(texts)
            )
        # A second worker with the same settings sees the same shared index.
        other = LexicalIndex("p1", redis_url=REDIS_URL, redis_prefix=redis_prefix)
        assert set(other.candidates(ORIGINAL)) == {"a:4", "a:500"}
        # Another project's namespace is a separate index.
        assert len(LexicalIndex("p2", redis_url=REDIS_URL, redis_prefix=redis_prefix)) == 0
    finally:
        shared.clear()
    assert len(shared) == 0
    assert shared.candidates(ORIGINAL) == {}


@needs_redis
def test_redis_clear_deletes_every_key_under_its_prefix(redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)  # type: ignore[arg-type]
    store = RedisBandStore(REDIS_URL, prefix=f"{redis_prefix}:s")  # type: ignore[arg-type]
    sibling = RedisBandStore(REDIS_URL, prefix=f"{redis_prefix}:s2")  # type: ignore[arg-type]
    store.add("a:1", np.array([1, 2, 3], dtype=np.uint64))
    sibling.add("a:1", np.array([1], dtype=np.uint64))
    assert store.query(np.array([2, 3, 9], dtype=np.uint64)) == {"a:1": 2}
    store.clear()
    assert list(client.scan_iter(match=f"{redis_prefix}:s:*")) == []
    assert sibling.query(np.array([1], dtype=np.uint64)) == {"a:1": 1}
    sibling.clear()


def test_memory_store_query_counts_shared_hashes_like_a_dict() -> None:
    rng = np.random.default_rng(11)
    # A small universe of hashes (top bits varied) so buckets collide and hold several keys.
    universe = rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2)
    items = [(f"a:{i}", rng.choice(universe, 12)) for i in range(2000)]
    bulk = MemoryBandStore()
    bulk.add_many(items)  # one big run: radix table lookups
    single = MemoryBandStore()
    for key, hashes in items[:300]:  # small runs: binary search lookups
        single.add(key, hashes)
    for store, stored in ((bulk, items), (single, items[:300])):
        for _ in range(20):
            wanted = rng.choice(universe, 40)
            wanted_set = set(wanted.tolist())
            expected = {
                key: len(wanted_set & set(hashes.tolist()))
                for key, hashes in stored
                if wanted_set & set(hashes.tolist())
            }
            assert store.query(wanted) == expected


@needs_redis
def test_redis_query_of_packed_hashes_in_chunks_counts_like_the_memory_store(
    redis_prefix: str,
) -> None:
    # given: keys whose hashes crowd a few groups (same top 16 bits), with 0x00 and 0xFF bytes
    # inside, so the script's own group keys and lexical ranges are what is tested
    rng = np.random.default_rng(5)
    tops = np.array([0x0000, 0xFFFF, 0x12FF], dtype=np.uint64) << np.uint64(48)
    low = rng.integers(0, 2**16, 400, dtype=np.uint64)
    low[:8] = [0, 0xFF, 0xFFFF, 0xFF00, 1, 0xFE, 0x100, 0xFFFE]
    universe = np.unique((tops[:, None] | low[None, :]).ravel())
    items = [(f"a:{i}", rng.choice(universe, 9)) for i in range(300)]
    memory = MemoryBandStore()
    memory.add_many(items)
    redis_store = RedisBandStore(REDIS_URL, prefix=f"{redis_prefix}:q")  # type: ignore[arg-type]
    redis_store.add_many(items)
    # when: queries larger than one script call's chunk
    redis_store._QUERY_CHUNK = 7
    try:
        for _ in range(10):
            wanted = rng.choice(universe, 60)
            # then: the same keys and counts as the in-process store
            assert redis_store.query(wanted) == memory.query(wanted)
        assert redis_store.query(np.zeros(0, dtype=np.uint64)) == {}
    finally:
        redis_store.clear()
