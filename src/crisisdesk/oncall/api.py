"""REST API: contact methods, notification rules, schedules and who is on call, escalation policies, severity paging."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Query, Request, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.auth.service import Actor
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import people, policies, schedules
from crisisdesk.oncall.models import ContactMethod, EscalationPolicy, NotificationRule, OnCallSchedule, ScheduleOverride
from crisisdesk.oncall.schedules import LayerInput
from crisisdesk.oncall.schedules import zone as load_zone
from crisisdesk.oncall.schemas import (
    ContactMethodCreate,
    ContactMethodCreated,
    ContactMethodRead,
    LayerPut,
    LayerRead,
    NotificationRuleCreate,
    NotificationRuleRead,
    OnCallRead,
    OverrideCreate,
    OverrideRead,
    PersonRead,
    PolicyCreate,
    PolicyPatch,
    PolicyRead,
    ScheduleCreate,
    SchedulePatch,
    ScheduleRead,
    SeverityPagingEntry,
    SeverityPagingPut,
    SeverityPagingRead,
    ShiftRead,
)

router = APIRouter(tags=["on-call"])

USER_HELP = "A user id, or me."


def _who(actor: Actor, user_id: str) -> str:
    return actor.user_id if user_id == "me" else user_id


# ---------------------------------------------------------------- people


@router.get(
    "/users/{user_id}/contact-methods",
    summary="List a person's contact methods",
    response_model=list[ContactMethodRead],
    responses=errors(401, 403, 404),
)
async def list_contact_methods(user_id: str, session: Tx, actor: ApiReader) -> list[ContactMethod]:
    """Your own contact methods (user id or me), or anyone's for an admin."""
    who = _who(actor, user_id)
    people.check_may_read(actor, who)
    await people.get_user(session, who)
    return await people.contact_methods(session, who)


@router.post(
    "/users/{user_id}/contact-methods",
    summary="Add a contact method",
    status_code=status.HTTP_201_CREATED,
    response_model=ContactMethodCreated,
    responses=errors(401, 403, 404, 409, 422),
)
async def add_contact_method(
    user_id: str, data: ContactMethodCreate, request: Request, session: Tx, actor: ApiReader
) -> ContactMethodCreated:
    """Add an email, SMS number, Slack member id or push webhook; a push webhook's secret is in this answer only."""
    method, secret = await people.add_contact_method(
        session,
        actor,
        _who(actor, user_id),
        kind=data.kind,
        address=data.address,
        label=data.label,
        allow_private=runtime_of(request).settings.allow_private_webhooks,
    )
    return ContactMethodCreated(**ContactMethodRead.model_validate(method).model_dump(), secret=secret)


@router.delete(
    "/users/{user_id}/contact-methods/{method_id}",
    summary="Remove a contact method",
    response_model=ContactMethodRead,
    responses=errors(401, 403, 404),
)
async def delete_contact_method(user_id: str, method_id: str, session: Tx, actor: ApiReader) -> ContactMethod:
    """Remove a contact method and the notification rules that use it; answers with what was removed."""
    who = _who(actor, user_id)
    people.check_may_manage(actor, who)
    method = await people.get_contact_method(session, who, method_id)
    await people.delete_contact_method(session, actor, who, method_id)
    return method


@router.get(
    "/users/{user_id}/notification-rules",
    summary="List a person's notification rules",
    response_model=list[NotificationRuleRead],
    responses=errors(401, 403, 404),
)
async def list_rules(user_id: str, session: Tx, actor: ApiReader) -> list[NotificationRule]:
    """Your own notification rules (user id or me), or anyone's for an admin: high urgency first, then by delay."""
    who = _who(actor, user_id)
    people.check_may_read(actor, who)
    await people.get_user(session, who)
    return await people.notification_rules(session, who)


@router.post(
    "/users/{user_id}/notification-rules",
    summary="Add a notification rule",
    status_code=status.HTTP_201_CREATED,
    response_model=NotificationRuleRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def add_rule(user_id: str, data: NotificationRuleCreate, session: Tx, actor: ApiReader) -> NotificationRule:
    """At `urgency`, notify one of the person's contact methods `delay_minutes` (0 to 60) into a page."""
    return await people.add_rule(
        session,
        actor,
        _who(actor, user_id),
        urgency=data.urgency,
        contact_method_id=data.contact_method_id,
        delay_minutes=data.delay_minutes,
    )


@router.delete(
    "/users/{user_id}/notification-rules/{rule_id}",
    summary="Remove a notification rule",
    response_model=NotificationRuleRead,
    responses=errors(401, 403, 404),
)
async def delete_rule(user_id: str, rule_id: int, session: Tx, actor: ApiReader) -> NotificationRuleRead:
    """Remove one of the person's notification rules; answers with what was removed."""
    who = _who(actor, user_id)
    people.check_may_manage(actor, who)
    rule = await people.get_rule(session, who, rule_id)
    removed = NotificationRuleRead.model_validate(rule)
    await people.delete_rule(session, actor, who, rule_id)
    return removed


# ---------------------------------------------------------------- schedules


def _layer_input(layer: LayerPut) -> LayerInput:
    return LayerInput(
        name=layer.name,
        users=layer.users,
        start=layer.start,
        time_zone=layer.time_zone,
        rotation=layer.rotation,
        length_hours=layer.length_hours,
    )


async def _schedule_read(session: Tx, schedule: OnCallSchedule) -> ScheduleRead:
    layers = []
    for row in await schedules.layers_of(session, schedule.id):
        local = row.start.astimezone(load_zone(row.time_zone)).replace(tzinfo=None)
        layers.append(
            LayerRead(
                name=row.name,
                position=row.position,
                users=list(row.user_ids),
                start=row.start,
                start_local=local.isoformat(timespec="minutes"),
                time_zone=row.time_zone,
                rotation=row.rotation,
                length_hours=row.length_hours,
            )
        )
    return ScheduleRead(
        id=schedule.id,
        name=schedule.name,
        description=schedule.description,
        time_zone=schedule.time_zone,
        layers=layers,
        created_at=schedule.created_at,
    )


@router.get("/schedules", summary="List schedules", response_model=list[ScheduleRead], responses=errors(401, 403))
async def list_schedules(session: Tx, actor: ApiReader) -> list[ScheduleRead]:
    """Every on-call schedule with its layers, by name."""
    return [await _schedule_read(session, s) for s in await schedules.list_schedules(session)]


@router.post(
    "/schedules",
    summary="Create a schedule",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleRead,
    responses=errors(401, 403, 409, 422),
)
async def create_schedule(data: ScheduleCreate, session: Tx, actor: ApiAdmin) -> ScheduleRead:
    """Create a schedule with its layers (admins); errors name the field, e.g. layers.0.time_zone."""
    schedule = await schedules.create_schedule(
        session,
        actor,
        name=data.name,
        description=data.description,
        time_zone=data.time_zone,
        layers=[_layer_input(layer) for layer in data.layers],
    )
    return await _schedule_read(session, schedule)


@router.get(
    "/schedules/{schedule_id}", summary="Get a schedule", response_model=ScheduleRead, responses=errors(401, 403, 404)
)
async def get_schedule(schedule_id: str, session: Tx, actor: ApiReader) -> ScheduleRead:
    """A schedule with its layers."""
    return await _schedule_read(session, await schedules.get_schedule(session, schedule_id))


@router.patch(
    "/schedules/{schedule_id}",
    summary="Change a schedule",
    response_model=ScheduleRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def update_schedule(schedule_id: str, data: SchedulePatch, session: Tx, actor: ApiAdmin) -> ScheduleRead:
    """Change a schedule's name, description, zone or layers (admins); layers, when given, replace all."""
    schedule = await schedules.update_schedule(
        session,
        actor,
        schedule_id,
        name=data.name,
        description=data.description,
        time_zone=data.time_zone,
        layers=None if data.layers is None else [_layer_input(layer) for layer in data.layers],
    )
    return await _schedule_read(session, schedule)


@router.delete(
    "/schedules/{schedule_id}",
    summary="Delete a schedule",
    response_model=ScheduleRead,
    responses=errors(401, 403, 404, 409),
)
async def delete_schedule(schedule_id: str, session: Tx, actor: ApiAdmin) -> ScheduleRead:
    """Delete a schedule (admins); refused with 409 while an escalation policy pages it."""
    read = await _schedule_read(session, await schedules.get_schedule(session, schedule_id))
    await schedules.delete_schedule(session, actor, schedule_id)
    return read


@router.get(
    "/schedules/{schedule_id}/overrides",
    summary="List a schedule's overrides",
    response_model=list[OverrideRead],
    responses=errors(401, 403, 404),
)
async def list_overrides(schedule_id: str, session: Tx, actor: ApiReader) -> list[ScheduleOverride]:
    """Overrides that have not ended yet, in the order they win (the latest added wins)."""
    await schedules.get_schedule(session, schedule_id)
    return await schedules.overrides_of(session, schedule_id, ending_after=utcnow())


@router.post(
    "/schedules/{schedule_id}/overrides",
    summary="Add an override",
    status_code=status.HTTP_201_CREATED,
    response_model=OverrideRead,
    responses=errors(401, 403, 404, 422),
)
async def add_override(schedule_id: str, data: OverrideCreate, session: Tx, actor: ApiWriter) -> ScheduleOverride:
    """Put someone on call from start to end (with offsets, at most 31 days) above every layer."""
    return await schedules.add_override(
        session, actor, schedule_id, user_id=data.user_id, start=data.start, end=data.end
    )


@router.delete(
    "/schedules/{schedule_id}/overrides/{override_id}",
    summary="Remove an override",
    response_model=OverrideRead,
    responses=errors(401, 403, 404),
)
async def delete_override(schedule_id: str, override_id: int, session: Tx, actor: ApiWriter) -> OverrideRead:
    """Remove an override; answers with what was removed."""
    override = await schedules.get_override(session, schedule_id, override_id)
    removed = OverrideRead.model_validate(override)
    await schedules.delete_override(session, actor, schedule_id, override_id)
    return removed


@router.get(
    "/schedules/{schedule_id}/on-call",
    summary="Who is on call",
    response_model=OnCallRead,
    responses=errors(401, 403, 404, 422),
)
async def who_is_on_call(
    schedule_id: str,
    session: Tx,
    actor: ApiReader,
    at: datetime | None = Query(default=None, description="The instant (ISO 8601 with offset); now if omitted."),
) -> OnCallRead:
    """Who is on call at `at` (or now), and until when; deactivated users are passed over."""
    instant = utcnow() if at is None else schedules.aware(at, field="at")
    now = await schedules.now_and_until(session, schedule_id, instant)
    user = now.user
    person = None if user is None else PersonRead(id=user.id, name=user.name, email=user.email)
    return OnCallRead(schedule_id=schedule_id, at=instant, user=person, until=now.until)


@router.get(
    "/schedules/{schedule_id}/shifts",
    summary="Resolved shifts",
    response_model=list[ShiftRead],
    responses=errors(401, 403, 404, 422),
)
async def list_shifts(
    schedule_id: str,
    session: Tx,
    actor: ApiReader,
    start: datetime | None = Query(default=None, description="From (ISO 8601 with offset); now if omitted."),
    end: datetime | None = Query(
        default=None, description="Until (with offset); start + 14 days if omitted, ≤ 90 days."
    ),
) -> list[ShiftRead]:
    """The resolved timeline: consecutive shifts with overrides applied, neighbours merged, gaps left out."""
    begin = utcnow() if start is None else schedules.aware(start, field="start")
    finish = begin + timedelta(days=14) if end is None else schedules.aware(end, field="end")
    result = await schedules.shifts(session, schedule_id, begin, finish)
    return [
        ShiftRead(user_id=s.user, user_name=None if u is None else u.name, start=s.start, end=s.end) for s, u in result
    ]


# ---------------------------------------------------------------- escalation policies


@router.get(
    "/escalation-policies",
    summary="List escalation policies",
    response_model=list[PolicyRead],
    responses=errors(401, 403),
)
async def list_policies(session: Tx, actor: ApiReader) -> list[EscalationPolicy]:
    """Every escalation policy, by name."""
    return await policies.list_policies(session)


@router.post(
    "/escalation-policies",
    summary="Create an escalation policy",
    status_code=status.HTTP_201_CREATED,
    response_model=PolicyRead,
    responses=errors(401, 403, 409, 422),
)
async def create_policy(data: PolicyCreate, session: Tx, actor: ApiAdmin) -> EscalationPolicy:
    """Create a policy (admins); errors name the field, e.g. levels.2.targets."""
    return await policies.create_policy(
        session,
        actor,
        name=data.name,
        description=data.description,
        levels=[level.model_dump() for level in data.levels],
        repeats=data.repeats,
    )


@router.get(
    "/escalation-policies/{policy_id}",
    summary="Get an escalation policy",
    response_model=PolicyRead,
    responses=errors(401, 403, 404),
)
async def get_policy(policy_id: str, session: Tx, actor: ApiReader) -> EscalationPolicy:
    """An escalation policy with its levels."""
    return await policies.get_policy(session, policy_id)


@router.patch(
    "/escalation-policies/{policy_id}",
    summary="Change an escalation policy",
    response_model=PolicyRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def update_policy(policy_id: str, data: PolicyPatch, session: Tx, actor: ApiAdmin) -> EscalationPolicy:
    """Change a policy (admins); pages already running keep the levels they started with."""
    return await policies.update_policy(
        session,
        actor,
        policy_id,
        name=data.name,
        description=data.description,
        levels=None if data.levels is None else [level.model_dump() for level in data.levels],
        repeats=data.repeats,
    )


@router.delete(
    "/escalation-policies/{policy_id}",
    summary="Delete an escalation policy",
    response_model=PolicyRead,
    responses=errors(401, 403, 404),
)
async def delete_policy(policy_id: str, session: Tx, actor: ApiAdmin) -> PolicyRead:
    """Delete a policy and its lines in the severity paging config (admins); answers with what was removed."""
    removed = PolicyRead.model_validate(await policies.get_policy(session, policy_id))
    await policies.delete_policy(session, actor, policy_id)
    return removed


async def _paging_read(session: Tx) -> SeverityPagingRead:
    rows = await policies.severity_paging(session)
    return SeverityPagingRead(
        entries=[SeverityPagingEntry(severity=r.severity, policy_id=r.escalation_policy_id, role=r.role) for r in rows]
    )


@router.get(
    "/severity-paging",
    summary="Get the severity paging config",
    response_model=SeverityPagingRead,
    responses=errors(401, 403),
)
async def get_severity_paging(session: Tx, actor: ApiReader) -> SeverityPagingRead:
    """For each severity, the escalation policies a declared incident pages and the role each fills."""
    return await _paging_read(session)


@router.put(
    "/severity-paging",
    summary="Replace the severity paging config",
    response_model=SeverityPagingRead,
    responses=errors(401, 403, 422),
)
async def put_severity_paging(data: SeverityPagingPut, session: Tx, actor: ApiAdmin) -> SeverityPagingRead:
    """Replace the whole config (admins); errors name the line, e.g. entries.1.role."""
    if len(data.entries) > 100:
        raise InvalidInput("at most 100 lines", field="entries")
    await policies.set_severity_paging(
        session, actor, [policies.PagingEntry(e.severity, e.policy_id, e.role) for e in data.entries]
    )
    return await _paging_read(session)
