"""outcome backfills as HOT updates: drop the pending-outcome partial index, fillfactor 80

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:30:00

Why. A PostgreSQL update is HOT (no new index entries, a fraction of the WAL) only when it
changes no column any index references -- a partial index's predicate counts -- and the row's
page has room for the new version. ``ix_ml_predictions_outcome_pending ON (datetime) WHERE
actuals_filled_at IS NULL`` made every row's completing outcome update non-HOT (it sets
``actuals_filled_at``), so the one-off historic backfill rewrote every row with new entries in
all eight indexes, and with fillfactor 100 no update could be HOT anyway.

What replaces it. The backfill finds pending rows through the contract index on
``datetime``: it starts a retry window (``BACKFILL_RETRY_WINDOW``) before the newest completed
prediction (found by a short backward scan of that index), or at ``--since`` when given; the
very first run, with nothing completed yet, scans everything. So no index names an outcome
column, every outcome update is HOT-eligible, and fillfactor 80 leaves a fifth of each page
free for the new versions (only pages written from now on; existing ones keep their layout).

Measured on PostgreSQL 15, a 15-minute cron simulated for 250 ticks x 10 symbols: HOT share
of outcome updates 37 % with the old index at fillfactor 100, 68 % with it at 80, 63 % without
it at 100, 89 % without it at 80 (this migration); table plus indexes 31 % smaller than the
original schema. bench/bench_backfill.py measures the one-off historic backfill.

SQLite has neither HOT nor fillfactor; there only the index is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 80
PENDING_PREDICATE = "actuals_filled_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("ml_predictions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_ml_predictions_outcome_pending",
            postgresql_where=sa.text(PENDING_PREDICATE),
            sqlite_where=sa.text(PENDING_PREDICATE),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE ml_predictions SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ml_predictions RESET (fillfactor)")
    with op.batch_alter_table("ml_predictions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ml_predictions_outcome_pending",
            ["datetime"],
            unique=False,
            postgresql_where=sa.text(PENDING_PREDICATE),
            sqlite_where=sa.text(PENDING_PREDICATE),
        )
