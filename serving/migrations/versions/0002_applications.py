"""Applications, their events, outcome records and quarantine, provider product versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("firm_usc", sa.String(18), nullable=False),
        sa.Column("provider_org", sa.String(200), nullable=False),
        sa.Column("product_id", sa.String(80), nullable=False),
        sa.Column("product_version", sa.Integer, nullable=False),
        sa.Column("product_kind", sa.String(40), nullable=False),
        sa.Column("need_ref", sa.String(40), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("grade", sa.String(8), nullable=False),
        sa.Column("qualified_via_bundle", sa.Boolean, nullable=False),
        sa.Column("amount_cny", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("consent_id", sa.Integer, nullable=True),
        sa.Column("frozen", sa.Text, nullable=False),
        sa.Column("frozen_sha256", sa.String(64), nullable=False),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("approved_amount_cny", sa.Float, nullable=True),
        sa.Column("disbursed_amount_cny", sa.Float, nullable=True),
        sa.Column("disbursed_on", sa.Date, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
    )
    for col in ("firm_usc", "provider_org", "need_ref", "status"):
        op.create_index(f"ix_applications_{col}", "applications", [col])
    op.create_table(
        "application_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "application_id",
            sa.Integer,
            sa.ForeignKey(
                "applications.id",
                ondelete="CASCADE",
                name="fk_application_events_application_id_applications",
            ),
            nullable=False,
        ),
        sa.Column("ts", TS, nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("details", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_application_events_application_id", "application_events", ["application_id"]
    )
    op.create_table(
        "outcome_records",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "application_id",
            sa.Integer,
            sa.ForeignKey(
                "applications.id",
                ondelete="CASCADE",
                name="fk_outcome_records_application_id_applications",
            ),
            nullable=False,
        ),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("on_date", sa.Date, nullable=False),
        sa.Column("amount_cny", sa.Float, nullable=True),
        sa.Column("days_past_due", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("outstanding_cny", sa.Float, nullable=True),
        sa.Column("upload_id", sa.String(40), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_outcome_records_application_id", "outcome_records", ["application_id"])
    op.create_table(
        "outcome_quarantine",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider_org", sa.String(200), nullable=False),
        sa.Column("upload_id", sa.String(40), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_outcome_quarantine_provider_org", "outcome_quarantine", ["provider_org"])
    op.create_index("ix_outcome_quarantine_upload_id", "outcome_quarantine", ["upload_id"])
    op.create_table(
        "product_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("product_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("owner_org", sa.String(200), nullable=False),
        sa.Column("spec", sa.Text, nullable=True),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Integer, nullable=True),
        sa.UniqueConstraint("product_id", "version", name="uq_product_versions_id_version"),
    )
    op.create_index("ix_product_versions_product_id", "product_versions", ["product_id"])
    op.create_index("ix_product_versions_owner_org", "product_versions", ["owner_org"])


def downgrade() -> None:
    for name in (
        "product_versions",
        "outcome_quarantine",
        "outcome_records",
        "application_events",
        "applications",
    ):
        op.drop_table(name)
