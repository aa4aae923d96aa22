"""daily rollups, their watermark, and the archived days

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:00:00

Why. Every read scanned raw rows; at 10M predictions a day history is what grows.
``ml_prediction_daily`` holds one row per (UTC day, symbol, model_version, horizon) of
additive figures (counts and sums) from which the analysis computes any period's statistics
by summing rows. ``ml_rollup_state`` records the id through which the rollups are complete
(rows above it are added from raw rows when read). ``ml_archived_days`` lists the days whose
raw rows were archived to Parquet and removed; their rollups stay.

On a database without predictions the watermark starts at 0, so the backfill keeps the
rollups from the first row on. A database that already holds predictions gets no watermark:
reads stay on raw rows until ``mlpred rollup rebuild`` builds the rollups once (a backfill
after the upgrade must not turn into a rebuild of all history).
The column list is written out here (not imported) so that this revision never changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNALS = ("long", "short", "neutral")
_CALIBRATION_BINS = 10
_SIGNAL_BINS = 5
_ACCURACY = ("predictions", "with_outcome", "confidence_n", "confidence_sum", "scored", "correct")


def _counts() -> list[str]:
    names = ["predictions", "with_outcome", "confidence_n"]
    for kind in _SIGNALS:
        names += [f"signal_{kind}", f"signal_{kind}_with_outcome", f"signal_{kind}_confidence_n"]
    names += ["scored", "correct", "directional", "directional_correct"]
    names += [f"actual_{kind}" for kind in _SIGNALS]
    for kind in _SIGNALS:
        names += [f"signal_{kind}_scored", f"signal_{kind}_correct"]
    names += ["return_pairs", "calibration_n", "calibration_correct"]
    for k in range(_CALIBRATION_BINS):
        names += [f"ece_{k}_n", f"ece_{k}_correct"]
    for k in range(_SIGNAL_BINS):
        names += [f"bin_{k}_n", f"bin_{k}_scored", f"bin_{k}_correct"]
        names += [f"bin_{k}_{kind}" for kind in _SIGNALS]
    names.append("ic_n")
    return names


def _sums() -> list[str]:
    names = ["confidence_sum", *(f"signal_{kind}_confidence_sum" for kind in _SIGNALS)]
    names += [
        "predicted_sum",
        "actual_sum",
        "predicted_sq_sum",
        "actual_sq_sum",
        "cross_sum",
        "abs_error_sum",
        "squared_error_sum",
        "calibration_confidence_sum",
        "brier_sum",
    ]
    names += [f"ece_{k}_confidence_sum" for k in range(_CALIBRATION_BINS)]
    names += [f"bin_{k}_confidence_sum" for k in range(_SIGNAL_BINS)]
    return names  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "ml_prediction_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("model_version", sa.String(length=50), nullable=False),
        sa.Column("horizon", sa.String(length=10), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
            for name in _counts()
        ),
        *(
            sa.Column(name, sa.Double(), nullable=False, server_default=sa.text("0"))
            for name in _sums()
        ),
        sa.Column("ic", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint(
            "day", "symbol", "model_version", "horizon", name=op.f("pk_ml_prediction_daily")
        ),
    )
    # accuracy tables read only these columns: an index-only scan of a narrow index instead
    # of the ~1.2 kB rows (PostgreSQL; SQLite has no INCLUDE and keeps the key alone)
    op.create_index(
        "ix_ml_prediction_daily_accuracy",
        "ml_prediction_daily",
        ["day", "symbol", "model_version", "horizon"],
        postgresql_include=list(_ACCURACY),
    )
    op.create_table(
        "ml_rollup_state",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("complete_through_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ml_rollup_state")),
    )
    op.execute(
        "INSERT INTO ml_rollup_state (name, complete_through_id, updated_at) "
        "SELECT 'daily', 0, CURRENT_TIMESTAMP WHERE NOT EXISTS (SELECT 1 FROM ml_predictions)"
    )
    op.create_table(
        "ml_archived_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_ml_archived_days")),
    )


def downgrade() -> None:
    op.drop_table("ml_archived_days")
    op.drop_table("ml_rollup_state")
    op.drop_table("ml_prediction_daily")
