"""How an SMS carries a text: GSM-7 when every character is in the GSM 03.38 alphabet, else UCS-2,
and how many segments (billed parts) that takes.

The alphabet comes from the gsm0338 codec (3GPP TS 23.038, its default alphabet and extension
table); the packing into parts is written here, because none of the packages on PyPI that count
segments does it correctly (see docs/api.md, "Encoding and segments").
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM_7 = "GSM-7"
UCS_2 = "UCS-2"
# Units one SMS holds alone, and per part once a user data header joins the parts.
SINGLE = {GSM_7: 160, UCS_2: 70}
PER_PART = {GSM_7: 153, UCS_2: 67}
# ESC is how the codec spells the escape to the extension table, not a character a user writes.
ESCAPE = "\x1b"
_gsm_encode = codecs.getencoder("gsm03.38")


@dataclass(frozen=True)
class Length:
    """A text's encoding and the segments it takes."""

    encoding: str
    segments: int


def measure(text: str) -> Length:
    """The encoding and segment count of `text`, as a provider bills it."""
    widths = _gsm7_widths(text)
    encoding = GSM_7 if widths is not None else UCS_2
    if widths is None:
        # UTF-16 code units: a character beyond the BMP is a surrogate pair, two units.
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return Length(encoding, _segments(widths, SINGLE[encoding], PER_PART[encoding]))


def _gsm7_widths(text: str) -> list[int] | None:
    """Septets per character (2 for the extension table), or None when one is not GSM-7."""
    if ESCAPE in text:
        return None
    widths = []
    for char in text:
        try:
            widths.append(len(_gsm_encode(char)[0]))
        except UnicodeEncodeError:
            return None
    return widths


def _segments(widths: list[int], single: int, per_part: int) -> int:
    """Parts of `per_part` units each, filled in order; an escape pair or a surrogate pair is never
    split between two parts, so a part can end one unit short (a plain ceil() undercounts)."""
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > per_part:
            parts, used = parts + 1, 0
        used += width
    return parts
