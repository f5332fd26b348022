"""Contact methods and notification rules: each kind checked, the first email's default rules, who may manage whose."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.oncall import people
from crisisdesk.oncall.models import ContactMethod, NotificationRule, Urgency
from tests.fixtures.auth import make_actor


async def test_first_email_gets_default_rules_and_a_second_does_not(db: Database) -> None:
    user, me = await make_actor(db)
    async with db.session() as session:
        first, secret = await people.add_contact_method(session, me, user.id, kind="email", address=" Ana@Example.COM ")
        assert secret is None and first.address == "ana@example.com"
    async with db.session() as session:
        rules = await people.notification_rules(session, user.id)
        assert [(r.urgency, r.contact_method_id, r.delay_minutes) for r in rules] == [
            (Urgency.high, first.id, 0),
            (Urgency.low, first.id, 0),
        ]
        await people.add_contact_method(session, me, user.id, kind="email", address="ana.home@example.com")
    async with db.session() as session:
        assert len(await people.notification_rules(session, user.id)) == 2


async def test_each_kind_is_normalised_and_push_gets_a_secret_shown_once(db: Database) -> None:
    user, me = await make_actor(db)
    async with db.session() as session:
        sms, _ = await people.add_contact_method(session, me, user.id, kind="sms", address="0049 30 901820")
        slack, _ = await people.add_contact_method(session, me, user.id, kind="slack_dm", address="U0123ABCD")
        push, secret = await people.add_contact_method(
            session, me, user.id, kind="push", address="https://127.0.0.1:8443/push", allow_private=True
        )
    assert sms.address == "+4930901820" and slack.address == "U0123ABCD"
    assert secret is not None and secret.startswith("whsec_") and push.secret == secret
    async with db.session() as session:
        # SMS and push alone give no default rule: only an email does.
        assert await people.notification_rules(session, user.id) == []


BAD_METHODS = [
    ("pager", "123", "kind"),
    ("email", "not-an-address", "address"),
    ("sms", "030 901820", "address"),  # no country code
    ("sms", "+1 555", "address"),
    ("slack_dm", "@ana", "address"),
    ("slack_dm", "u0123abcd", "address"),
    ("push", "ftp://example.com/x", "address"),
    ("push", "https://127.0.0.1/push", "address"),  # loopback without allow_private
]


@pytest.mark.parametrize(("kind", "address", "field"), BAD_METHODS)
async def test_bad_contact_method_is_refused_by_field(db: Database, kind: str, address: str, field: str) -> None:
    user, me = await make_actor(db)
    async with db.session() as session:
        with pytest.raises(InvalidInput) as caught:
            await people.add_contact_method(session, me, user.id, kind=kind, address=address)
    assert caught.value.field == field
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ContactMethod)) == 0


async def test_duplicate_method_conflicts(db: Database) -> None:
    user, me = await make_actor(db)
    async with db.session() as session:
        await people.add_contact_method(session, me, user.id, kind="email", address="a@example.com")
    async with db.session() as session:
        with pytest.raises(Conflict):
            await people.add_contact_method(session, me, user.id, kind="email", address="A@example.com")


async def test_rules_validate_urgency_delay_and_the_method_belongs_to_the_same_user(db: Database) -> None:
    user, me = await make_actor(db)
    other, them = await make_actor(db)
    async with db.session() as session:
        mine, _ = await people.add_contact_method(session, me, user.id, kind="sms", address="+14155550123")
        theirs, _ = await people.add_contact_method(session, them, other.id, kind="email", address="o@example.com")
    cases = [
        ({"urgency": "urgent"}, "urgency"),
        ({"delay_minutes": -1}, "delay_minutes"),
        ({"delay_minutes": 61}, "delay_minutes"),
        ({"delay_minutes": True}, "delay_minutes"),
    ]
    for change, field in cases:
        fields: dict[str, object] = {"urgency": "high", "contact_method_id": mine.id, "delay_minutes": 2}
        fields.update(change)
        async with db.session() as session:
            with pytest.raises(InvalidInput) as caught:
                await people.add_rule(session, me, user.id, **fields)  # type: ignore[arg-type]
        assert caught.value.field == field, change
    async with db.session() as session:
        with pytest.raises(NotFound) as missing:
            await people.add_rule(session, me, user.id, urgency="high", contact_method_id=theirs.id, delay_minutes=0)
        assert missing.value.field == "contact_method_id"
        rule = await people.add_rule(session, me, user.id, urgency="high", contact_method_id=mine.id, delay_minutes=60)
    async with db.session() as session:
        with pytest.raises(Conflict):
            await people.add_rule(session, me, user.id, urgency="high", contact_method_id=mine.id, delay_minutes=60)
    async with db.session() as session:
        # Removing a method removes the rules that use it.
        await people.delete_contact_method(session, me, user.id, mine.id)
    async with db.session() as session:
        assert await session.get(NotificationRule, rule.id) is None


async def test_a_user_manages_their_own_and_an_admin_anyones(db: Database) -> None:
    user, me = await make_actor(db)
    _, other = await make_actor(db)
    _, admin = await make_actor(db, Role.admin)
    viewer_user, viewer = await make_actor(db, Role.viewer)
    async with db.session() as session:
        with pytest.raises(Forbidden):
            await people.add_contact_method(session, other, user.id, kind="email", address="x@example.com")
        with pytest.raises(Forbidden):
            await people.add_contact_method(session, viewer, viewer_user.id, kind="email", address="v@example.com")
        method, _ = await people.add_contact_method(session, admin, user.id, kind="email", address="x@example.com")
    async with db.session() as session:
        with pytest.raises(Forbidden):
            await people.delete_contact_method(session, other, user.id, method.id)
        await people.delete_contact_method(session, me, user.id, method.id)
