"""The public site held in memory: pre-rendered bytes, gzip, strong ETags, ready headers.

A snapshot is a mapping of URL path -> file. It is rendered once when something is published,
stored in the database (so every process serves the same version), and loaded here. Serving a
request is a dictionary lookup; nothing on the public path touches the database, so the page
keeps serving its last snapshot when the database is unreachable.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import zlib
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class SiteFile:
    """One public file, with its headers computed once."""

    path: str
    content_type: str
    body: bytes
    gzip_body: bytes | None
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    gzip_headers: list[tuple[bytes, bytes]] | None
    not_modified_headers: list[tuple[bytes, bytes]]
    # The same headers as text, for granian's RSGI interface (crisisdesk.server).
    etag_str: str
    headers_str: list[tuple[str, str]]
    gzip_str: list[tuple[str, str]] | None
    not_modified_str: list[tuple[str, str]]


def _text(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


COMPRESSIBLE = (
    "text/",
    "application/json",
    "application/javascript",
    "image/svg+xml",
    "application/rss+xml",
    "application/atom+xml",
)


def make_file(path: str, content_type: str, body: bytes, *, cache_control: str, cors: bool) -> SiteFile:
    etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
    common = [
        (b"etag", etag),
        (b"cache-control", cache_control.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if cors:
        common.append((b"access-control-allow-origin", b"*"))
    gzip_body = None
    if content_type.startswith(COMPRESSIBLE) and len(body) > 512:
        gzip_body = gzip.compress(body, compresslevel=9, mtime=0)
    ctype = (b"content-type", content_type.encode())
    vary = [(b"vary", b"accept-encoding")] if gzip_body is not None else []
    headers = [ctype, (b"content-length", str(len(body)).encode()), *common, *vary]
    gzip_headers = None
    if gzip_body is not None:
        gzip_headers = [
            ctype,
            (b"content-length", str(len(gzip_body)).encode()),
            (b"content-encoding", b"gzip"),
            *common,
            *vary,
        ]
    not_modified = [*common, *vary]
    return SiteFile(
        path, content_type, body, gzip_body, etag, headers, gzip_headers, not_modified,
        etag.decode(), _text(headers), _text(gzip_headers) if gzip_headers else None, _text(not_modified),
    )  # fmt: skip


@dataclass
class Site:
    """A rendered public site, before it is stored."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (content type, body)

    def add(self, path: str, content_type: str, body: str | bytes) -> None:
        self.files[path] = (content_type, body.encode() if isinstance(body, str) else body)

    def pack(self) -> tuple[bytes, str]:
        """Compressed payload and a digest of the content (to skip storing an identical site)."""
        raw = orjson.dumps({p: [ct, b.decode("latin-1")] for p, (ct, b) in sorted(self.files.items())})
        return zlib.compress(raw, 6), hashlib.sha256(raw).hexdigest()

    @staticmethod
    def unpack(payload: bytes) -> Site:
        data = orjson.loads(zlib.decompress(payload))
        return Site({p: (ct, b.encode("latin-1")) for p, (ct, b) in data.items()})


def cache_control_for(path: str, max_age: int, swr: int) -> str:
    return f"public, max-age={max_age}, stale-while-revalidate={swr}"


class SiteStore:
    """The snapshot this process serves, and a way to wait for the next one."""

    def __init__(self, *, max_age: int = 30, swr: int = 60) -> None:
        self.version = 0
        self.files: dict[str, SiteFile] = {}
        self.max_age, self.swr = max_age, swr
        self._changed = asyncio.Condition()

    def install(self, version: int, site: Site) -> bool:
        """Serve this snapshot if it is newer than the one served; True if it was installed."""
        if version <= self.version:
            return False
        files = {}
        for path, (content_type, body) in site.files.items():
            cors = path.startswith("/api/") or path.endswith((".svg", ".js"))
            files[path] = make_file(
                path, content_type, body, cache_control=cache_control_for(path, self.max_age, self.swr), cors=cors
            )
        self.files = files
        self.version = version
        return True

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_newer(self, version: int, timeout: float) -> int:  # noqa: ASYNC109 - bounded SSE wait
        """Wait until a snapshot newer than ``version`` is installed, or the timeout passes."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > version), timeout)
            except TimeoutError:
                pass
        return self.version
