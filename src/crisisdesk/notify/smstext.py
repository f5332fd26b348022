"""How long an SMS is: GSM-7 or UCS-2 encoding, units and segments; and shortening text to fit.

One character outside the GSM 03.38 alphabet (an emoji, "…", "ç") switches the whole message
to UCS-2 and cuts a segment from 160 characters to 70, so what a template preview shows and
what the SMS channel sends both come from :func:`measure`. The alphabet is the ``gsm0338``
codec's; its extension-table characters (``{ } [ ] ~ \\ | ^ €`` and form feed) cost two units.
"""

from __future__ import annotations

import codecs
import functools
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

Encoding = Literal["GSM-7", "UCS-2"]

GSM_SINGLE, GSM_PART = 160, 153  # a multipart message loses 7 septets to its header
UCS_SINGLE, UCS_PART = 70, 67
GSM_ELLIPSIS, UCS_ELLIPSIS = "...", "…"

_encode = codecs.getencoder("gsm03.38")


@dataclass(frozen=True)
class SmsInfo:
    encoding: Encoding
    units: int  # GSM-7 septets, or UTF-16 code units for UCS-2
    segments: int
    per_segment: int  # units one segment holds at this length (160/153, 70/67)


@functools.lru_cache(maxsize=4096)
def _gsm_char(ch: str) -> int:
    """Septets of one character in GSM-7 (1, or 2 from the extension table); 0 when not in the alphabet."""
    try:
        return len(_encode(ch)[0])
    except UnicodeError:
        return 0


def _gsm_units(text: str) -> list[int] | None:
    """Units per character in GSM-7, or None when some character is not in the alphabet."""
    units = [_gsm_char(ch) for ch in text]
    return None if 0 in units else units


def _segments(units: list[int], single: int, part: int) -> int:
    total = sum(units)
    if total <= single:
        return 1 if total else 0
    # Characters are packed whole: an escape pair or a surrogate pair never straddles two parts.
    count, used = 1, 0
    for size in units:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def measure(text: str) -> SmsInfo:
    """The encoding, length in units, and number of segments ``text`` takes as one SMS."""
    gsm = _gsm_units(text)
    if gsm is not None:
        units, single, part, encoding = gsm, GSM_SINGLE, GSM_PART, "GSM-7"
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, part, encoding = UCS_SINGLE, UCS_PART, "UCS-2"
    segments = _segments(units, single, part)
    return SmsInfo(
        encoding=encoding,  # type: ignore[arg-type]
        units=sum(units),
        segments=segments,
        per_segment=single if segments <= 1 else part,
    )


def _fits(text: str, limit_segments: int) -> bool:
    return measure(text).segments <= limit_segments


def fit(text: str, limit_segments: int = 1, *, tail: str = "") -> str:
    """``text`` (followed by ``tail``, e.g. a link, kept whole) shortened with an ellipsis to fit.

    The ellipsis is "..." while the kept text is GSM-7, so shortening never forces UCS-2.
    When even ``tail`` alone does not fit, the result is ``tail`` itself shortened.
    """
    if limit_segments < 1:
        raise ValueError("limit_segments must be at least 1")
    whole = text + tail
    if _fits(whole, limit_segments):
        return whole

    def candidate(k: int) -> str:
        head = text[:k].rstrip()
        ellipsis = GSM_ELLIPSIS if _gsm_units(head + tail) is not None else UCS_ELLIPSIS
        return head + ellipsis + tail

    # The longest prefix that fits; growing the prefix never shrinks the message, so bisect.
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(candidate(mid), limit_segments):
            low = mid
        else:
            high = mid - 1
    best = candidate(low)
    if _fits(best, limit_segments):
        return best
    if tail:
        return fit(tail.strip(), limit_segments)
    return ""


# Typography that editors and Markdown produce, and that would switch a message to UCS-2.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2022": "-",
        "\u00e7": "\u00c7",  # GSM 03.38 has only the capital C with cedilla
    }
)


def plain(text: str) -> str:
    """``text`` with curly quotes, dashes, ellipses and no-break spaces made GSM-7 (as Twilio's smart encoding does)."""
    return text.translate(_PLAIN)
