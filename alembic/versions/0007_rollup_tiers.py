"""coarser rollup tiers: monthly per symbol, daily across symbols

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:00:00

Why. A whole-history read of ``ml_prediction_daily`` sums ~300,000 rows a year for 100
symbols and 2 model versions (~0.15-0.4 s whatever the number of predictions). Two tables
hold the same additive columns summed coarser: ``ml_prediction_monthly`` per (calendar month,
symbol, model_version, horizon) and ``ml_prediction_daily_total`` per (day, model_version,
horizon) across symbols; the daily ICs become ``ic_sum`` / ``ic_sq_sum`` / ``ic_days``. They
hold the daily rows of the days before ``ml_rollup_state.tiers_before`` (null: none yet; the
next backfill or rollup rebuild fills them), so the cron tick's changes of today's keys never
touch them.
The additive columns are those of ``ml_prediction_daily`` as it stands at this revision (read
from the database), so this revision never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAILY = "ml_prediction_daily"
_ACCURACY = ("predictions", "with_outcome", "confidence_n", "confidence_sum", "scored", "correct")
_DAILY_KEYS = ("day", "symbol", "model_version", "horizon")
_TIERS = {
    "ml_prediction_monthly": ("month", "symbol", "model_version", "horizon"),
    "ml_prediction_daily_total": ("day", "model_version", "horizon"),
}
_KEY_TYPES = {
    "day": sa.Date(),
    "month": sa.Date(),
    "symbol": sa.String(length=20),
    "model_version": sa.String(length=50),
    "horizon": sa.String(length=10),
}


def _daily_columns() -> tuple[list[str], list[str]]:
    """The daily table's additive columns: (integer counts, float sums), in table order."""
    counts, sums = [], []
    for column in sa.inspect(op.get_bind()).get_columns(_DAILY):
        name = column["name"]
        if name in _DAILY_KEYS or name == "ic":
            continue
        (counts if isinstance(column["type"], sa.Integer) else sums).append(name)
    return counts, sums


def upgrade() -> None:
    counts, sums = _daily_columns()
    for table, keys in _TIERS.items():
        op.create_table(
            table,
            *(sa.Column(key, _KEY_TYPES[key], nullable=False) for key in keys),
            *(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
                for name in (*counts, "ic_days")
            ),
            *(
                sa.Column(name, sa.Double(), nullable=False, server_default=sa.text("0"))
                for name in (*sums, "ic_sum", "ic_sq_sum")
            ),
            sa.PrimaryKeyConstraint(*keys, name=op.f(f"pk_{table}")),
        )
    # an accuracy table's read of the months: an index-only scan of narrow entries
    # (PostgreSQL INCLUDE; SQLite keeps the key alone)
    op.create_index(
        "ix_ml_prediction_monthly_accuracy",
        "ml_prediction_monthly",
        list(_TIERS["ml_prediction_monthly"]),
        postgresql_include=[*_ACCURACY, "ic_sum", "ic_sq_sum", "ic_days"],
    )
    with op.batch_alter_table("ml_rollup_state") as batch:
        batch.add_column(sa.Column("tiers_before", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_ml_prediction_monthly_accuracy", table_name="ml_prediction_monthly")
    with op.batch_alter_table("ml_rollup_state") as batch:
        batch.drop_column("tiers_before")
    for table in reversed(_TIERS):
        op.drop_table(table)
