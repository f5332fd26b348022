"""Users, console sessions and API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import ApiKey, Role, Scope, User, UserSession
from crisisdesk.auth.security import digest, hash_password, new_token, verify_password
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow

API_KEY_PREFIX = "cdk_"

# What each role may do; API keys are further limited by their scopes.
ROLE_SCOPES: dict[Role, set[Scope]] = {
    Role.admin: {Scope.read, Scope.write, Scope.admin},
    Role.responder: {Scope.read, Scope.write},
    Role.viewer: {Scope.read},
}


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or a user's API key with its scopes."""

    user_id: str
    name: str
    role: Role
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    via: str = "session"
    csrf_token: str | None = None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.can(scope):
            raise Forbidden(f"this action needs the {scope.value!r} permission")


def actor_for(
    user: User, *, via: str = "session", scopes: set[Scope] | None = None, csrf_token: str | None = None
) -> Actor:
    allowed = ROLE_SCOPES[Role(user.role)]
    if scopes is not None:
        allowed = allowed & scopes
    return Actor(user.id, user.name, Role(user.role), frozenset(allowed), via, csrf_token)


async def create_user(session: AsyncSession, *, email: str, name: str, role: Role, password: str | None) -> User:
    """Add a user; the email is the login and must be unique."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise InvalidInput("email must be an address like name@example.com", field="email")
    if password is not None and len(password) < 8:
        raise InvalidInput("password must be at least 8 characters", field="password")
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(f"a user with email {email} already exists", field="email")
    user = User(
        email=email, name=name.strip() or email, role=role, password_hash=hash_password(password) if password else None
    )
    session.add(user)
    await session.flush()
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User | None:
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        return None
    return user


async def start_session(session: AsyncSession, user: User, *, hours: int) -> str:
    """Open a console session; returns the cookie value (only its digest is stored)."""
    token = new_token()
    session.add(
        UserSession(
            token_hash=digest(token),
            csrf_token=secrets.token_urlsafe(24),
            user_id=user.id,
            expires_at=utcnow() + timedelta(hours=hours),
        )
    )
    return token


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(UserSession).where(UserSession.token_hash == digest(token)))


async def actor_from_session(session: AsyncSession, token: str) -> Actor | None:
    row = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.token_hash == digest(token))
        )
    ).first()
    if row is None:
        return None
    user_session, user = row
    if user_session.expires_at < utcnow() or not user.is_active:
        return None
    return actor_for(user, csrf_token=user_session.csrf_token)


async def create_api_key(
    session: AsyncSession, actor: Actor, *, name: str, scopes: list[Scope], user_id: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for a user (yourself unless admin); the secret is returned once."""
    owner_id = user_id or actor.user_id
    if owner_id != actor.user_id:
        actor.require(Scope.admin)
    owner = await session.get(User, owner_id)
    if owner is None:
        raise NotFound(f"no user {owner_id}", field="user_id")
    if not scopes:
        raise InvalidInput("choose at least one scope: read, write or admin", field="scopes")
    beyond = set(scopes) - ROLE_SCOPES[Role(owner.role)]
    if beyond:
        raise InvalidInput(f"a {owner.role} cannot hold the scope(s) {', '.join(sorted(beyond))}", field="scopes")
    secret = new_token(API_KEY_PREFIX)
    key = ApiKey(
        name=name, prefix=secret[:12], key_hash=digest(secret), scopes=sorted(s.value for s in scopes), user_id=owner_id
    )
    session.add(key)
    await session.flush()
    return key, secret


async def actor_from_api_key(session: AsyncSession, secret: str) -> Actor | None:
    row = (
        await session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == digest(secret))
        )
    ).first()
    if row is None:
        return None
    key, user = row
    if key.revoked_at is not None or not user.is_active:
        return None
    key.last_used_at = utcnow()
    return actor_for(user, via="api_key", scopes={Scope(s) for s in key.scopes})


async def revoke_api_key(session: AsyncSession, actor: Actor, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.user_id != actor.user_id:
        actor.require(Scope.admin)
    key.revoked_at = key.revoked_at or utcnow()
    return key


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.name)))


async def list_api_keys(session: AsyncSession, actor: Actor) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc())
    if not actor.can(Scope.admin):
        query = query.where(ApiKey.user_id == actor.user_id)
    return list(await session.scalars(query))
