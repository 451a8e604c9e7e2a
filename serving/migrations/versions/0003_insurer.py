"""Insurer side: decided buyer-limit requests and claim notices.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "buyer_limit_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("insurer", sa.String(200), nullable=False),
        sa.Column("firm_usc", sa.String(18), nullable=False),
        sa.Column("buyer_id", sa.String(40), nullable=False),
        sa.Column("country_iso3", sa.String(3), nullable=False),
        sa.Column("requested_usd", sa.Float, nullable=False),
        sa.Column("granted_usd", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(40), nullable=False),
        sa.Column("buyer_grade", sa.String(16), nullable=False),
        sa.Column("grade_as_of", sa.String(32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
    )
    for col in ("insurer", "firm_usc", "buyer_id"):
        op.create_index(f"ix_buyer_limit_decisions_{col}", "buyer_limit_decisions", [col])
    op.create_table(
        "claim_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("insurer", sa.String(200), nullable=False),
        sa.Column("firm_usc", sa.String(18), nullable=False),
        sa.Column("policy_id", sa.String(40), nullable=False),
        sa.Column("buyer_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("due_date", sa.String(10), nullable=False),
        sa.Column("notified_date", sa.String(10), nullable=False),
        sa.Column("loss_usd", sa.Float, nullable=False),
        sa.Column("cover", sa.Float, nullable=False),
        sa.Column("approved_limit_usd", sa.Float, nullable=False),
        sa.Column("country_category", sa.String(4), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=True),
    )
    for col in ("insurer", "firm_usc", "buyer_id"):
        op.create_index(f"ix_claim_notices_{col}", "claim_notices", [col])


def downgrade() -> None:
    op.drop_table("claim_notices")
    op.drop_table("buyer_limit_decisions")
