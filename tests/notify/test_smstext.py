"""SMS length: GSM-7 vs UCS-2, units, segments, and shortening to fit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crisisdesk.notify.smstext import fit, measure, plain

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<"
    "=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = "^{}\\[~]|€\f"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments", "per_segment"),
    [
        ("", "GSM-7", 0, 0, 160),
        ("a" * 160, "GSM-7", 160, 1, 160),
        ("a" * 161, "GSM-7", 161, 2, 153),
        ("a" * 306, "GSM-7", 306, 2, 153),
        ("a" * 307, "GSM-7", 307, 3, 153),
        ("€" * 80, "GSM-7", 160, 1, 160),  # extension characters take two units
        ("€" * 81, "GSM-7", 162, 2, 153),
        ("a" + "€" * 77, "GSM-7", 155, 1, 160),
        # 152 units then an escape pair: the pair does not straddle parts, so a third part.
        ("a" * 152 + "€" + "a" * 153, "GSM-7", 307, 3, 153),
        ("ç" * 70, "UCS-2", 70, 1, 70),  # one character outside the alphabet switches to UCS-2
        ("ç" * 71, "UCS-2", 71, 2, 67),
        ("😀" * 35, "UCS-2", 70, 1, 70),  # astral characters are two UTF-16 code units
        ("😀" * 36, "UCS-2", 72, 2, 67),
        ("a" * 66 + "😀", "UCS-2", 68, 1, 70),
    ],
)
def test_measure(text: str, encoding: str, units: int, segments: int, per_segment: int) -> None:
    info = measure(text)
    assert (info.encoding, info.units, info.segments, info.per_segment) == (encoding, units, segments, per_segment)


def test_the_whole_gsm_alphabet_is_gsm7() -> None:
    assert measure(GSM_BASIC).encoding == "GSM-7"
    assert measure(GSM_BASIC).units == len(GSM_BASIC)
    assert measure(GSM_EXTENDED).units == 2 * len(GSM_EXTENDED)


def test_fit_keeps_short_text_and_shortens_long_text_with_an_ellipsis() -> None:
    assert fit("Resolved.") == "Resolved."
    shortened = fit("x" * 200)
    assert shortened == "x" * 157 + "..."
    assert measure(shortened).units == 160
    ucs = fit("ç" * 100)
    assert ucs == "ç" * 69 + "…"


def test_fit_keeps_the_tail_whole() -> None:
    link = " https://status.test/incidents/abc"
    text = fit("We are investigating failed sign-ins for SSO users. " * 5, tail=link)
    assert text.endswith("..." + link)
    assert measure(text).segments == 1


def test_fit_never_forces_ucs2_by_its_ellipsis() -> None:
    assert measure(fit("plain " * 40)).encoding == "GSM-7"


def test_plain_turns_typography_into_gsm7() -> None:
    text = plain("We’re “investigating” – more soon…")
    assert text == 'We\'re "investigating" - more soon...'
    assert measure(text).encoding == "GSM-7"


gsm_text = st.text(alphabet=GSM_BASIC + GSM_EXTENDED, max_size=400)
any_text = st.text(max_size=400)


@given(any_text, st.integers(min_value=1, max_value=4))
def test_fit_always_fits(text: str, limit: int) -> None:
    fitted = fit(text, limit)
    assert measure(fitted).segments <= limit
    if measure(text).segments <= limit:
        assert fitted == text


@given(any_text, st.text(max_size=40))
def test_fit_with_a_tail_always_fits_one_segment(text: str, tail: str) -> None:
    assert measure(fit(text, tail=tail)).segments <= 1


@given(gsm_text)
def test_measure_agrees_with_the_gsm_codec(text: str) -> None:
    info = measure(text)
    assert info.encoding == "GSM-7"
    assert info.units == len(text.encode("gsm03.38"))


@given(any_text)
def test_measure_agrees_with_utf16_when_not_gsm(text: str) -> None:
    info = measure(text)
    try:
        text.encode("gsm03.38")
    except UnicodeError:
        assert info.encoding == "UCS-2"
        assert info.units == len(text.encode("utf-16-le")) // 2
    else:
        assert info.encoding == "GSM-7"
    single, part = (160, 153) if info.encoding == "GSM-7" else (70, 67)
    if info.units <= single:
        assert info.segments == (1 if text else 0)
    else:
        # Whole characters per part: at least the plain division, at most one more per part boundary.
        assert -(-info.units // part) <= info.segments <= -(-info.units // (part - 1))
