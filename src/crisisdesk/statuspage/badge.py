"""An SVG status badge (shields.io-like) with the page's overall description and colour."""

from __future__ import annotations

from html import escape

COLOURS = {
    "none": "#15803d",
    "minor": "#a16207",
    "major": "#c2410c",
    "critical": "#b91c1c",
    "maintenance": "#1d4ed8",
}
LABEL_COLOUR = "#374151"


def _text_width(text: str) -> int:
    """An estimate of the width of ``text`` in 11px Verdana, generous enough not to clip."""
    narrow, wide = set("ijlt.,:;'|! "), set("mwMW@%")
    total = 0.0
    for ch in text:
        total += 3.6 if ch in narrow else 9.5 if ch in wide else 7.2 if ch.isupper() else 6.3
    return int(total + 0.5)


def render_badge(label: str, message: str, tone: str) -> str:
    """The badge as SVG text; ``tone`` is an indicator (none…critical) or ``maintenance``."""
    colour = COLOURS.get(tone, COLOURS["none"])
    left, right = _text_width(label) + 12, _text_width(message) + 12
    width = left + right
    title = escape(f"{label}: {message}")
    lab, msg = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:.1f}" y="14">{lab}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{msg}</text></g></svg>'
    )
