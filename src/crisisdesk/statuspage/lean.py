"""The lean serving path: a raw ASGI middleware that answers public GETs from memory.

It sits outside the framework's routing: a request for a snapshot path is a dictionary lookup
and one ``send`` of ready bytes. Anything else passes through to the application.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from crisisdesk.statuspage.store import SiteStore


def _accepts_gzip(value: bytes) -> bool:
    return b"gzip" in value


class PublicSiteMiddleware:
    def __init__(self, app: ASGIApp, store: SiteStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path[:-1]
            entry = self.store.files.get(path)
            if entry is not None:
                if_none_match = b""
                gzip_ok = False
                for name, value in scope["headers"]:
                    if name == b"if-none-match":
                        if_none_match = value
                    elif name == b"accept-encoding":
                        gzip_ok = _accepts_gzip(value)
                if if_none_match and (entry.etag in if_none_match or if_none_match.strip() == b"*"):
                    await send({"type": "http.response.start", "status": 304, "headers": entry.not_modified_headers})
                    await send({"type": "http.response.body", "body": b""})
                    return
                if gzip_ok and entry.gzip_body is not None and entry.gzip_headers is not None:
                    headers, body = entry.gzip_headers, entry.gzip_body
                else:
                    headers, body = entry.headers, entry.body
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                return
        await self.app(scope, receive, send)
