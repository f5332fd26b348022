"""The database's refusals of a request's data are the client's 4xx; only outages are 503."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crisisdesk.kit.answers import brief, refused_by_database
from crisisdesk.kit.db import Database


async def _error_of(db: Database, statement: str, params: dict[str, object]) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        async with db.session() as session:
            await session.execute(text(statement), params)
    return caught.value


async def test_a_duplicate_key_is_a_conflict(db: Database) -> None:
    insert = (
        "INSERT INTO user_account (id, email, name, role, is_active, created_at) "
        "VALUES (:id, 'same@example.com', 'X', 'viewer', true, CURRENT_TIMESTAMP)"
    )
    async with db.session() as session:
        await session.execute(text(insert), {"id": "u1"})
    refused = refused_by_database(await _error_of(db, insert, {"id": "u2"}))
    assert refused is not None and refused[0] == 409


async def test_a_value_postgresql_cannot_store_is_422(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite stores NUL characters and has no SQLSTATE")
    refused = refused_by_database(await _error_of(db, "SELECT CAST(:x AS text)", {"x": "a\x00b"}))
    assert refused is not None and refused[0] == 422


async def test_an_unreachable_database_is_not_the_clients_fault(db: Database) -> None:
    """A query against a missing table stands in for a server-side fault: no 4xx excuse."""
    error = await _error_of(db, "SELECT * FROM no_such_table", {})
    assert refused_by_database(error) is None


async def test_a_logged_database_error_leaves_out_the_statements_parameters(db: Database) -> None:
    error = await _error_of(db, "SELECT * FROM no_such_table WHERE token = :token", {"token": "hook-secret-77"})
    assert "hook-secret-77" in str(error)  # SQLAlchemy's own text echoes the parameters
    logged = brief(error)
    assert "hook-secret-77" not in logged and "no_such_table" in logged
