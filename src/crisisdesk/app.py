"""The application: the lean public path in front of the FastAPI API and console."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crisisdesk.auth.deps import LoginRequired
from crisisdesk.config import Settings, get_settings
from crisisdesk.kit import answers, events, metrics
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.pages import STATIC_DIR, templates
from crisisdesk.kit.runtime import Runtime
from crisisdesk.statuspage import publish as publishing
from crisisdesk.statuspage.lean import PublicSiteMiddleware
from crisisdesk.statuspage.store import SiteStore
from crisisdesk.worker import register_tasks, work_forever

log = logging.getLogger(__name__)


class BodyLimitMiddleware:
    """Refuse request bodies over the configured size with 413, before anything reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send, int(value))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as exc:
            await self._refuse(send, exc.size)

    async def _refuse(self, send: Send, size: int) -> None:
        body = answers.too_large(size, self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _route_of(request: Request) -> str:
    """The route's template for logs ("/hooks/{token}"): a path may carry a secret token."""
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "an unrouted path")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for these settings; workers start with its lifespan."""
    settings = settings or get_settings()
    runtime = Runtime.create(settings)
    store = SiteStore(max_age=settings.public_max_age, swr=settings.public_swr)
    register_tasks(runtime)

    async def on_commit(topics: set[str]) -> None:
        if events.PUBLIC not in topics:
            return
        try:
            await publishing.publish(runtime.db, settings, store)
            metrics.SNAPSHOTS_PUBLISHED.inc()
        except Exception:
            # The change is committed; the worker sees the snapshot is stale and renders again.
            metrics.PUBLISH_FAILURES.inc()
            log.exception("rendering the public site after a commit failed; the worker will retry")

    async def on_change(topics: set[str]) -> None:
        if events.SNAPSHOT in topics:
            await publishing.load_latest(runtime.db, store)
            metrics.SNAPSHOT_VERSION.set(store.version)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.db.after_commit.append(on_commit)
        runtime.watcher.listeners.append(on_change)
        try:
            if not await publishing.load_latest(runtime.db, store):
                await publishing.publish(runtime.db, settings, store)
        except (OperationalError, DBAPIError, OSError) as exc:
            log.error("starting without a snapshot: the database is unreachable (%s)", exc)
        await runtime.watcher.start()
        worker = asyncio.create_task(work_forever(runtime, store), name="worker") if settings.run_workers else None
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # full passes, whose pauses otherwise show up in the public page's tail latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await runtime.watcher.stop()
            await runtime.db.dispose()

    app = FastAPI(
        title="crisisdesk",
        version="0.1.0",
        description="Crisis command center: incidents, status page, and the Statuspage v2 public API.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
        # Checked on every request otherwise; operators get Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.site = store

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if _wants_html(request):
            return templates.TemplateResponse(
                request, "error.html", {"status": exc.status_code, "message": exc.message}, status_code=exc.status_code
            )
        return JSONResponse(exc.as_dict(), status_code=exc.status_code)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse({"detail": [{"msg": "sign in first", "type": "NotAuthenticated"}]}, status_code=401)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def database_down(request: Request, exc: Exception) -> Response:
        refused = answers.refused_by_database(exc)
        if refused is not None:
            # The database is up and said no to this request's data: the client's to fix.
            status, kind, text = refused
            log.warning("the database refused a value while serving %s: %s", _route_of(request), kind)
            if _wants_html(request):
                return templates.TemplateResponse(
                    request, "error.html", {"status": status, "message": text}, status_code=status
                )
            return JSONResponse({"detail": [{"msg": text, "type": kind}]}, status_code=status)
        log.error("database unreachable while serving %s: %s", _route_of(request), answers.brief(exc))
        message = answers.database_unreachable(store.version)
        if _wants_html(request):
            return templates.TemplateResponse(
                request, "error.html", {"status": 503, "message": message}, status_code=503
            )
        return JSONResponse({"detail": [{"msg": message, "type": "DatabaseUnavailable"}]}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    from crisisdesk import routes

    routes.include_all(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def serve_app(app: FastAPI) -> ASGIApp:
    """The app behind the lean public path: snapshot hits never enter FastAPI at all."""
    return PublicSiteMiddleware(app, store=app.state.site)


def create_server_app() -> ASGIApp:
    """The ASGI factory the server runs (``crisisdesk serve``; granian ``--factory``)."""
    return serve_app(create_app())
