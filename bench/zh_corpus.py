"""Real Chinese prose from Debian's packages, and the labelled Chinese plagiarism set built on it.

Sources: the Debian reference in Simplified Chinese (``debian-reference-zh-cn``) and the Chinese
man pages (``manpages-zh``): help text of one genre, so "unrelated" drafts share its vocabulary
and stock phrases. Paragraphs are unwrapped (a line break between Han characters joins without a
space). Deterministic: the same packages give the same set.

The set (:func:`build_set`): archive documents are paragraphs of 60-1,000 characters; every
kind of draft is made from an archive paragraph of 100-600 characters, split into ``dev`` (for
tuning) and ``test`` (for reporting) by source, with a near-duplicate guard (character
5-shingle Jaccard >= 0.3 with any dev text drops a test text). Kinds, like the English set
(``make_plagiarism_set.py``):

* ``copy``: a whole paragraph; ``edited``: one Han character in ten replaced (the edit the issue
  measured); ``reordered``: its sentences in another order;
* ``partial``: a run of 45-85% of the paragraph making about 30% of the draft, inside new text
  (as the English set copies 60 words of a 70-140-word paragraph);
* ``unrelated`` (label ``none``): paragraphs of the same corpus that are not in the archive and
  share no long run with it (12-character shingles, less than 5% of theirs in the archive).
"""

from __future__ import annotations

import glob
import gzip
import random
import re
from dataclasses import dataclass
from pathlib import Path

REFERENCE = Path("/usr/share/debian-reference/debian-reference.zh-cn.txt.gz")
MANPAGES = "/usr/share/man/zh_CN/man*/*.gz"
INSTALL_HINT = (
    "bench_chinese needs real Chinese prose from Debian: run `make deps` or "
    "`apt-get install -y debian-reference-zh-cn manpages-zh` (as root)."
)

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RE = re.compile(f"[{_HAN}]")
_CJK_EDGE = re.compile(f"[{_HAN}\u3000-\u303f\uff00-\uffef“”‘’]")
_SENTENCE_RE = re.compile(r"[^。！？]*[。！？]+[”’」』）]*|[^。！？]+$")


class MissingCorpus(RuntimeError):
    pass


def _join_lines(lines: list[str]) -> str:
    out = ""
    for line in (x.strip() for x in lines):
        if not line:
            continue
        if out and not (_CJK_EDGE.match(out[-1]) or _CJK_EDGE.match(line[0])):
            out += " "
        out += line
    return out


def _han_share(text: str) -> float:
    letters = sum(ch.isalpha() for ch in text)
    return len(_HAN_RE.findall(text)) / letters if letters else 0.0


def _usable(paragraph: str, lo: int, hi: int) -> bool:
    return lo <= len(paragraph) <= hi and _han_share(paragraph) >= 0.6 and "|" not in paragraph


def reference_paragraphs() -> list[tuple[str, str]]:
    """(title, paragraph) of the Debian reference, in document order."""
    with gzip.open(REFERENCE, "rt", encoding="utf-8") as handle:
        text = handle.read()
    result: list[tuple[str, str]] = []
    section = "Debian 参考手册"
    for block in re.split(r"\n\s*\n", text):
        lines = block.split("\n")
        heading = re.match(r"^(\d+(?:\.\d+)+)\.?\s+\S", lines[0])
        if heading and len(lines) == 1:
            section = lines[0].strip()
            continue
        if any(line.lstrip().startswith(("+", "|", "$", "#")) for line in lines):
            continue  # tables and shell sessions
        result.append((section, _join_lines(lines)))
    return result


def manpage_paragraphs() -> list[tuple[str, str]]:
    """(title, paragraph) of the Chinese man pages (groff requests and font escapes removed)."""
    result: list[tuple[str, str]] = []
    for path in sorted(glob.glob(MANPAGES)):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                source = handle.read()
        except (OSError, UnicodeDecodeError):
            continue
        name = Path(path).name.removesuffix(".gz")
        current: list[str] = []
        for line in [*source.split("\n"), ".PP"]:
            if line.startswith((".", "'")):
                if current:
                    result.append((f"man {name}", _join_lines(current)))
                current = []
                continue
            line = re.sub(r"\\f(?:\[[^\]]*\]|.)|\\[/,&]", "", line).replace("\\-", "-")
            current.append(line.replace("\\(em", "—").replace("\\e", "\\"))
    return result


def paragraphs(lo: int = 100, hi: int = 400) -> list[tuple[str, str]]:
    """Usable (title, paragraph) pairs of both packages, titles made unique, duplicates gone."""
    if not REFERENCE.exists() or not glob.glob(MANPAGES):
        raise MissingCorpus(INSTALL_HINT)
    seen: set[str] = set()
    counts: dict[str, int] = {}
    result: list[tuple[str, str]] = []
    for title, text in reference_paragraphs() + manpage_paragraphs():
        if not _usable(text, lo, hi) or text in seen:
            continue
        seen.add(text)
        counts[title] = counts.get(title, 0) + 1
        result.append((f"{title} ¶{counts[title]}", text))
    return result


def char_shingles(text: str, k: int) -> set[str]:
    compact = re.sub(r"\s+", "", text)
    return {compact[i : i + k] for i in range(len(compact) - k + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_RE.findall(text) if s.strip()]


@dataclass
class Case:
    kind: str
    label: str  # "copy" or "none"
    source_title: str | None
    text: str
    split: str = ""


def edit_chars(text: str, rng: random.Random, vocabulary: list[str], share: float = 0.1) -> str:
    """Replace ``share`` of the Han characters by other Han characters (never the same one)."""
    chars = list(text)
    positions = [i for i, ch in enumerate(chars) if _HAN_RE.match(ch)]
    for i in rng.sample(positions, max(1, round(len(positions) * share))):
        replacement = chars[i]
        while replacement == chars[i]:
            replacement = rng.choice(vocabulary)
        chars[i] = replacement
    return "".join(chars)


def new_text(pool: list[str], rng: random.Random, chars: int) -> str:
    """``chars`` characters of sentences from paragraphs of ``pool`` (the last one cut)."""
    out = ""
    while len(out) < chars:
        for sentence in sentences(pool[rng.randrange(len(pool))]):
            out += sentence
            if len(out) >= chars:
                break
    return out[:chars]


def build_set(seed: int = 2026, per_kind: int = 240, unrelated: int = 1400) -> dict:
    """The archive (title -> text) and the labelled cases, each with its split."""
    rng = random.Random(seed)
    items = paragraphs(60, 1000)
    rng.shuffle(items)
    vocabulary = sorted({ch for _t, text in items for ch in _HAN_RE.findall(text)})
    # Unrelated drafts and the new text of partial copies come from paragraphs kept out of the
    # archive; the rest is the archive.
    held_out = items[: unrelated + 2 * per_kind]
    archive_items = items[len(held_out) :]
    archive = dict(archive_items)
    archive_grams: set[str] = set()
    for text in archive.values():
        archive_grams |= char_shingles(text, 12)

    def unrelated_to_archive(text: str) -> bool:
        grams = char_shingles(text, 12)
        return bool(grams) and len(grams & archive_grams) / len(grams) < 0.05

    fresh = [text for _t, text in held_out if unrelated_to_archive(text)]
    filler = fresh[: 2 * per_kind]
    pool = [text for text in fresh if text not in set(filler)]
    sources = [
        item
        for item in archive_items
        if len(sentences(item[1])) >= 2 and 100 <= len(item[1]) <= 600
    ]
    cases: list[Case] = []
    # Split by source (a source's drafts never straddle), alternating within each kind; the new
    # text of dev and test partial copies comes from separate halves of the filler.
    halves = {"dev": filler[0::2], "test": filler[1::2]}
    for number, (title, text) in enumerate(sources[: 4 * per_kind]):
        kind = ("copy", "edited", "reordered", "partial")[number % 4]
        split = "dev" if (number // 4) % 2 == 0 else "test"
        if kind == "copy":
            draft = text
        elif kind == "edited":
            draft = edit_chars(text, rng, vocabulary)
        elif kind == "reordered":
            parts = sentences(text)
            shuffled = parts[:]
            while shuffled == parts:
                rng.shuffle(shuffled)
            draft = "".join(shuffled)
        else:
            # As in the English set (60 words of a 70-140-word paragraph, 140 new words): a run
            # of 45-85% of the paragraph, 30% of the draft, new text on both sides.
            run = round(len(text) * rng.uniform(0.45, 0.85))
            start = rng.randrange(0, len(text) - run + 1)
            side = round(run * 0.7 / 0.3 / 2)
            before = new_text(halves[split], rng, side)
            after = new_text(halves[split], rng, side)
            draft = f"{before}\n\n{text[start : start + run]}\n\n{after}"
        cases.append(Case(kind, "copy", title, draft, split))
    for number, text in enumerate(pool[:unrelated]):
        cases.append(Case("unrelated", "none", None, text, ("dev", "test")[number % 2]))
    dev_grams = [char_shingles(c.text, 5) for c in cases if c.split == "dev"]
    guarded = 0
    kept: list[Case] = []
    for case in cases:
        if case.split == "test":
            grams = char_shingles(case.text, 5)
            if any(jaccard(grams, other) >= 0.3 for other in dev_grams):
                guarded += 1
                continue
        kept.append(case)
    return {"archive": archive, "cases": kept, "guarded": guarded, "paragraphs": len(items)}
