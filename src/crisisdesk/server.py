"""The production server entry: granian's RSGI interface in front of the ASGI application.

Public snapshot hits are answered natively through RSGI (one dictionary lookup, one
``response_bytes``), which costs granian noticeably less per request than its ASGI bridge (see
docs/benchmarks.md). So are the alert sources' POSTs (``/hooks/{token}``, ``/v2/enqueue``), the
other path an outage floods: they skip the framework's middleware and routing and go straight to
the same functions the documented FastAPI routes call. Every other request is handed to the
FastAPI application through a small RSGI→ASGI adapter, and the application's lifespan runs from
RSGI's init and del hooks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message

from crisisdesk.kit import answers
from crisisdesk.kit.runtime import Runtime
from crisisdesk.signal import hooks
from crisisdesk.statuspage.store import SiteStore

log = logging.getLogger(__name__)
JSON_HEADERS = [("content-type", "application/json")]
HOOKS = "/hooks/"
ENQUEUE = "/v2/enqueue"


def _template(path: str) -> str:
    """The path as logged: the token in a hook's path is its secret."""
    return ENQUEUE if path == ENQUEUE else HOOKS + "{token}"


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


class _Lifespan:
    """Drives an ASGI lifespan from synchronous hooks that own the event loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.started: asyncio.Future[Message] | None = None
        self.stopped: asyncio.Future[Message] | None = None
        self.task: asyncio.Task[None] | None = None

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind.startswith("lifespan.startup") and self.started and not self.started.done():
            self.started.set_result(message)
        elif kind.startswith("lifespan.shutdown") and self.stopped and not self.stopped.done():
            self.stopped.set_result(message)

    async def _run(self, scope: dict[str, Any]) -> None:
        await self.app(scope, self.inbox.get, self._send)

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.started, self.stopped = loop.create_future(), loop.create_future()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}
        self.task = loop.create_task(self._run(scope))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.started
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {message.get('message', '')}")

    async def shutdown(self) -> None:
        if self.task is None or self.stopped is None:
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self.stopped, 30)


class RSGIServer:
    """An RSGI application: the snapshot from memory, everything else through ASGI."""

    def __init__(self, app: ASGIApp, store: SiteStore, runtime: Runtime | None = None) -> None:
        self.app = app
        self.store = store
        self.runtime = runtime
        self.lifespan = _Lifespan(app)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.shutdown())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        method = scope.method
        if method == "GET" or method == "HEAD":
            path = scope.path
            if len(path) > 1 and path[-1] == "/":
                path = path[:-1]
            entry = self.store.files.get(path)
            if entry is not None:
                headers = scope.headers
                if_none_match = headers.get("if-none-match")
                if if_none_match and (entry.etag_str in if_none_match or if_none_match.strip() == "*"):
                    protocol.response_empty(304, entry.not_modified_str)
                    return
                accept = headers.get("accept-encoding")
                if accept and "gzip" in accept and entry.gzip_body is not None:
                    response = entry.gzip_str, entry.gzip_body
                else:
                    response = entry.headers_str, entry.body
                protocol.response_bytes(200, response[0], b"" if method == "HEAD" else response[1])
                return
        elif method == "POST" and self.runtime is not None:
            path = scope.path
            if path == ENQUEUE or (path.startswith(HOOKS) and "/" not in path[len(HOOKS) :]):
                await self._alerts(self.runtime, scope, protocol, path)
                return
        await self._asgi(scope, protocol)

    async def _alerts(self, runtime: Runtime, scope: Any, protocol: Any, path: str) -> None:
        """An alert source's POST, answered without the framework (the body limit included)."""
        limit = runtime.settings.max_body_bytes
        length = scope.headers.get("content-length")
        # isdecimal(): what int() takes; more than 20 digits is too large whatever it says.
        if length and length.isdecimal() and (len(length) > 20 or int(length) > limit):
            declared = int(length) if len(length) <= 20 else limit + 1
            protocol.response_bytes(413, JSON_HEADERS, answers.too_large(declared, limit))
            return

        async def read() -> bytes:
            body: bytes = await protocol()
            if len(body) > limit:
                raise _TooLarge(len(body))
            return body

        try:
            if path == ENQUEUE:
                answer = await hooks.answer_event(runtime, await read())
            else:
                answer = await hooks.answer_hook(runtime, path[len(HOOKS) :], read)
        except _TooLarge as exc:
            protocol.response_bytes(413, JSON_HEADERS, answers.too_large(exc.size, limit))
            return
        except (DBAPIError, OSError) as exc:
            # The same answers the application's handlers give (app.py), from the same function.
            refused = answers.refused_by_database(exc)
            if refused is not None:
                status, kind, text = refused
                log.warning("the database refused a value while serving %s: %s", _template(path), kind)
            else:
                status, kind, text = 503, "DatabaseUnavailable", answers.database_unreachable(self.store.version)
                log.error("database unreachable while serving %s: %s", _template(path), answers.brief(exc))
            protocol.response_bytes(status, JSON_HEADERS, orjson.dumps({"detail": [{"msg": text, "type": kind}]}))
            return
        headers = JSON_HEADERS + list(answer.headers.items())
        protocol.response_bytes(answer.status, headers, orjson.dumps(answer.body))

    async def _asgi(self, scope: Any, protocol: Any) -> None:
        client_host, _, client_port = scope.client.rpartition(":")
        server_host, _, server_port = scope.server.rpartition(":")
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "raw_path": scope.path.encode(),
            "query_string": scope.query_string.encode("latin-1"),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
            "client": (client_host, int(client_port or 0)),
            "server": (server_host, int(server_port or 0)),
            "state": {},
        }
        body_read = False

        async def receive() -> Message:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": await protocol(), "more_body": False}
            await protocol.client_disconnect()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        stream: Any = None

        async def send(message: Message) -> None:
            nonlocal status, headers, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if stream is None and not message.get("more_body", False):
                    protocol.response_bytes(status, headers, body)
                    return
                if stream is None:
                    stream = protocol.response_stream(status, headers)
                if body:
                    await stream.send_bytes(body)

        await self.app(asgi_scope, receive, send)


def create_rsgi_app() -> RSGIServer:
    """The factory ``crisisdesk serve`` runs under granian's RSGI interface."""
    from crisisdesk.app import create_app

    app = create_app()
    return RSGIServer(app, app.state.site, app.state.runtime)
