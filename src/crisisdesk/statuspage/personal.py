"""Pages rendered per request in the public page's look, for one visitor: the subscription pages,
the private (account) pages and the on-call acknowledge links.

They share the public page's templates and assets but not its snapshot: each holds a token, a
secret or one account's data, so each caller says how it is kept (``headers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import utcnow
from crisisdesk.statuspage import widget
from crisisdesk.statuspage.render import ENV


@lru_cache(maxsize=1)
def asset_versions() -> tuple[str, str]:
    """Fingerprints of the page's CSS and JavaScript, for their URLs."""
    return widget.fingerprint(widget.asset("status.css")), widget.fingerprint(widget.asset("status.js"))


def render(
    request: Request,
    name: str,
    *,
    active: str,
    headers: Mapping[str, str],
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The template ``name`` in the public page's frame, ``active`` marking its navigation entry."""
    settings = runtime_of(request).settings
    css, js = asset_versions()
    html = ENV.get_template(name).render(
        page_name=settings.page_name,
        base_url=settings.base_url.rstrip("/"),
        updated_at=utcnow(),
        css_version=css,
        js_version=js,
        active=active,
        canonical=None,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=dict(headers))
