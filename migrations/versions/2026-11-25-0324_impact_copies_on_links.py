"""impact reads copies of the account's tier, ARR and regions on its links, and a kept total ARR

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 03:24:19.073639
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each link takes its account's tier, ARR and region codes: "|a|b|", "" for none, NULL when a code
# holds "|" or the text passes 1,000 bytes (as crisisdesk.customer.models.region_codes makes them).
_FILL = {
    "postgresql": """
        UPDATE account_component SET tier = a.tier, arr_cents = a.arr_cents, region_codes = a.codes
        FROM (
            SELECT id, tier, arr_cents,
                   CASE WHEN octet_length(codes) > 1000 THEN NULL ELSE codes END AS codes
            FROM (
                SELECT id, tier, arr_cents,
                       (SELECT CASE WHEN count(*) = 0 THEN ''
                                    WHEN bool_or(strpos(e.value, '|') > 0) THEN NULL
                                    ELSE '|' || string_agg(e.value, '|' ORDER BY e.n) || '|' END
                        FROM json_array_elements_text(account.regions) WITH ORDINALITY AS e(value, n)) AS codes
                FROM account
            ) AS raw
        ) AS a WHERE a.id = account_component.account_id
    """,
    "sqlite": """
        UPDATE account_component SET tier = a.tier, arr_cents = a.arr_cents, region_codes = a.codes
        FROM (
            SELECT id, tier, arr_cents,
                   CASE WHEN length(CAST(codes AS BLOB)) > 1000 THEN NULL ELSE codes END AS codes
            FROM (
                SELECT id, tier, arr_cents,
                       (SELECT CASE WHEN count(*) = 0 THEN ''
                                    WHEN max(instr(e.value, '|')) > 0 THEN NULL
                                    ELSE '|' || group_concat(e.value, '|') || '|' END
                        FROM json_each(account.regions) AS e) AS codes
                FROM account
            ) AS raw
        ) AS a WHERE a.id = account_component.account_id
    """,
}


def upgrade() -> None:
    op.create_table(
        "account_total",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("arr_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_total")),
    )
    # An ARR past 21,474,836.47 did not fit PostgreSQL's integer.
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.alter_column("arr_cents", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)

    with op.batch_alter_table("account_component", schema=None) as batch_op:
        batch_op.drop_index("ix_account_component_component")
        batch_op.add_column(sa.Column("tier", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("arr_cents", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("region_codes", sa.String(length=1000), nullable=True))

    op.execute(_FILL[op.get_bind().dialect.name])
    op.execute("INSERT INTO account_total (id, arr_cents) SELECT 1, coalesce(sum(arr_cents), 0) FROM account")

    with op.batch_alter_table("account_component", schema=None) as batch_op:
        batch_op.alter_column("arr_cents", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_index(
            "ix_account_component_impact",
            ["component_id", "tier", "arr_cents", "account_id", "region_codes"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("account_component", schema=None) as batch_op:
        batch_op.drop_index("ix_account_component_impact")
        batch_op.drop_column("region_codes")
        batch_op.drop_column("arr_cents")
        batch_op.drop_column("tier")
        batch_op.create_index("ix_account_component_component", ["component_id", "account_id"], unique=False)

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.alter_column("arr_cents", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)

    op.drop_table("account_total")
