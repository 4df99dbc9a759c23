"""Turning check spans into non-overlapping segments a template can render (and escape)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

# Order of precedence for the segment's main colour when spans of several kinds overlap.
KIND_ORDER = ("toxicity", "ethics", "plagiarism", "semantic", "contradiction", "verify")
KIND_LABELS = {
    "toxicity": "Toxicity",
    "ethics": "Ethics rule",
    "plagiarism": "Copied passage",
    "semantic": "Paraphrase",
    "contradiction": "Contradicts the brief",
    "verify": "Verify (not in the brief or sources)",
}


@dataclass
class Segment:
    text: str
    kinds: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @property
    def css(self) -> str:
        return " ".join(f"hl-{kind}" for kind in self.kinds)

    @property
    def title(self) -> str:
        return "; ".join(self.labels)


def segments(text: str, spans: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """Cut ``text`` at every span boundary; each piece lists the kinds covering it."""
    valid = [
        s
        for s in spans
        if isinstance(s.get("start"), int)
        and isinstance(s.get("end"), int)
        and 0 <= s["start"] < s["end"] <= len(text)
    ]
    cuts = sorted({0, len(text), *(s["start"] for s in valid), *(s["end"] for s in valid)})
    out: list[Segment] = []
    for start, end in pairwise(cuts):
        covering = [s for s in valid if s["start"] <= start and end <= s["end"]]
        kinds = sorted(
            {s["kind"] for s in covering},
            key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99,
        )
        labels = list(dict.fromkeys(str(s.get("label", "")) for s in covering if s.get("label")))
        piece = Segment(text[start:end], kinds, labels)
        if out and out[-1].kinds == piece.kinds and out[-1].labels == piece.labels:
            out[-1].text += piece.text
        else:
            out.append(piece)
    return out


def mark_spans(text: str, spans: Iterable[Iterable[int]]) -> list[Segment]:
    """Segments of a source passage with its matched spans marked (side-by-side view)."""
    return segments(
        text, [{"start": s, "end": e, "kind": "plagiarism"} for s, e in (tuple(x) for x in spans)]
    )
