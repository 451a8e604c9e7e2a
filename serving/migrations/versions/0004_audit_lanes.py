"""Audit lanes: several hash chains, one head row each, so processes commit side by side.

Every audit row names its ``lane`` (existing rows: lane 1, the one chain so far); each lane is
a chain of its own, linked by ``prev_hash`` in id order, with its head row in ``audit_head``
(``id`` = the lane). On PostgreSQL a writer takes the first head row nobody holds
(``FOR UPDATE SKIP LOCKED``), so one process's batch no longer waits for another's commit,
and row ids come from the sequence ``audit_log_ids`` (drawn after the lane is held, so ids
rise along each lane); this revision adds lanes 2..8 there. SQLite serialises writers on its
database lock anyway and keeps the one lane.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Lanes created on PostgreSQL (more processes than lanes wait for a held one).
PG_LANES = 8
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    # A constant default: no table rewrite, and the append-only triggers (UPDATE) never fire.
    op.add_column(
        "audit_log", sa.Column("lane", sa.SmallInteger, nullable=False, server_default="1")
    )
    op.create_index("ix_audit_log_lane_id", "audit_log", ["lane", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_log_ids AS bigint")
        op.execute(
            "SELECT setval('audit_log_ids', COALESCE((SELECT max(id) FROM audit_log), 0) + 1, "
            "false)"
        )
        op.execute(
            "INSERT INTO audit_head (id, last_id, last_hash) "
            f"SELECT g, 0, '{GENESIS_HASH}' FROM generate_series(2, {PG_LANES}) AS g "
            "ON CONFLICT (id) DO NOTHING"
        )


def downgrade() -> None:
    bind = op.get_bind()
    used = bind.execute(sa.text("SELECT count(*) FROM audit_log WHERE lane <> 1")).scalar()
    if used:
        # One chain cannot hold rows written on several: refuse rather than break `verify`.
        raise RuntimeError(f"{used} audit rows are in lanes other than 1; cannot go back to one")
    op.execute("DELETE FROM audit_head WHERE id <> 1")
    if bind.dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS audit_log_ids")
    op.drop_index("ix_audit_log_lane_id", table_name="audit_log")
    # Plain ALTER (SQLite >= 3.35 too): a batch copy would drop the append-only triggers.
    op.execute("ALTER TABLE audit_log DROP COLUMN lane")
