"""The faster paths of the checks give the results of the plain ones they replaced.

Each speed-up of the Chinese path (zh_check_speed_ratio in bench/bench_chinese.py) is compared
here with a straightforward implementation of what it computes, on Chinese, English and mixed
text, so a later change to either side that breaks the equivalence fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from review.checks import text
from review.checks.ethics import DEFAULT_RULES, check_ethics
from review.checks.ethics.claims import claim_hits
from review.checks.plagiarism import LexicalIndex
from review.checks.plagiarism.band_store import _as_hashes
from review.checks.plagiarism.compare import DraftText
from review.checks.plagiarism.shingles import (
    _FMIX32,
    _FMIX64,
    _HAN_BOUNDS,
    _HAN_SALT,
    _SHINGLE_MULT,
    _han_tokens,
    band_hashes,
    tokens,
)
from tests.checks.zh_texts import ARCHIVE, UNRELATED

MIXED = "用 apt-get install 安装软件包，然后运行 systemctl restart nginx 即可。版本 2.4.6 已发布。"
ENGLISH = (
    "The council voted on Tuesday to close the old harbour bridge for eighteen months of "
    "repairs. Engineers found that the steel had corroded far faster than expected, and "
    "commuters will take temporary ferries that carry four hundred passengers an hour."
)
TEXTS = [*ARCHIVE.values(), *UNRELATED[:3], MIXED, ENGLISH, ENGLISH + "".join(ARCHIVE.values())]


def _fmix_plain(values: np.ndarray, constants: tuple) -> np.ndarray:
    s1, m1, s2, m2, s3 = constants
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


def _window_band_hashes_plain(index: LexicalIndex, draft: DraftText) -> np.ndarray:
    """One ``min`` per window over the (shingles x permutations) matrix, as it was done."""
    hasher = index._hasher
    hv = _fmix_plain((draft.shingles >> np.uint64(32)).astype(np.uint32), _FMIX32)
    permuted = hv[:, None] * hasher._a[None, :] + hasher._b
    k = index.k
    signatures = np.stack([permuted[w0 : w1 - k + 1].min(axis=0) for w0, w1 in draft.windows])
    n = len(signatures)
    values = signatures[:, : index.bands * index.rows]
    values = values.reshape(n, index.bands, index.rows).astype(np.uint64)
    h = np.broadcast_to(index._salts, (n, index.bands)).copy()
    for j in range(index.rows):
        h = _fmix_plain(h ^ values[:, :, j], _FMIX64)
    return h


@pytest.mark.parametrize("source", TEXTS, ids=range(len(TEXTS)))
def test_window_band_hashes_equal_one_minimum_per_window(source: str) -> None:
    index = LexicalIndex("speedups")
    draft = DraftText(source, k=index.k, window_sizes=index.window_sizes)
    assert draft.windows, "every text here is long enough for a window"
    found = index._window_band_hashes(draft)
    assert found.dtype == np.uint64
    assert np.array_equal(found, _window_band_hashes_plain(index, draft))


def test_band_hashes_accept_uint32_signatures_as_the_widened_ones() -> None:
    rng = np.random.default_rng(3)
    signatures = rng.integers(0, 2**32, size=(7, 128), dtype=np.uint32)
    salts = rng.integers(0, 2**63, size=37, dtype=np.uint64)
    found = band_hashes(signatures, bands=37, rows=3, salts=salts)
    values = signatures[:, :111].reshape(7, 37, 3).astype(np.uint64)
    expected = np.broadcast_to(salts, (7, 37)).copy()
    for j in range(3):
        expected = _fmix_plain(expected ^ values[:, :, j], _FMIX64)
    assert np.array_equal(found, expected)


def test_distinct_band_hashes_are_numpys_unique() -> None:
    rng = np.random.default_rng(5)
    for size in (0, 1, 2, 37, 629):
        values = rng.integers(0, 2**64 - 1, size=size, dtype=np.uint64, endpoint=True)
        values = np.concatenate([values, values[: size // 3]]).reshape(-1, 1)
        assert np.array_equal(_as_hashes(values), np.unique(values.ravel()))


def test_han_hashes_from_the_table_equal_the_arithmetic() -> None:
    # BMP Han (all blocks), a supplementary-plane Han character, Latin, digits, punctuation.
    sample = "中文\u3400\u4dbf\u9fff\uf900\ufaffabc 123，。\U00020000\U0003134a𝐀z"
    for source in (sample, sample.replace("\U00020000", "").replace("\U0003134a", ""), *TEXTS):
        points = np.frombuffer(source.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        expected_at = np.flatnonzero(np.searchsorted(_HAN_BOUNDS, points, side="right") & 1)
        expected = _fmix_plain(
            (points[expected_at].astype(np.uint64) | _HAN_SALT) * _SHINGLE_MULT, _FMIX64
        )
        at, hashes = _han_tokens(source)
        assert at.tolist() == expected_at.tolist()
        assert np.array_equal(hashes, expected)


def test_tokens_of_han_only_text_are_its_characters() -> None:
    source = ARCHIVE["bridge"].replace("，", "").replace("。", "")
    starts, ends, hashes = tokens(source)
    assert starts == list(range(len(source)))
    assert ends == list(range(1, len(source) + 1))
    assert hashes.dtype == np.uint64 and len(hashes) == len(source)
    assert len(set(hashes.tolist())) == len(set(source))


def test_sentences_are_shared_but_each_caller_gets_its_own_list() -> None:
    source = ARCHIVE["library"]
    first = text.sentences(source)
    first.append(text.Sentence(0, 1, "x"))  # a caller's own list: the next one is unchanged
    second = text.sentences(source)
    assert second == first[:-1] and second is not first
    text.clear_caches()
    assert text.sentences(source) == second
    assert [s.text[-1] for s in second] == ["。"] * len(second)


def test_words_are_tokens_with_exact_spans() -> None:
    found = text.words(MIXED)
    assert all(isinstance(t, text.Token) for t in found)
    assert all(MIXED[t.start : t.end].casefold() == t.norm for t in found)
    assert [t.norm for t in found[:3]] == ["用", "apt-get", "install"]


@pytest.mark.parametrize(
    ("sentence", "found"),
    [
        ("今年销量增长了５０％，创下新高。", True),  # full-width digits are digits
        ("今年销量增长了百分之三十，创下新高。", True),
        ("今年销量大幅增长，创下新高。", False),
        ("Sales rose 50% this year.", True),
        ("Sales rose sharply this year.", False),
    ],
)
def test_claim_rule_skips_only_sentences_without_figures(sentence: str, found: bool) -> None:
    hits = claim_hits(sentence, frozenset({"percentages", "statistics"}))
    assert bool(hits) is found


def test_ethics_results_on_chinese_text_are_stable_across_calls() -> None:
    """The caches (sentences, Han runs) do not leak one text's results into another's."""
    texts = [*ARCHIVE.values(), MIXED, "据新华社报道，今年销量增长了５０％。研究表明这很重要。"]
    first = [check_ethics(t, rules=DEFAULT_RULES)["hits"] for t in texts]
    text.clear_caches()
    second = [check_ethics(t, rules=DEFAULT_RULES)["hits"] for t in reversed(texts)]
    assert first == list(reversed(second))
