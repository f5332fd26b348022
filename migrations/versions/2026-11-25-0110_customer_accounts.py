"""Customer accounts: the components they use, their contacts, their SLA contract.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 01:11:30.152090
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crisisdesk.kit.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("tier", sa.String(length=100), nullable=True),
        sa.Column("arr_cents", sa.Integer(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("csm_owner", sa.String(length=320), nullable=True),
        sa.Column("helpdesk_org_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("external_id", name=op.f("uq_account_external_id")),
    )
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_tier"), ["tier"], unique=False)

    op.create_table(
        "account_contact",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=24), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_contact_account_id_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_contact")),
        sa.UniqueConstraint("account_id", "email", name=op.f("uq_account_contact_account_id")),
    )
    with op.batch_alter_table("account_contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_contact_account_id"), ["account_id"], unique=False)

    op.create_table(
        "sla_contract",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=24), nullable=False),
        sa.Column("uptime_target", sa.Numeric(precision=7, scale=4, asdecimal=False), nullable=False),
        sa.Column("downtime_rule", sa.Text(), nullable=True),
        sa.Column("credit_bands", sa.JSON(), nullable=False),
        sa.Column("cap_percent", sa.Numeric(precision=7, scale=4, asdecimal=False), nullable=True),
        sa.Column("claim_window_days", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_sla_contract_account_id_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_contract")),
        sa.UniqueConstraint("account_id", name=op.f("uq_sla_contract_account_id")),
    )
    op.create_table(
        "account_component",
        sa.Column("account_id", sa.String(length=24), nullable=False),
        sa.Column("component_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_component_account_id_account"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["component.id"],
            name=op.f("fk_account_component_component_id_component"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "component_id", name=op.f("pk_account_component")),
    )
    with op.batch_alter_table("account_component", schema=None) as batch_op:
        batch_op.create_index("ix_account_component_component", ["component_id", "account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_component", schema=None) as batch_op:
        batch_op.drop_index("ix_account_component_component")

    op.drop_table("account_component")
    op.drop_table("sla_contract")
    with op.batch_alter_table("account_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_contact_account_id"))

    op.drop_table("account_contact")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_tier"))

    op.drop_table("account")
