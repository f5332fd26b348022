"""REST API: the acting user, users and API keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from crisisdesk.auth import service
from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.models import ApiKey, User
from crisisdesk.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, MeRead, UserCreate, UserRead, errors
from crisisdesk.kit.errors import Forbidden, NotFound

router = APIRouter(tags=["users and API keys"])


def _key_read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(key)


@router.get("/me", summary="Who am I", response_model=MeRead, responses=errors(401))
async def me(session: Tx, actor: ApiReader) -> MeRead:
    """The user this request acts as, and the scopes it carries."""
    users = {u.id: u for u in await service.list_users(session)}
    user = users.get(actor.user_id)
    if user is None:
        raise NotFound("the acting user no longer exists")
    return MeRead(**UserRead.model_validate(user).model_dump(), scopes=sorted(actor.scopes), via=actor.via)


@router.get("/users", summary="List users", response_model=list[UserRead], responses=errors(401, 403))
async def list_users(session: Tx, actor: ApiReader) -> list[User]:
    """Every user, by name (to pick role holders, for example)."""
    return await service.list_users(session)


@router.post(
    "/users",
    summary="Add a user",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=errors(401, 403, 409, 422),
)
async def create_user(data: UserCreate, session: Tx, actor: ApiAdmin) -> User:
    """Add a user (admins only); the email must be unique."""
    return await service.create_user(session, email=data.email, name=data.name, role=data.role, password=data.password)


@router.get("/api-keys", summary="List API keys", response_model=list[ApiKeyRead], responses=errors(401, 403))
async def list_api_keys(session: Tx, actor: ApiReader) -> list[ApiKeyRead]:
    """Your keys, or every key for an admin; secrets are never listed."""
    return [_key_read(k) for k in await service.list_api_keys(session, actor)]


@router.post(
    "/api-keys",
    summary="Create an API key",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=errors(401, 403, 404, 422),
)
async def create_api_key(data: ApiKeyCreate, session: Tx, actor: ApiReader) -> ApiKeyCreated:
    """Create a key; the response carries its secret, which is never shown again."""
    # A key may only hand out what the request itself holds, so a read-only key cannot mint a writer.
    beyond = set(data.scopes) - set(actor.scopes)
    if beyond:
        raise Forbidden(f"this request cannot grant the scope(s) {', '.join(sorted(beyond))}", field="scopes")
    key, secret = await service.create_api_key(
        session, actor, name=data.name.strip(), scopes=data.scopes, user_id=data.user_id
    )
    return ApiKeyCreated(**_key_read(key).model_dump(), secret=secret)


@router.delete(
    "/api-keys/{key_id}", summary="Revoke an API key", response_model=ApiKeyRead, responses=errors(401, 403, 404)
)
async def revoke_api_key(key_id: str, session: Tx, actor: ApiReader) -> ApiKeyRead:
    """Revoke a key (your own, or any key for an admin); it answers 401 from now on."""
    return _key_read(await service.revoke_api_key(session, actor, key_id))
