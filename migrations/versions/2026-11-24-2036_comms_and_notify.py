"""Templates, drafts, promises, subscribers and the delivery ledger.

Revision ID: 0002
Revises: 61dca88f5f46
Create Date: 2026-11-24 20:36:11.823759
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crisisdesk.kit.db

revision: str = "0002"
down_revision: str | None = "61dca88f5f46"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_template",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("scenario", sa.String(length=120), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("email_subject", sa.Text(), nullable=False),
        sa.Column("email_html", sa.Text(), nullable=False),
        sa.Column("email_text", sa.Text(), nullable=False),
        sa.Column("sms", sa.Text(), nullable=False),
        sa.Column("slack", sa.Text(), nullable=False),
        sa.Column("teams", sa.Text(), nullable=False),
        sa.Column("social", sa.Text(), nullable=False),
        sa.Column("approved_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("approved_by_id", sa.String(length=24), nullable=True),
        sa.Column("created_by_id", sa.String(length=24), nullable=True),
        sa.Column("created_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("archived_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["user_account.id"],
            name=op.f("fk_message_template_approved_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_message_template_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_template")),
        sa.UniqueConstraint("scenario", "phase", name="uq_message_template_scenario_phase"),
    )
    op.create_table(
        "subscriber",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("incident_id", sa.String(length=24), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("confirm_code", sa.String(length=12), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("quarantined_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("purge_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_subscriber_incident_id_incident"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber")),
        sa.UniqueConstraint("channel", "address", name="uq_subscriber_channel_address"),
        sa.UniqueConstraint("token", name=op.f("uq_subscriber_token")),
    )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_created_ip"), ["created_ip"], unique=False)
        batch_op.create_index("ix_subscriber_state_id", ["state", "id"], unique=False)

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("update_id", sa.String(length=24), nullable=True),
        sa.Column("incident_id", sa.String(length=24), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=40), nullable=False),
        sa.Column("subscriber_id", sa.String(length=24), nullable=True),
        sa.Column("address", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("created_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_delivery_incident_id_incident"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscriber.id"], name=op.f("fk_delivery_subscriber_id_subscriber"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["incident_update.id"],
            name=op.f("fk_delivery_update_id_incident_update"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("subject", "channel", "recipient", name="uq_delivery_subject_channel_recipient"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_delivery_state_due", ["state", "due_at"], unique=False)
        batch_op.create_index("ix_delivery_channel_state_due", ["channel", "state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_subscriber_id"), ["subscriber_id"], unique=False)
        batch_op.create_index("ix_delivery_update_channel_state", ["update_id", "channel", "state"], unique=False)

    op.create_table(
        "subscriber_component",
        sa.Column("subscriber_id", sa.String(length=24), nullable=False),
        sa.Column("component_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["component.id"],
            name=op.f("fk_subscriber_component_component_id_component"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_subscriber_component_subscriber_id_subscriber"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "component_id", name=op.f("pk_subscriber_component")),
    )
    with op.batch_alter_table("subscriber_component", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_component_component_id"), ["component_id"], unique=False)

    op.create_table(
        "update_draft",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("incident_id", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("next_update_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deliver_notifications", sa.Boolean(), nullable=False),
        sa.Column("author_id", sa.String(length=24), nullable=True),
        sa.Column("created_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.String(length=24), nullable=True),
        sa.Column("decided_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("update_id", sa.String(length=24), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["user_account.id"], name=op.f("fk_update_draft_author_id_user_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["user_account.id"],
            name=op.f("fk_update_draft_decided_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_update_draft_incident_id_incident"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["incident_update.id"],
            name=op.f("fk_update_draft_update_id_incident_update"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_update_draft")),
    )
    with op.batch_alter_table("update_draft", schema=None) as batch_op:
        batch_op.create_index("ix_update_draft_incident_state", ["incident_id", "state"], unique=False)

    op.create_table(
        "update_message",
        sa.Column("update_id", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["incident_update.id"],
            name=op.f("fk_update_message_update_id_incident_update"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("update_id", "channel", name=op.f("pk_update_message")),
    )
    op.create_table(
        "update_promise",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=24), nullable=False),
        sa.Column("update_id", sa.String(length=24), nullable=False),
        sa.Column("due_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kept_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("kept_by_update_id", sa.String(length=24), nullable=True),
        sa.Column("overdue_seconds", sa.Integer(), nullable=True),
        sa.Column("reminded_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("alarmed_at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_update_promise_incident_id_incident"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["kept_by_update_id"],
            ["incident_update.id"],
            name=op.f("fk_update_promise_kept_by_update_id_incident_update"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["incident_update.id"],
            name=op.f("fk_update_promise_update_id_incident_update"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_update_promise")),
    )
    with op.batch_alter_table("update_promise", schema=None) as batch_op:
        batch_op.create_index("ix_update_promise_incident_kept", ["incident_id", "kept_at"], unique=False)

    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("at", crisisdesk.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"], name=op.f("fk_delivery_attempt_delivery_id_delivery"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    with op.batch_alter_table("delivery_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_attempt_delivery_id"), ["delivery_id"], unique=False)

    with op.batch_alter_table("incident_update", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template_id", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("approved_by_id", sa.String(length=24), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_incident_update_approved_by_id_user_account"),
            "user_account",
            ["approved_by_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("severity_policy", schema=None) as batch_op:
        batch_op.add_column(sa.Column("free_text_approval", sa.Boolean(), server_default=sa.false(), nullable=False))

    # Free-text public updates on SEV1 and SEV2 need approval by default.
    op.execute("UPDATE severity_policy SET free_text_approval = true WHERE severity IN ('SEV1', 'SEV2')")


def downgrade() -> None:
    with op.batch_alter_table("severity_policy", schema=None) as batch_op:
        batch_op.drop_column("free_text_approval")

    with op.batch_alter_table("incident_update", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_incident_update_approved_by_id_user_account"), type_="foreignkey")
        batch_op.drop_column("approved_by_id")
        batch_op.drop_column("template_id")

    with op.batch_alter_table("delivery_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempt_delivery_id"))

    op.drop_table("delivery_attempt")
    with op.batch_alter_table("update_promise", schema=None) as batch_op:
        batch_op.drop_index("ix_update_promise_incident_kept")

    op.drop_table("update_promise")
    op.drop_table("update_message")
    with op.batch_alter_table("update_draft", schema=None) as batch_op:
        batch_op.drop_index("ix_update_draft_incident_state")

    op.drop_table("update_draft")
    with op.batch_alter_table("subscriber_component", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_component_component_id"))

    op.drop_table("subscriber_component")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_update_channel_state")
        batch_op.drop_index(batch_op.f("ix_delivery_subscriber_id"))
        batch_op.drop_index("ix_delivery_channel_state_due")
        batch_op.drop_index("ix_delivery_state_due")
        batch_op.drop_index(batch_op.f("ix_delivery_incident_id"))

    op.drop_table("delivery")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_state_id")
        batch_op.drop_index(batch_op.f("ix_subscriber_created_ip"))

    op.drop_table("subscriber")
    op.drop_table("message_template")
