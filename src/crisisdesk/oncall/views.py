"""Console pages for on-call: who is on call now, schedules (layers, overrides, shifts, "who at T"),
escalation policies and the severity paging config, and each person's contact methods and rules.

Times typed into these pages are wall times in the schedule's zone (a layer's first hand-off in the
layer's own zone), as ``<input type="datetime-local">`` sends them; a wall time the clock skips is
refused, one the clock shows twice is read as its first occurrence. Layers and levels are repeated
fieldsets named ``layers.0.users``, ``levels.1.timeout_minutes`` and so on, the same names the
services use in their errors, so a refusal is shown next to the field it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth import service as auth
from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.incident.models import IncidentRole, Severity
from crisisdesk.kit.console import Failure, as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput, NotFound
from crisisdesk.kit.pages import templates
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import as_utc, utcnow
from crisisdesk.oncall import people, policies, schedules
from crisisdesk.oncall.models import ContactKind, EscalationPolicy, OnCallSchedule, Urgency
from crisisdesk.oncall.schedules import LayerInput

router = APIRouter(include_in_schema=False)

SHIFT_DAYS = 14
LOCAL_INPUT = "%Y-%m-%dT%H:%M"
# Fieldset indices beyond this are not read: the services refuse more layers or levels anyway.
MAX_FIELDSETS = 50
PAGE_NO_ROLE = "page"
MIN_YEAR, MAX_YEAR = 1970, 9000
ROTATION_LABELS = {"daily": "Daily", "weekly": "Weekly", "custom": "Custom length"}
CONTACT_LABELS = {
    ContactKind.email: "Email",
    ContactKind.sms: "SMS",
    ContactKind.slack_dm: "Slack direct message",
    ContactKind.push: "Push webhook",
}


def in_zone(value: datetime | None, time_zone: str, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> str:
    """An instant as a wall time in `time_zone` (UTC when the zone is unknown)."""
    if value is None:
        return ""
    try:
        tz: tzinfo = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        tz = UTC
    return as_utc(value).astimezone(tz).strftime(fmt)


templates.env.filters["in_zone"] = in_zone
templates.env.filters["contact_label"] = lambda kind: CONTACT_LABELS.get(kind, str(kind))


def _status_of(failure: Failure | None) -> int:
    return 200 if failure is None else int(failure.values.get("_status", 422))


def _failure(exc: DomainError, form: str, values: dict[str, Any], *, fields: Sequence[str] = ()) -> Failure:
    """The form's failure; a NotFound for a chosen option is a refused form (422), not a missing page."""
    failure = failure_of(exc, form, values)
    if isinstance(exc, NotFound):
        failure.values["_status"] = 422
    for name in fields:
        if failure.field and failure.field.startswith(name + "."):
            failure.field = name
    return failure


def parse_local(raw: str, *, field: str) -> datetime:
    """A time typed in the console: a wall time (read in the zone the form names) or one with an offset."""
    raw = raw.strip()
    if not raw:
        raise InvalidInput("a time is required, as YYYY-MM-DD HH:MM", field=field)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a time; use YYYY-MM-DD HH:MM", field=field) from None
    # Far from the calendar's ends, so a 90-day look-ahead or a zone's offset cannot overflow.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise InvalidInput(f"pick a time in the years {MIN_YEAR} to {MAX_YEAR}", field=field)
    return value


def parse_int(raw: str, *, field: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a whole number", field=field) from None


def _indices(values: dict[str, Any], prefix: str) -> list[int]:
    """The fieldset numbers present in the form (``layers.3.name`` → 3), in order."""
    found: set[int] = set()
    for key in values:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == prefix and parts[1].isdecimal() and int(parts[1]) < MAX_FIELDSETS:
            found.add(int(parts[1]))
    return sorted(found)


def _local_input(value: datetime, time_zone: str) -> str:
    return in_zone(value, time_zone, LOCAL_INPUT)


async def _users(session: AsyncSession) -> list[User]:
    return [u for u in await auth.list_users(session) if u.is_active]


def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith(("posix/", "right/")))


# ================================================================ overview


@router.get("/console/oncall", response_class=HTMLResponse)
async def overview(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every schedule with who is on call now and until when, in the schedule's zone."""
    now = utcnow()
    rows = [await schedules.now_and_until(session, s.id, now) for s in await schedules.list_schedules(session)]
    return render(
        request,
        "oncall/index.html",
        actor=actor,
        rows=rows,
        policies=await policies.list_policies(session),
    )


# ================================================================ schedules


@dataclasses.dataclass
class LayerForm:
    """One layer's fieldset as typed: ``start`` is a wall time in ``time_zone``."""

    name: str = ""
    users: list[str] = dataclasses.field(default_factory=list)
    start: str = ""
    time_zone: str = ""
    rotation: str = "weekly"
    length_hours: str = ""


def _layer_forms_of(rows: Sequence[Any]) -> list[LayerForm]:
    return [
        LayerForm(
            name=row.name,
            users=list(row.user_ids),
            start=_local_input(row.start, row.time_zone),
            time_zone=row.time_zone,
            rotation=row.rotation,
            length_hours="" if row.length_hours is None else str(row.length_hours),
        )
        for row in rows
    ]


def _layer_forms_from(values: dict[str, Any]) -> list[LayerForm]:
    forms = []
    for i in _indices(values, "layers"):
        key = f"layers.{i}."
        forms.append(
            LayerForm(
                name=text(values, key + "name"),
                users=[u for u in as_list(values.get(key + "users")) if u],
                start=text(values, key + "start"),
                time_zone=text(values, key + "time_zone").strip(),
                rotation=text(values, key + "rotation") or "weekly",
                length_hours=text(values, key + "length_hours"),
            )
        )
    return forms


def _layer_inputs(forms: Sequence[LayerForm], default_zone: str) -> list[LayerInput]:
    inputs = []
    for i, form in enumerate(forms):
        prefix = f"layers.{i}"
        length = parse_int(form.length_hours, field=f"{prefix}.length_hours") if form.rotation == "custom" else None
        inputs.append(
            LayerInput(
                name=form.name,
                users=form.users,
                start=parse_local(form.start, field=f"{prefix}.start"),
                time_zone=form.time_zone or default_zone,
                rotation=form.rotation,
                length_hours=length,
            )
        )
    return inputs


def _handoff_text(row: Any) -> str:
    local = row.start.astimezone(schedules.zone(row.time_zone))
    if row.rotation == "daily":
        return f"every day at {local:%H:%M} {row.time_zone}"
    if row.rotation == "weekly":
        return f"every {local:%A} at {local:%H:%M} {row.time_zone}"
    return f"every {row.length_hours} h from {local:%a %Y-%m-%d %H:%M} {row.time_zone}"


async def _schedule_form(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    schedule: OnCallSchedule | None,
    *,
    layers: list[LayerForm],
    values: dict[str, Any],
    failure: Failure | None = None,
    status_code: int | None = None,
) -> HTMLResponse:
    return render(
        request,
        "oncall/schedule_form.html",
        actor=actor,
        schedule=schedule,
        layers=layers,
        values=values,
        failure=failure,
        status_code=status_code or _status_of(failure),
        users=await _users(session),
        zones=_zones(),
        rotations=ROTATION_LABELS,
    )


@router.get("/console/oncall/schedules/new", response_class=HTMLResponse)
async def new_schedule(request: Request, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """An empty schedule with one empty layer."""
    zone = "Etc/UTC"
    values = {"name": "", "description": "", "time_zone": zone}
    return await _schedule_form(request, actor, session, None, layers=[LayerForm(time_zone=zone)], values=values)


@router.get("/console/oncall/schedules/{schedule_id}/edit", response_class=HTMLResponse)
async def edit_schedule(request: Request, schedule_id: str, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """The schedule's settings and layers, one fieldset a layer."""
    schedule = await schedules.get_schedule(session, schedule_id)
    values = {"name": schedule.name, "description": schedule.description, "time_zone": schedule.time_zone}
    layers = _layer_forms_of(await schedules.layers_of(session, schedule.id))
    return await _schedule_form(request, actor, session, schedule, layers=layers, values=values)


async def _save_schedule(request: Request, actor: Actor, session: AsyncSession, schedule_id: str | None) -> Response:
    schedule = await schedules.get_schedule(session, schedule_id) if schedule_id else None
    values = await form_values(request)
    layers = _layer_forms_from(values)
    time_zone = text(values, "time_zone").strip() or "Etc/UTC"
    # "Add a layer", "Remove" and "More turns" re-render the form with the fieldsets changed; nothing is stored yet.
    if values.get("add_layer"):
        layers.append(LayerForm(time_zone=time_zone))
        return await _schedule_form(request, actor, session, schedule, layers=layers, values=values)
    if (remove := text(values, "remove_layer")).isdecimal():
        del layers[int(remove) : int(remove) + 1]
        return await _schedule_form(request, actor, session, schedule, layers=layers, values=values)
    if values.get("more_turns"):
        # Every layer is shown with three empty turns after the people chosen so far.
        return await _schedule_form(request, actor, session, schedule, layers=layers, values=values)
    try:
        inputs = _layer_inputs(layers, time_zone)
        fields: dict[str, Any] = {
            "name": text(values, "name"),
            "description": text(values, "description"),
            "time_zone": time_zone,
            "layers": inputs,
        }
        if schedule is None:
            schedule = await schedules.create_schedule(session, actor, **fields)
        else:
            schedule = await schedules.update_schedule(session, actor, schedule.id, **fields)
    except DomainError as exc:
        await discard(session)
        if schedule_id is not None:
            schedule = await schedules.get_schedule(session, schedule_id)
        failure = _failure(exc, "schedule", values)
        return await _schedule_form(request, actor, session, schedule, layers=layers, values=values, failure=failure)
    return see_other(f"/console/oncall/schedules/{schedule.id}")


@router.post("/console/oncall/schedules", response_class=HTMLResponse)
async def create_schedule(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Create the schedule and open its page."""
    return await _save_schedule(request, actor, session, None)


async def _schedule_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    schedule_id: str,
    *,
    at: str = "",
    failure: Failure | None = None,
) -> HTMLResponse:
    schedule = await schedules.get_schedule(session, schedule_id)
    now = utcnow().replace(second=0, microsecond=0)
    layers = await schedules.layers_of(session, schedule.id)
    overrides = await schedules.overrides_of(session, schedule.id, ending_after=now)
    answer: schedules.OnCallNow | None = None
    answer_at: datetime | None = None
    if at.strip() and failure is None:
        try:
            answer_at = schedules.local_to_utc(parse_local(at, field="at"), schedule.time_zone, field="at")
            answer = await schedules.now_and_until(session, schedule.id, answer_at)
        except DomainError as exc:
            failure = _failure(exc, "at", {"at": at})
    ids = {u for row in layers for u in row.user_ids} | {o.user_id for o in overrides}
    return render(
        request,
        "oncall/schedule.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        schedule=schedule,
        now=now,
        current=await schedules.now_and_until(session, schedule.id, now),
        layers=[(row, _handoff_text(row)) for row in layers],
        overrides=overrides,
        names={uid: u.name for uid, u in (await schedules.users_by_id(session, ids)).items()},
        shifts=await schedules.shifts(session, schedule.id, now, now + timedelta(days=SHIFT_DAYS)),
        shift_days=SHIFT_DAYS,
        at=at,
        answer=answer,
        answer_at=answer_at,
        users=await _users(session),
        paged_by=await policies.policies_targeting_schedule(session, schedule.id),
    )


@router.get("/console/oncall/schedules/{schedule_id}", response_class=HTMLResponse)
async def schedule_page(
    request: Request, schedule_id: str, actor: ConsoleReader, session: Tx, at: str = ""
) -> HTMLResponse:
    """Layers, overrides, the next 14 days of shifts, and who is on call at a time typed in the schedule's zone."""
    return await _schedule_page(request, actor, session, schedule_id, at=at)


@router.post("/console/oncall/schedules/{schedule_id}", response_class=HTMLResponse)
async def update_schedule(request: Request, schedule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Save the schedule's settings; the layers sent replace every layer."""
    return await _save_schedule(request, actor, session, schedule_id)


@router.post("/console/oncall/schedules/{schedule_id}/delete", response_class=HTMLResponse)
async def delete_schedule(request: Request, schedule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete the schedule; refused while an escalation policy pages it."""
    await schedules.get_schedule(session, schedule_id)
    try:
        await schedules.delete_schedule(session, actor, schedule_id)
    except DomainError as exc:
        await discard(session)
        return await _schedule_page(request, actor, session, schedule_id, failure=failure_of(exc, "delete", {}))
    return see_other("/console/oncall")


@router.post("/console/oncall/schedules/{schedule_id}/overrides", response_class=HTMLResponse)
async def add_override(request: Request, schedule_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Put someone on call from start to end (wall times in the schedule's zone) above every layer."""
    schedule = await schedules.get_schedule(session, schedule_id)
    values = await form_values(request)
    try:
        start = schedules.local_to_utc(
            parse_local(text(values, "start"), field="start"), schedule.time_zone, field="start"
        )
        end = schedules.local_to_utc(parse_local(text(values, "end"), field="end"), schedule.time_zone, field="end")
        await schedules.add_override(session, actor, schedule.id, user_id=text(values, "user_id"), start=start, end=end)
    except DomainError as exc:
        await discard(session)
        return await _schedule_page(request, actor, session, schedule_id, failure=_failure(exc, "override", values))
    return see_other(f"/console/oncall/schedules/{schedule_id}#overrides")


@router.post("/console/oncall/schedules/{schedule_id}/overrides/{override_id}/delete")
async def delete_override(schedule_id: str, override_id: int, actor: ConsoleWriter, session: Tx) -> Response:
    """Remove an override."""
    await schedules.delete_override(session, actor, schedule_id, override_id)
    return see_other(f"/console/oncall/schedules/{schedule_id}#overrides")


# ================================================================ escalation policies


@dataclasses.dataclass
class LevelForm:
    """One level's fieldset as typed."""

    timeout_minutes: str = "5"
    users: list[str] = dataclasses.field(default_factory=list)
    schedules: list[str] = dataclasses.field(default_factory=list)


def _level_forms_of(policy: EscalationPolicy) -> list[LevelForm]:
    return [
        LevelForm(
            timeout_minutes=str(level.get("timeout_minutes", "")),
            users=[t["id"] for t in level.get("targets") or [] if t.get("type") == "user"],
            schedules=[t["id"] for t in level.get("targets") or [] if t.get("type") == "schedule"],
        )
        for level in policy.levels
    ]


def _level_forms_from(values: dict[str, Any]) -> list[LevelForm]:
    return [
        LevelForm(
            timeout_minutes=text(values, f"levels.{i}.timeout_minutes"),
            users=as_list(values.get(f"levels.{i}.users")),
            schedules=as_list(values.get(f"levels.{i}.schedules")),
        )
        for i in _indices(values, "levels")
    ]


def _levels(forms: Sequence[LevelForm]) -> list[dict[str, Any]]:
    return [
        {
            "timeout_minutes": parse_int(form.timeout_minutes, field=f"levels.{i}.timeout_minutes"),
            "targets": [{"type": "user", "id": u} for u in form.users]
            + [{"type": "schedule", "id": s} for s in form.schedules],
        }
        for i, form in enumerate(forms)
    ]


def _level_field(failure: Failure) -> Failure:
    # "levels.0.targets.2.id" is shown by the level's user and schedule choices.
    parts = (failure.field or "").split(".")
    if len(parts) >= 2 and parts[0] == "levels" and parts[1].isdecimal():
        if len(parts) == 2 or parts[2] == "targets":
            failure.field = f"levels.{parts[1]}.targets"
    return failure


async def _policy_form(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    policy: EscalationPolicy | None,
    *,
    levels: list[LevelForm],
    values: dict[str, Any],
    failure: Failure | None = None,
) -> HTMLResponse:
    return render(
        request,
        "oncall/policy_form.html",
        actor=actor,
        policy=policy,
        levels=levels,
        values=values,
        failure=failure,
        status_code=_status_of(failure),
        users=await _users(session),
        schedules=await schedules.list_schedules(session),
    )


async def _paging_choices(session: AsyncSession) -> dict[str, str]:
    """The paging form's current choices: ``paging.SEV1.<policy id>`` → role, ``page`` or absent."""
    return {
        f"paging.{row.severity}.{row.escalation_policy_id}": row.role or PAGE_NO_ROLE
        for row in await policies.severity_paging(session)
    }


async def _policies_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    every = await policies.list_policies(session)
    return render(
        request,
        "oncall/policies.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        policies=every,
        policy_names={p.id: p.name for p in every},
        paging=await policies.severity_paging(session),
        choices=failure.values if failure is not None else await _paging_choices(session),
        severities=list(Severity),
        roles=list(IncidentRole),
        page_no_role=PAGE_NO_ROLE,
    )


@router.get("/console/oncall/policies", response_class=HTMLResponse)
async def policies_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every escalation policy, and for each severity which policies a declared incident pages."""
    return await _policies_page(request, actor, session)


@router.post("/console/oncall/severity-paging", response_class=HTMLResponse)
async def set_severity_paging(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Replace the severity paging config from the grid of choices."""
    values = await form_values(request)
    entries: list[policies.PagingEntry] = []
    keys: list[str] = []
    for key in values:
        parts = key.split(".", 2)
        choice = text(values, key)
        if len(parts) != 3 or parts[0] != "paging" or not choice:
            continue
        role = None if choice == PAGE_NO_ROLE else choice
        entries.append(policies.PagingEntry(severity=parts[1], policy_id=parts[2], role=role))
        keys.append(key)
    try:
        if len(entries) > 100:
            raise InvalidInput("at most 100 lines", field="paging")
        await policies.set_severity_paging(session, actor, entries)
    except DomainError as exc:
        await discard(session)
        failure = _failure(exc, "paging", values)
        # "entries.3.role" is shown by the choice that made line 3.
        parts = (failure.field or "").split(".")
        if len(parts) >= 2 and parts[0] == "entries" and parts[1].isdecimal() and int(parts[1]) < len(keys):
            failure.field = keys[int(parts[1])]
        return await _policies_page(request, actor, session, failure=failure)
    return see_other("/console/oncall/policies#paging")


@router.get("/console/oncall/policies/new", response_class=HTMLResponse)
async def new_policy(request: Request, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """An empty policy with one level."""
    values = {"name": "", "description": "", "repeats": "0"}
    return await _policy_form(request, actor, session, None, levels=[LevelForm()], values=values)


@router.post("/console/oncall/policies", response_class=HTMLResponse)
async def create_policy(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Create the policy and open its page."""
    return await _save_policy(request, actor, session, None)


async def _save_policy(request: Request, actor: Actor, session: AsyncSession, policy_id: str | None) -> Response:
    policy = await policies.get_policy(session, policy_id) if policy_id else None
    values = await form_values(request)
    levels = _level_forms_from(values)
    if values.get("add_level"):
        levels.append(LevelForm())
        return await _policy_form(request, actor, session, policy, levels=levels, values=values)
    if (remove := text(values, "remove_level")).isdecimal():
        del levels[int(remove) : int(remove) + 1]
        return await _policy_form(request, actor, session, policy, levels=levels, values=values)
    try:
        repeats = parse_int(text(values, "repeats"), field="repeats")
        fields: dict[str, Any] = {
            "name": text(values, "name"),
            "description": text(values, "description"),
            "levels": _levels(levels),
            "repeats": 0 if repeats is None else repeats,
        }
        if policy is None:
            policy = await policies.create_policy(session, actor, **fields)
        else:
            policy = await policies.update_policy(session, actor, policy.id, **fields)
    except DomainError as exc:
        await discard(session)
        if policy_id is not None:
            policy = await policies.get_policy(session, policy_id)
        failure = _level_field(_failure(exc, "policy", values))
        return await _policy_form(request, actor, session, policy, levels=levels, values=values, failure=failure)
    return see_other(f"/console/oncall/policies/{policy.id}")


@router.get("/console/oncall/policies/{policy_id}", response_class=HTMLResponse)
async def policy_page(request: Request, policy_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """A policy's levels with their targets and timeouts, its repeats, and the severities that page it."""
    policy = await policies.get_policy(session, policy_id)
    user_ids = {t["id"] for lv in policy.levels for t in lv.get("targets") or [] if t.get("type") == "user"}
    return render(
        request,
        "oncall/policy.html",
        actor=actor,
        policy=policy,
        names={uid: u.name for uid, u in (await schedules.users_by_id(session, user_ids)).items()},
        schedule_names={s.id: s.name for s in await schedules.list_schedules(session)},
        paging=[row for row in await policies.severity_paging(session) if row.escalation_policy_id == policy.id],
    )


@router.get("/console/oncall/policies/{policy_id}/edit", response_class=HTMLResponse)
async def edit_policy(request: Request, policy_id: str, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """The policy's settings and levels, one fieldset a level."""
    policy = await policies.get_policy(session, policy_id)
    values = {"name": policy.name, "description": policy.description, "repeats": str(policy.repeats)}
    return await _policy_form(request, actor, session, policy, levels=_level_forms_of(policy), values=values)


@router.post("/console/oncall/policies/{policy_id}", response_class=HTMLResponse)
async def update_policy(request: Request, policy_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Save the policy; pages already running keep the levels they started with."""
    return await _save_policy(request, actor, session, policy_id)


@router.post("/console/oncall/policies/{policy_id}/delete")
async def delete_policy(policy_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete the policy and its lines in the severity paging config."""
    await policies.delete_policy(session, actor, policy_id)
    return see_other("/console/oncall/policies")


# ================================================================ contact methods and rules


async def _person_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    user_id: str,
    *,
    failure: Failure | None = None,
    secret: str | None = None,
) -> HTMLResponse:
    people.check_may_read(actor, user_id)
    person = await people.get_user(session, user_id)
    methods = await people.contact_methods(session, person.id)
    return render(
        request,
        "oncall/person.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        person=person,
        mine=person.id == actor.user_id,
        may_manage=actor.can(Scope.admin) or (person.id == actor.user_id and actor.can(Scope.write)),
        methods=methods,
        method_by_id={m.id: m for m in methods},
        rules=await people.notification_rules(session, person.id),
        kinds=list(ContactKind),
        urgencies=list(Urgency),
        secret=secret,
        everyone=await auth.list_users(session) if actor.can(Scope.admin) else [],
    )


@router.get("/console/oncall/me", response_class=HTMLResponse)
async def my_contact(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Your contact methods and notification rules."""
    return await _person_page(request, actor, session, actor.user_id)


@router.get("/console/oncall/people/{user_id}", response_class=HTMLResponse)
async def person_contact(request: Request, user_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Someone's contact methods and notification rules (your own, or anyone's for an admin)."""
    return await _person_page(request, actor, session, user_id)


def _person_url(actor: Actor, user_id: str) -> str:
    return "/console/oncall/me" if user_id == actor.user_id else f"/console/oncall/people/{user_id}"


@router.post("/console/oncall/people/{user_id}/contact-methods", response_class=HTMLResponse)
async def add_contact_method(request: Request, user_id: str, actor: ConsoleReader, session: Tx) -> Response:
    """Add a contact method; a push webhook's secret is shown on the answer, once."""
    people.check_may_manage(actor, user_id)
    await people.get_user(session, user_id)
    values = await form_values(request)
    try:
        _method, secret = await people.add_contact_method(
            session,
            actor,
            user_id,
            kind=text(values, "kind"),
            address=text(values, "address"),
            label=text(values, "label"),
            allow_private=runtime_of(request).settings.allow_private_webhooks,
        )
    except DomainError as exc:
        await discard(session)
        return await _person_page(request, actor, session, user_id, failure=_failure(exc, "method", values))
    if secret is not None:
        # Shown on this answer only: a redirect would have to carry it in a URL.
        return await _person_page(request, actor, session, user_id, secret=secret)
    return see_other(_person_url(actor, user_id) + "#methods")


@router.post("/console/oncall/people/{user_id}/contact-methods/{method_id}/delete")
async def delete_contact_method(user_id: str, method_id: str, actor: ConsoleReader, session: Tx) -> Response:
    """Remove a contact method and the rules that use it."""
    await people.delete_contact_method(session, actor, user_id, method_id)
    return see_other(_person_url(actor, user_id) + "#methods")


@router.post("/console/oncall/people/{user_id}/rules", response_class=HTMLResponse)
async def add_rule(request: Request, user_id: str, actor: ConsoleReader, session: Tx) -> Response:
    """Add a notification rule: at this urgency, notify this method after this many minutes."""
    people.check_may_manage(actor, user_id)
    await people.get_user(session, user_id)
    values = await form_values(request)
    try:
        delay = parse_int(text(values, "delay_minutes"), field="delay_minutes")
        await people.add_rule(
            session,
            actor,
            user_id,
            urgency=text(values, "urgency"),
            contact_method_id=text(values, "contact_method_id"),
            delay_minutes=0 if delay is None else delay,
        )
    except DomainError as exc:
        await discard(session)
        return await _person_page(request, actor, session, user_id, failure=_failure(exc, "rule", values))
    return see_other(_person_url(actor, user_id) + "#rules")


@router.post("/console/oncall/people/{user_id}/rules/{rule_id}/delete")
async def delete_rule(user_id: str, rule_id: int, actor: ConsoleReader, session: Tx) -> Response:
    """Remove a notification rule."""
    await people.delete_rule(session, actor, user_id, rule_id)
    return see_other(_person_url(actor, user_id) + "#rules")
