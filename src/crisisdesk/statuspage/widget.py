"""The embeddable widget script and the public page's own CSS and JavaScript."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

ASSETS = Path(__file__).resolve().parent / "assets"


def asset(name: str) -> bytes:
    """One of the public page's asset files, as bytes."""
    return (ASSETS / name).read_bytes()


def fingerprint(body: bytes) -> str:
    """A short content hash, appended to asset URLs so browsers fetch a changed file at once."""
    return hashlib.sha256(body).hexdigest()[:10]


def widget_script(base_url: str) -> bytes:
    """widget.js with the page's URL as the fallback when the script cannot see its own src."""
    return asset("widget.js").replace(b"__CRISISDESK_BASE_URL__", orjson.dumps(base_url))
