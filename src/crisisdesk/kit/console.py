"""Helpers shared by the console's views: rendering, form values, failures and UTC times.

The console's forms send times typed in UTC through ``<input type="datetime-local">``, which
carries no offset; :func:`parse_utc_input` reads them as UTC and :func:`utc_input` writes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.kit.pages import templates
from crisisdesk.kit.time import as_utc, utcnow

COMPONENT_STATUS_LABELS = {
    "operational": "Operational",
    "degraded_performance": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "under_maintenance": "Under maintenance",
}


@dataclasses.dataclass
class Failure:
    """A refused form: which form, the field the error names (if any), and the message."""

    form: str
    message: str
    field: str | None = None
    values: dict[str, Any] = dataclasses.field(default_factory=dict)

    def on(self, form: str, name: str) -> str | None:
        """The message to show next to ``name`` in ``form``, if the failure names that field."""
        if self.form == form and self.field is not None and self.field == name:
            return self.message
        return None


def failure_of(exc: DomainError, form: str, values: dict[str, Any]) -> Failure:
    """Turn a service's refusal into what the form shows; component fields map to their selects."""
    name = exc.field
    if name and name.startswith("components."):
        name = "component:" + name.split(".", 1)[1]
    # The status goes with the values so the page re-renders with the service's 4xx.
    return Failure(form=form, message=exc.message, field=name, values={**values, "_status": exc.status_code})


def render(
    request: Request, name: str, *, actor: object | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a console page with the signed-in actor and the change watcher's health."""
    runtime = request.app.state.runtime
    base = {
        "actor": actor,
        "watcher": runtime.watcher,
        "now": utcnow(),
        "path": request.url.path,
        "status_labels": COMPONENT_STATUS_LABELS,
        "failure": None,
        "values": {},
    }
    base.update(context)
    failure = base.get("failure")
    if isinstance(failure, Failure) and not base["values"]:
        base["values"] = failure.values
    return templates.TemplateResponse(request, name, base, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    """The answer to a successful form: go back to a page with GET (post/redirect/get)."""
    return RedirectResponse(url, status_code=303)


async def form_values(request: Request) -> dict[str, Any]:
    """The submitted form as a dict: one string per field, a list where a field repeats."""
    form = await request.form()
    values: dict[str, Any] = {}
    for key in form:
        items = [str(v) for v in form.getlist(key) if isinstance(v, str)]
        if not items:
            continue
        values[key] = items if len(items) > 1 else items[0]
    values.pop("csrf_token", None)
    return values


def as_list(value: Any) -> list[str]:
    """A form value that may repeat (checkboxes) as a list."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def text(values: dict[str, Any], key: str) -> str:
    """A single text value of the form ('' when absent)."""
    value = values.get(key, "")
    return str(value[-1] if isinstance(value, list) else value)


def parse_utc_input(value: str, *, field: str) -> datetime | None:
    """A time typed in the console (UTC, from a datetime-local input, offset optional)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # An offset at the ends of the calendar (0001-01-01T00:00+14:00) has no UTC instant.
        return as_utc(parsed) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{value!r} is not a time; use YYYY-MM-DD HH:MM (UTC)", field=field) from None


def utc_input(value: datetime | None) -> str:
    """A time as a datetime-local input value, in UTC."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M") if value else ""


async def act_on_form(
    request: Request,
    session: AsyncSession,
    *,
    form: str,
    load: Callable[[], Awaitable[Any]],
    action: Callable[[Any, dict[str, Any]], Awaitable[None]],
    rerender: Callable[[Failure], Awaitable[Response]],
    done: str,
    not_found_field: str = "incident_id",
) -> Response:
    """Run one form's action on a loaded object; a refusal rolls back and re-renders the page."""
    values = await form_values(request)
    try:
        await action(await load(), values)
    except DomainError as exc:
        if exc.field == not_found_field:
            raise  # the object itself is missing: the ordinary 404 page
        await discard(session)
        return await rerender(failure_of(exc, form, values))
    return see_other(done)


async def discard(session: AsyncSession) -> None:
    """Throw away what a refused action wrote, so nothing half-written is committed."""
    await session.rollback()
    # Change topics recorded before the refusal must not wake anyone after the (empty) commit.
    session.info.pop("topics", None)


templates.env.filters["utc_input"] = utc_input
templates.env.filters["status_label"] = lambda s: COMPONENT_STATUS_LABELS.get(str(s), str(s).replace("_", " "))
templates.env.filters["role_label"] = lambda r: str(r).replace("_", " ").title()
templates.env.globals["timedelta_minutes"] = lambda minutes: timedelta(minutes=int(minutes))
