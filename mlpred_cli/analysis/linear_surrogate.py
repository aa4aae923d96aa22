"""A linear surrogate of the model: a ridge regression of the model's own predicted return on
its input features, with exact linear SHAP values and the surrogate's R^2 as its
faithfulness (how much of the prediction the linear approximation explains).

Features are standardized before the fit (a constant or all-missing feature gets beta 0);
missing values are imputed with the feature's mean, so their SHAP value is 0. The ridge
penalty is chosen by generalized cross-validation (GCV) over a fixed grid, computed from one
eigendecomposition of the standardized Gram matrix; it works with fewer rows than features.
Coefficients are reported in the features' original units. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ridge penalties tried, as multiples of the number of rows (the standardized Gram matrix
#: has the row count on its diagonal, so 1e-8 is almost least squares, 10 shrinks hard).
PENALTY_GRID = tuple(float(v) for v in np.logspace(-8, 1, 19))
#: Share of the latest rows held out to measure the out-of-sample R^2.
HOLDOUT_SHARE = 0.2
#: Rows the holdout needs at least (fewer: only the in-sample R^2 is reported).
MIN_HOLDOUT_ROWS = 10
#: Rows the fit before the holdout needs at least.
MIN_FIT_ROWS = 20
#: Below this R^2 the surrogate's attributions describe the approximation, not the model.
LOW_SURROGATE_R2 = 0.5


@dataclass(frozen=True)
class SurrogateFit:
    """A fitted ridge surrogate.

    ``coefficients`` (one per feature, original units) and ``intercept`` predict the model's
    return; ``means`` are the feature means the SHAP values are measured from (and missing
    values imputed with); ``scales`` the standard deviations (0: constant or all missing);
    ``penalty`` the ridge penalty on the standardized features, as a multiple of ``rows``;
    ``r2`` the in-sample R^2 (None when the predicted return is constant); ``imputed`` the
    missing values replaced by the mean, per feature.
    """

    coefficients: np.ndarray
    intercept: float
    means: np.ndarray
    scales: np.ndarray
    penalty: float
    rows: int
    r2: float | None
    imputed: np.ndarray

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The surrogate's predicted return for ``features`` (shape (features, rows))."""
        return np.asarray(
            self.intercept + self.coefficients @ self.means + self.shap_values(features).sum(axis=0)
        )

    def shap_values(self, features: np.ndarray) -> np.ndarray:
        """Exact linear SHAP values, beta_j * (x_j - mean_j), shape (features, rows); 0 where
        the feature is missing (imputed with its mean)."""
        centred = np.where(np.isfinite(features), features - self.means[:, None], 0.0)
        return np.asarray(self.coefficients[:, None] * centred)


def r_squared(target: np.ndarray, fitted: np.ndarray) -> float | None:
    """1 - SSE / SST around the target's own mean; None when the target is constant. Can be
    negative out of sample (worse than predicting the mean)."""
    if target.size == 0 or np.ptp(target) == 0:
        return None
    spread = float(np.sum((target - target.mean()) ** 2))
    return 1.0 - float(np.sum((target - fitted) ** 2)) / spread


def _standardize(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(standardized features with missing values at 0, means, scales, missing per feature)."""
    rows = features.shape[1]
    finite = np.isfinite(features)
    if finite.all():  # the usual case: no masked copies
        present = np.full(len(features), rows)
        means = features.mean(axis=1)
        centred = features - means[:, None]
    else:
        present = finite.sum(axis=1)
        values = np.where(finite, features, 0.0)
        means = np.divide(values.sum(axis=1), present, out=np.zeros(len(values)), where=present > 0)
        values -= means[:, None]
        values[~finite] = 0.0
        centred = values
    scales = np.sqrt(np.einsum("ij,ij->i", centred, centred) / max(rows, 1))
    # A spread at rounding level of the mean is a constant feature.
    scales[scales <= 1e-12 * np.maximum(np.abs(means), 1.0)] = 0.0
    varying = scales > 0
    centred[varying] /= scales[varying, None]
    centred[~varying] = 0.0
    return centred, means, scales, rows - present


def _gcv_ridge(standardized: np.ndarray, centred_target: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge coefficients on standardized features (shape (features, rows)) and the penalty
    (multiple of the row count) with the lowest GCV score n * RSS / (n - 1 - trace H)^2
    (the centred target spends one degree of freedom on the intercept)."""
    rows = standardized.shape[1]
    eigenvalues, eigenvectors = np.linalg.eigh(standardized @ standardized.T)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = eigenvectors.T @ (standardized @ centred_target)
    total = float(centred_target @ centred_target)
    best: tuple[float, float] | None = None
    for multiple in PENALTY_GRID:
        penalty = multiple * rows
        shrink = eigenvalues / (eigenvalues + penalty)
        residual = total - float(np.sum(projected**2 * (2.0 - shrink) / (eigenvalues + penalty)))
        freedom = rows - 1 - float(shrink.sum())  # the intercept takes one
        if freedom < 0.5:  # (near) interpolation: GCV is undefined
            continue
        score = rows * max(residual, 0.0) / freedom**2
        if best is None or score < best[0]:
            best = (score, multiple)
    multiple = PENALTY_GRID[-1] if best is None else best[1]
    weights = projected / (eigenvalues + multiple * rows)
    return eigenvectors @ weights, multiple


def fit_surrogate(features: np.ndarray, predicted_returns: np.ndarray) -> SurrogateFit:
    """Fit the ridge surrogate of ``predicted_returns`` (one per row, finite) on ``features``
    (shape (features, rows), NaN where missing; at least 2 rows)."""
    if features.ndim != 2 or features.shape[1] != predicted_returns.shape[0]:
        raise ValueError("features must be (features, rows) with one predicted return per row")
    if features.shape[1] < 2:
        raise ValueError("the surrogate needs at least 2 rows")
    standardized, means, scales, missing = _standardize(features)
    target_mean = float(predicted_returns.mean())
    weights, penalty = _gcv_ridge(standardized, predicted_returns - target_mean)
    coefficients = np.divide(weights, scales, out=np.zeros_like(weights), where=scales > 0)
    fitted = target_mean + weights @ standardized
    return SurrogateFit(
        coefficients=coefficients,
        intercept=target_mean - float(coefficients @ means),
        means=means,
        scales=scales,
        penalty=penalty,
        rows=features.shape[1],
        r2=r_squared(predicted_returns, fitted),
        imputed=missing,
    )


@dataclass(frozen=True)
class SurrogateImportance:
    """Per-feature importance of a surrogate over all rows.

    ``scores`` = mean |SHAP value| (original units of the predicted return); ``fit`` the
    surrogate on all rows; ``holdout_r2`` the R^2 on the latest ``holdout_rows`` rows of a
    surrogate fitted on the earlier ones (None when there were too few rows: see
    ``MIN_HOLDOUT_ROWS``); ``faithfulness`` the R^2 to report (the holdout's when there is
    one, else the in-sample one) and ``faithfulness_kind`` which (``holdout`` or
    ``in-sample``).
    """

    scores: np.ndarray
    fit: SurrogateFit
    holdout_r2: float | None
    holdout_rows: int

    @property
    def faithfulness(self) -> float | None:
        """The R^2 to report: out of sample when measured, else in sample."""
        return self.holdout_r2 if self.holdout_rows else self.fit.r2

    @property
    def faithfulness_kind(self) -> str:
        """``holdout`` (the latest rows, fit on the earlier ones) or ``in-sample``."""
        return "holdout" if self.holdout_rows else "in-sample"


def holdout_size(rows: int) -> int:
    """Latest rows held out for the out-of-sample R^2; 0 when too few rows."""
    size = max(MIN_HOLDOUT_ROWS, int(rows * HOLDOUT_SHARE))
    return size if rows - size >= MIN_FIT_ROWS else 0


def surrogate_importance(
    features: np.ndarray, predicted_returns: np.ndarray, order: np.ndarray | None = None
) -> SurrogateImportance:
    """Fit the surrogate on every row and score each feature by the mean |beta_j (x_j -
    mean_j)|; measure its R^2 on the latest rows (``order``: a sortable time per row, oldest
    first when None) with a surrogate fitted on the earlier ones."""
    fit = fit_surrogate(features, predicted_returns)
    scores = np.abs(fit.shap_values(features)).mean(axis=1)
    held = holdout_size(features.shape[1])
    holdout_r2 = None
    if held:
        sequence = (
            np.arange(features.shape[1]) if order is None else np.argsort(order, kind="stable")
        )
        earlier, latest = sequence[:-held], sequence[-held:]
        trial = fit_surrogate(features[:, earlier], predicted_returns[earlier])
        holdout_r2 = r_squared(predicted_returns[latest], trial.predict(features[:, latest]))
    return SurrogateImportance(scores, fit, holdout_r2, held)
