"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 00:14:10.952957
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "market_candles",
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("datetime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint(
            "symbol", "interval_minutes", "datetime", name=op.f("pk_market_candles")
        ),
    )
    op.create_table(
        "ml_feature_importance",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("feature_name", sa.String(length=100), nullable=False),
        sa.Column("feature_index", sa.Integer(), nullable=True),
        sa.Column("importance_score", sa.Double(), nullable=True),
        sa.Column("importance_rank", sa.Integer(), nullable=True),
        sa.Column("correlation_with_returns", sa.Double(), nullable=True),
        sa.Column("usage_count", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(length=50), nullable=True),
        sa.Column("method", sa.String(length=30), server_default="model", nullable=False),
        sa.Column("horizon", sa.String(length=10), nullable=True),
        sa.Column("calculated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_feature_importance")),
    )
    with op.batch_alter_table("ml_feature_importance", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ml_feature_importance_feature_name", ["feature_name"], unique=False
        )
        batch_op.create_index(
            "ix_ml_feature_importance_snapshot",
            ["model_version", "method", "calculated_at"],
            unique=False,
        )

    op.create_table(
        "ml_predictions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("datetime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("features_count", sa.Integer(), nullable=True),
        sa.Column("features_hash", sa.BigInteger(), nullable=True),
        sa.Column("lookback_periods", sa.Integer(), nullable=True),
        sa.Column("close_price", sa.Double(), nullable=True),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("rsi", sa.Double(), nullable=True),
        sa.Column("macd", sa.Double(), nullable=True),
        sa.Column("bb_position", sa.Double(), nullable=True),
        sa.Column("atr_pct", sa.Double(), nullable=True),
        sa.Column("volume_ratio", sa.Double(), nullable=True),
        sa.Column("trend_strength", sa.Double(), nullable=True),
        sa.Column("features_mean", sa.Double(), nullable=True),
        sa.Column("features_std", sa.Double(), nullable=True),
        sa.Column("features_min", sa.Double(), nullable=True),
        sa.Column("features_max", sa.Double(), nullable=True),
        sa.Column("zero_variance_count", sa.Integer(), nullable=True),
        sa.Column("nan_count", sa.Integer(), nullable=True),
        sa.Column("inf_count", sa.Integer(), nullable=True),
        sa.Column("is_duplicate", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("predicted_return_15m", sa.Double(), nullable=True),
        sa.Column("predicted_return_1h", sa.Double(), nullable=True),
        sa.Column("predicted_return_4h", sa.Double(), nullable=True),
        sa.Column("predicted_return_12h", sa.Double(), nullable=True),
        sa.Column("direction_15m", sa.String(length=10), nullable=True),
        sa.Column("direction_1h", sa.String(length=10), nullable=True),
        sa.Column("direction_4h", sa.String(length=10), nullable=True),
        sa.Column("direction_12h", sa.String(length=10), nullable=True),
        sa.Column("direction_15m_confidence", sa.Double(), nullable=True),
        sa.Column("direction_1h_confidence", sa.Double(), nullable=True),
        sa.Column("direction_4h_confidence", sa.Double(), nullable=True),
        sa.Column("direction_12h_confidence", sa.Double(), nullable=True),
        sa.Column("risk_score", sa.Double(), nullable=True),
        sa.Column("max_drawdown_predicted", sa.Double(), nullable=True),
        sa.Column("max_rally_predicted", sa.Double(), nullable=True),
        sa.Column("signal_type", sa.String(length=10), nullable=True),
        sa.Column("signal_confidence", sa.Double(), nullable=True),
        sa.Column("signal_timeframe", sa.String(length=10), nullable=True),
        sa.Column("model_version", sa.String(length=50), nullable=True),
        sa.Column("inference_time_ms", sa.Double(), nullable=True),
        sa.Column("actual_return_15m", sa.Double(), nullable=True),
        sa.Column("actual_return_1h", sa.Double(), nullable=True),
        sa.Column("actual_return_4h", sa.Double(), nullable=True),
        sa.Column("actual_return_12h", sa.Double(), nullable=True),
        sa.Column("actual_direction_15m", sa.String(length=10), nullable=True),
        sa.Column("actual_direction_1h", sa.String(length=10), nullable=True),
        sa.Column("actual_direction_4h", sa.String(length=10), nullable=True),
        sa.Column("actual_direction_12h", sa.String(length=10), nullable=True),
        sa.Column("accuracy_15m", sa.Boolean(), nullable=True),
        sa.Column("accuracy_1h", sa.Boolean(), nullable=True),
        sa.Column("accuracy_4h", sa.Boolean(), nullable=True),
        sa.Column("accuracy_12h", sa.Boolean(), nullable=True),
        sa.Column("return_error_15m", sa.Double(), nullable=True),
        sa.Column("return_error_1h", sa.Double(), nullable=True),
        sa.Column("return_error_4h", sa.Double(), nullable=True),
        sa.Column("return_error_12h", sa.Double(), nullable=True),
        sa.Column("actuals_filled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "features_array",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "model_outputs_raw",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_predictions")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_ml_predictions_prediction_id")),
    )
    with op.batch_alter_table("ml_predictions", schema=None) as batch_op:
        batch_op.create_index("ix_ml_predictions_datetime", ["datetime"], unique=False)
        batch_op.create_index("ix_ml_predictions_features_hash", ["features_hash"], unique=False)
        batch_op.create_index(
            "ix_ml_predictions_model_version_datetime", ["model_version", "datetime"], unique=False
        )
        batch_op.create_index(
            "ix_ml_predictions_outcome_pending",
            ["datetime"],
            unique=False,
            postgresql_where=sa.text("actuals_filled_at IS NULL"),
            sqlite_where=sa.text("actuals_filled_at IS NULL"),
        )
        batch_op.create_index(
            "ix_ml_predictions_signal_confidence", ["signal_confidence"], unique=False
        )
        batch_op.create_index("ix_ml_predictions_signal_type", ["signal_type"], unique=False)
        batch_op.create_index(
            "ix_ml_predictions_symbol_datetime", ["symbol", "datetime"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ml_predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_ml_predictions_symbol_datetime")
        batch_op.drop_index("ix_ml_predictions_signal_type")
        batch_op.drop_index("ix_ml_predictions_signal_confidence")
        batch_op.drop_index(
            "ix_ml_predictions_outcome_pending",
            postgresql_where=sa.text("actuals_filled_at IS NULL"),
            sqlite_where=sa.text("actuals_filled_at IS NULL"),
        )
        batch_op.drop_index("ix_ml_predictions_model_version_datetime")
        batch_op.drop_index("ix_ml_predictions_features_hash")
        batch_op.drop_index("ix_ml_predictions_datetime")

    op.drop_table("ml_predictions")
    with op.batch_alter_table("ml_feature_importance", schema=None) as batch_op:
        batch_op.drop_index("ix_ml_feature_importance_snapshot")
        batch_op.drop_index("ix_ml_feature_importance_feature_name")

    op.drop_table("ml_feature_importance")
    op.drop_table("market_candles")
