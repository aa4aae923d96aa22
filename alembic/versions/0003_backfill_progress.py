"""backfill progress: how far plain runs have examined each symbol's predictions, by id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

Why. Without ``--since`` the backfill looked only at a per-symbol retry window of
``datetime`` values, so a prediction whose ``datetime`` lay before that window when it was
first inserted -- a journal replayed days later, or rows a killed run had not reached while
it had already completed newer ones -- was never examined: it was counted as
``outside_window`` forever. ``ml_backfill_progress`` records, per symbol, the highest
``ml_predictions.id`` up to which every row has been examined while all its horizons were
due; each run also looks at every row above it, through the primary key. The table names no
column of ``ml_predictions`` in an index, so outcome updates stay HOT (migration 0002).

Empty after the upgrade: the first run then examines every row once (this also picks up the
rows earlier versions had left behind) and records where it got to.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ml_backfill_progress",
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("examined_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_ml_backfill_progress")),
    )


def downgrade() -> None:
    op.drop_table("ml_backfill_progress")
