"""Draft bodies are a small, safe subset of HTML. bleach enforces it on the way in and out;
checks read the plain text, whose character offsets their highlights use."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import bleach

ALLOWED_TAGS = frozenset(
    {"p", "br", "h2", "h3", "h4", "ul", "ol", "li", "a", "em", "strong", "i", "b", "blockquote"}
)
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
_REL = "nofollow noopener"


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if tag != "a":
        return False
    return name in {"href", "title"} or (name == "rel" and value == _REL)


_BLOCKS = {"p", "h2", "h3", "h4", "li", "blockquote", "ul", "ol"}


def sanitize(markup: str) -> str:
    """Keep only the allowed tags and attributes; everything else is escaped or dropped.
    Links get rel="nofollow noopener" so published copies do not vouch for them. Idempotent,
    so it runs on the way in (save) and on the way out (render)."""
    cleaned = bleach.clean(
        markup or "",
        tags=ALLOWED_TAGS,
        attributes=_allowed_attribute,
        protocols=ALLOWED_PROTOCOLS,
        strip=True,
        strip_comments=True,
    )
    return re.sub(r"<a (?![^>]*\brel=)", f'<a rel="{_REL}" ', cleaned)


def text_to_html(text: str) -> str:
    """Plain model output as paragraphs: blank lines split paragraphs, single newlines break."""
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []

    def _end_block(self) -> None:
        text = "".join(self.current).strip()
        if text:
            self.blocks.append(text)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCKS:
            self._end_block()
        elif tag == "br":
            self.current.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        self.current.append(re.sub(r"[ \t\r\n]+", " ", data))

    def close(self) -> None:
        super().close()
        self._end_block()


def html_to_text(markup: str) -> str:
    """The plain text the checks read: one paragraph per block, separated by blank lines."""
    parser = _TextExtractor()
    parser.feed(markup or "")
    parser.close()
    return "\n\n".join(re.sub(r" *\n *", "\n", block) for block in parser.blocks)
