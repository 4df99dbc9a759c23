"""The encodings archive imports read, and how a file's is told.

UTF-8 (with or without a byte-order mark), UTF-16 with its mark, and GB18030 (which contains GBK
and GB2312), told apart by the mark, then strict UTF-8, then charset-normalizer's best guess,
taken only when it is the GB family and the bytes decode strictly as GB18030. Any other encoding
is refused with the guess named ("it looks like cp1252"): a single-byte guess on a short text is
often wrong, and a wrong one would store mojibake silently.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

UTF8, UTF8_BOM, UTF16, GB18030 = "UTF-8", "UTF-8 with BOM", "UTF-16", "GB18030"
# Python's codec for each encoding named in reports.
CODECS = {UTF8: "utf-8", UTF8_BOM: "utf-8-sig", UTF16: "utf-16", GB18030: "gb18030"}
# charset-normalizer's names of the GB family, all read as GB18030 (a superset of each).
_GB_FAMILY = {"gb18030", "gbk", "gb2312", "hz"}
_SNIFF_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str | None
    encoding: str  # one of the names above; "" when unreadable
    error: str | None = None


def _guess(raw: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(raw[:_SNIFF_BYTES]).best()
    return best.encoding if best is not None else None


def _unreadable(guess: str | None) -> str:
    looks = f" (it looks like {guess})" if guess and guess not in {"utf_8", "ascii"} else ""
    return f"not valid UTF-8 or GB18030{looks}"


def sniff_encoding(raw: bytes) -> tuple[str, str | None]:
    """The encoding of ``raw`` (a name above), or ("", why not) when it is none of them."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return UTF8_BOM, None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return UTF16, None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return UTF8, None
    guess = _guess(raw)
    if guess in _GB_FAMILY:
        try:
            raw.decode("gb18030")
        except UnicodeDecodeError:
            pass
        else:
            return GB18030, None
    return "", _unreadable(guess)


def decode_bytes(raw: bytes) -> Decoded:
    """The text of one file, read in the encoding it is in (see the module docstring)."""
    encoding, error = sniff_encoding(raw)
    if not encoding:
        return Decoded(None, "", error)
    try:
        return Decoded(raw.decode(CODECS[encoding]), encoding)
    except UnicodeDecodeError as exc:  # a UTF-8 mark on bytes that are not
        return Decoded(None, "", f"not valid {encoding} ({exc.reason} at byte {exc.start})")


def file_encoding(path: Path) -> str:
    """The encoding a CSV or JSON Lines file is read in: its mark, else UTF-8 when every byte
    is, else GB18030 when the guess and a strict decode agree. Otherwise UTF-8, so that the rows
    that are not are reported one by one."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith(b"\xef\xbb\xbf"):
        return UTF8_BOM
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return UTF16
    if _decodes(path, "utf-8"):
        return UTF8
    if _guess(head) in _GB_FAMILY and _decodes(path, "gb18030"):
        return GB18030
    return UTF8


def _decodes(path: Path, codec: str) -> bool:
    """Whether the whole file decodes strictly (read in 1 MB pieces, never all at once)."""
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        with path.open("rb") as handle:
            while piece := handle.read(_SNIFF_BYTES):
                decoder.decode(piece)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
