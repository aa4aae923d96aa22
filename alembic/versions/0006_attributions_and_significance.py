"""feature attributions and the significance of feature importance

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:00:00

Why. ``ml_predictions.feature_attributions`` holds the per-prediction feature attributions
(SHAP values) a bot computed with its own explainer and passed to ``log_prediction``: a JSON
list aligned with the feature vector, null unless given, so a row without them costs nothing.
``ml_feature_importance`` gains what tells a real feature from noise: ``p_value`` (Spearman
test at the overlap-corrected effective sample size), ``q_value`` (Benjamini-Hochberg over
the snapshot's features), ``n_effective`` (that effective sample size) and ``surrogate_r2``
(for the linear-surrogate method: how much of the model's output the surrogate explains).
All are nullable: snapshots written before this revision keep nulls there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMPORTANCE_COLUMNS = ("p_value", "q_value", "n_effective", "surrogate_r2")


def upgrade() -> None:
    op.add_column(
        "ml_predictions",
        sa.Column(
            "feature_attributions",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
    )
    with op.batch_alter_table("ml_feature_importance") as batch:
        for name in _IMPORTANCE_COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ml_feature_importance") as batch:
        for name in reversed(_IMPORTANCE_COLUMNS):
            batch.drop_column(name)
    op.drop_column("ml_predictions", "feature_attributions")
