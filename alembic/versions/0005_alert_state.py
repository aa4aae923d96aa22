"""alert state of mlpred check

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:00:00

Why. ``mlpred check`` runs from cron; without state every run would report (and post to a
webhook) the same alert again. ``ml_alerts`` holds one row per fingerprint (a hash of the
check, metric and scope): when it was first and last seen, what it last measured, and when
it was resolved. A later run updates the row; an alert that comes back after being resolved
is reopened on the same row with a new ``first_seen``. ``notified_at`` is set once the
row's current state (firing or resolved) reached the webhook, so a failed delivery is sent
again by the next run instead of being lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ml_alerts",
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("check_name", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(80), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=True),
        sa.Column("model_version", sa.String(50), nullable=True),
        sa.Column("horizon", sa.String(8), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_ml_alerts")),
    )
    op.create_index(op.f("ix_ml_alerts_resolved_at"), "ml_alerts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ml_alerts_resolved_at"), table_name="ml_alerts")
    op.drop_table("ml_alerts")
