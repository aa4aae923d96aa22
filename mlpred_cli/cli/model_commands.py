"""Model commands: ``feature-importance compute|show`` and ``compare-models``."""

from __future__ import annotations

import textwrap
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlpred_cli.cli.app import app
from mlpred_cli.cli.bounds import MAX_COUNT, MAX_DAYS, within
from mlpred_cli.cli.common import (
    FORMAT_OPTION,
    cli_errors,
    database_url,
    fail,
    flag_errors,
    stderr_console,
)
from mlpred_cli.config import check_horizons
from mlpred_cli.errors import InputError
from mlpred_cli.render.output_format import OutputFormat

if TYPE_CHECKING:
    from mlpred_cli.analysis.importance_methods import SurrogateResult

importance_app = typer.Typer(
    help="Which input features matter, and how that changes over time.", no_args_is_help=True
)
app.add_typer(importance_app, name="feature-importance", rich_help_panel="Models")

#: Significance columns of both commands: p-value, Benjamini-Hochberg q-value, effective
#: sample size, q below ``[importance] fdr_level``.
SIGNIFICANCE_COLUMNS = ["p_value", "q_value", "n_effective", "significant"]
IMPORTANCE_COLUMNS = [
    "importance_rank",
    "feature_name",
    "importance_score",
    "correlation_with_returns",
    "usage_count",
    *SIGNIFICANCE_COLUMNS,
]
#: Short table headers (JSON and CSV keep the column names).
IMPORTANCE_HEADERS = {
    "importance_rank": "rank",
    "feature_name": "feature",
    "importance_score": "score",
    "correlation_with_returns": "IC",
    "usage_count": "used",
    "rank_change": "rank chg",
    "p_value": "p",
    "q_value": "q",
    "n_effective": "n eff",
    "significant": "sig",
}
SHOW_COLUMNS = [
    "rank",
    "feature_name",
    "importance_score",
    "correlation_with_returns",
    "usage_count",
    "rank_change",
    "trend",
    *SIGNIFICANCE_COLUMNS,
]
#: Table columns left out when no shown feature has a value there (the shap and surrogate
#: methods and old snapshots have no test and no IC): a column of dashes says nothing.
OPTIONAL_TABLE_COLUMNS = frozenset({"correlation_with_returns", *SIGNIFICANCE_COLUMNS})


def table_columns(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """``columns`` without the ``OPTIONAL_TABLE_COLUMNS`` that are empty in every row."""
    return [
        name
        for name in columns
        if name not in OPTIONAL_TABLE_COLUMNS or any(row.get(name) is not None for row in rows)
    ]


#: Columns a narrow table leaves out first (most expendable first).
IMPORTANCE_DROP_FIRST = ["n_effective", "usage_count", "importance_score", "trend"]

#: ``compare-models --days``.
COMPARE_DAYS_OPTION = typer.Option(
    30.0,
    "--days",
    "-d",
    callback=within(MAX_DAYS),
    help="Compare over the last N days.",
)


class ImportanceMethod(StrEnum):
    """The ``feature-importance compute --method`` choices."""

    spearman_ic = "spearman-ic"
    shap = "shap"
    linear_surrogate = "linear-surrogate"


#: The library's name of each choice (``analysis.importance_methods.IMPORTANCE_METHODS``).
STORED_METHODS = {
    ImportanceMethod.spearman_ic: "spearman_ic",
    ImportanceMethod.shap: "shap_mean_abs",
    ImportanceMethod.linear_surrogate: "linear_surrogate",
}


@importance_app.command("compute")
def compute_command(
    ctx: typer.Context,
    days: float = typer.Option(
        30.0,
        "--days",
        "-d",
        callback=within(MAX_DAYS),
        help="Use the predictions of the last N days.",
    ),
    horizon: str = typer.Option("1h", "--horizon", help="Outcome horizon: 15m, 1h, 4h or 12h."),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Only this model version (default: all)."
    ),
    feature_names: Path | None = typer.Option(
        None, "--feature-names", help="Text file with one feature name per line (default f0..fN)."
    ),
    method: ImportanceMethod = typer.Option(
        ImportanceMethod.spearman_ic,
        "--method",
        help="spearman-ic: |IC| with the realized return; shap: mean |attribution| passed to "
        "log_prediction(attributions=...); linear-surrogate: linear SHAP of a ridge fit of "
        "the model's predicted return.",
    ),
    top: int = typer.Option(
        20, "--top", callback=within(MAX_COUNT, 1), help="Features to print (all are written)."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Score every feature and save a snapshot (at least 30 predictions needed).

    spearman-ic (method spearman_ic): |Spearman IC| of the feature with the realized return,
    over predictions logged with store_features=True whose --horizon outcome is backfilled.

    shap (method shap_mean_abs): mean |phi| of the attributions the bot passed to
    log_prediction(attributions=...), matured or not; --horizon only labels the snapshot.

    linear-surrogate (method linear_surrogate): a ridge regression of the model's own
    predicted return at --horizon on the stored features (same rows as spearman-ic);
    score = mean |beta_j (x_j - mean_j)|. Its R^2 (on the latest 20 % of the rows, at
    least 10, fitted on the earlier ones; in sample below 30 rows) is stored in
    surrogate_r2: a low R^2 means the scores describe a linear approximation, not the
    model. Missing feature values are imputed with the feature's mean.

    usage_count = predictions where the feature (for shap: its attribution) was finite and
    non-zero.

    Example:

        mlpred feature-importance compute --days 30 --horizon 1h

        mlpred feature-importance compute --method linear-surrogate --model-version v2

        mlpred feature-importance compute --method shap --feature-names features.txt
    """
    from mlpred_cli import config
    from mlpred_cli.analysis.importance_methods import SurrogateResult, compute_importance
    from mlpred_cli.render.model_views import (
        importance_significance_line,
        significance_cells,
        with_significance,
    )
    from mlpred_cli.render.output import emit_rows

    with cli_errors(), flag_errors():
        result = compute_importance(
            database_url(ctx),
            method=STORED_METHODS[method],
            days=days,
            horizon=horizon,
            model_version=model_version,
            feature_names=feature_names,
        )
    stored_method = result.rows[0]["method"] if result.rows else STORED_METHODS[method]
    stderr_console().print(
        f"Wrote {result.written} features ({result.predictions} predictions, horizon "
        f"{result.horizon}, model version {result.model_version or 'all'}, method {stored_method}"
        + (f"; {result.skipped} skipped: other vector length" if result.skipped else "")
        + ")"
    )
    columns = IMPORTANCE_COLUMNS
    if isinstance(result, SurrogateResult):
        stderr_console().print(surrogate_line(result))
        if fmt is not OutputFormat.table:  # the table has it in the line above
            columns = [*IMPORTANCE_COLUMNS, "surrogate_r2"]
    level = config.IMPORTANCE_FDR_LEVEL
    claim = importance_significance_line(result.rows, level)
    if claim is not None:
        stderr_console().print(claim, markup=False, highlight=False)
    rows = with_significance(result.ranked()[:top], level)
    if fmt is OutputFormat.table:
        columns = table_columns(columns, rows)
    emit_rows(
        significance_cells(rows) if fmt is OutputFormat.table else rows,
        fmt,
        title=f"Feature importance ({stored_method})",
        columns=columns,
        headers=IMPORTANCE_HEADERS,
        drop_first=IMPORTANCE_DROP_FIRST,
    )


def surrogate_line(result: SurrogateResult) -> str:
    """The surrogate's faithfulness in one line, with a warning when its R^2 is low."""
    from mlpred_cli.analysis.linear_surrogate import LOW_SURROGATE_R2

    r2 = result.surrogate_r2
    if r2 is None:
        return "Surrogate R^2 undefined: the model's predicted return is constant"
    where = (
        f"on the latest {result.holdout_rows} predictions, fitted on the earlier ones"
        if result.r2_kind == "holdout"
        else "in sample: too few predictions for a holdout"
    )
    line = f"Surrogate R^2 {r2:.3f} ({where})"
    if result.imputed:
        line += f"; {result.imputed} missing feature values imputed with the mean"
    if r2 < LOW_SURROGATE_R2:
        line += (
            f". Warning: the surrogate explains only {max(r2, 0.0) * 100:.0f} % of the model's "
            "predicted return: its attributions describe a linear approximation, not the model"
        )
    return line


@importance_app.command("show")
def show_command(
    ctx: typer.Context,
    top: int = typer.Option(
        20, "--top", callback=within(MAX_COUNT, 1), help="Show the N best-ranked features."
    ),
    model_version: str | None = typer.Option(
        None, "--model-version", "-m", help="Latest snapshot of this model version."
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help="Latest snapshot of this method: as stored (spearman_ic, shap_mean_abs, "
        "linear_surrogate, model) or as compute's --method names it (shap, ...).",
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """The latest feature-importance snapshot with rank changes and score sparklines.

    rank_change compares with the previous snapshot of the same model version, method and
    horizon (+2 = moved up two places); trend is the score over the last 8 snapshots; rank
    stability is the Spearman correlation of all ranks with that previous snapshot.

    p: two-sided p-value of the IC at the overlap-corrected effective sample size (n eff);
    q: Benjamini-Hochberg q-value over the snapshot's features; sig: q below
    [importance] fdr_level (0.05). Snapshots without p-values (old ones, other methods)
    show "-" and make no claim.

    Example:

        mlpred feature-importance show --top 20

        mlpred feature-importance show --model-version v2 --method spearman_ic --format json
    """
    from mlpred_cli.render.model_views import (
        rank_stability_line,
        show_feature_importance,
        significance_cells,
        significance_line,
    )
    from mlpred_cli.render.output import emit_object, emit_rows

    aliases = {choice.value: STORED_METHODS[choice] for choice in ImportanceMethod}
    stored = None if method is None else aliases.get(method, method)
    with cli_errors(), flag_errors():
        view = show_feature_importance(
            database_url(ctx), top=top, model_version=model_version, method=stored
        )
    if fmt is OutputFormat.json:
        emit_object(view.to_dict(), fmt)
        return
    if view.snapshot is None:
        stderr_console().print("No feature-importance snapshot matches")
        if fmt is OutputFormat.csv:
            emit_rows([], fmt, columns=SHOW_COLUMNS)
        return
    snapshot = view.snapshot
    title = (
        f"Feature importance: {snapshot['model_version'] or 'all versions'}, "
        f"{snapshot['method']}, {snapshot['horizon'] or '-'}, "
        f"{snapshot['calculated_at']:%Y-%m-%d %H:%M} UTC ({snapshot['history']} snapshots)"
    )
    if fmt is OutputFormat.csv:
        emit_rows(view.features, fmt, columns=SHOW_COLUMNS)
        return
    emit_rows(
        significance_cells(view.features),
        fmt,
        title=title,
        columns=table_columns(SHOW_COLUMNS, view.features),
        headers=IMPORTANCE_HEADERS,
        drop_first=IMPORTANCE_DROP_FIRST,
    )
    lines = [
        significance_line(
            snapshot["tested_features"], snapshot["significant_features"], snapshot["fdr_level"]
        ),
        rank_stability_line(snapshot["rank_stability"], snapshot["history"]),
    ]
    for line in lines:
        if line is not None:
            typer.echo(textwrap.fill(line, width=79, break_on_hyphens=False))


@app.command("compare-models", rich_help_panel="Models")
def compare_models_command(
    ctx: typer.Context,
    version_a: str = typer.Argument(..., help="Model version A (the baseline)."),
    version_b: str = typer.Argument(..., help="Model version B (the challenger)."),
    days: float = COMPARE_DAYS_OPTION,
    horizon: str = typer.Option("all", "--horizon", help="15m, 1h, 4h, 12h or all."),
    symbol: str | None = typer.Option(None, "--symbol", "-s", help="Only this symbol."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Compare two model versions per horizon, with a significance test and a verdict.

    Side by side: n, accuracy and directional hit rate (95% Wilson intervals), IC, MAE,
    calibration error (ECE), mean confidence, inference time p50, on the paired rows (both
    versions on the same symbol and candle; at least 30 pairs): McNemar's exact test on
    correctness and a bootstrap 95% interval of the IC difference. With fewer pairs no
    winner is named: the unpaired z-test is shown as confounded by what each version
    predicted. Each version's coverage (rows, symbols, first and last prediction) and the
    number of pairs are always shown. Significance level 0.05.

    Outcome windows that overlap (12h outcomes every 15 minutes) are accounted for: the
    verdict uses the overlap-corrected McNemar test and a block bootstrap of the IC
    difference; naive and corrected figures are shown side by side.

    Example:

        mlpred compare-models v1.4 v1.5 --days 30 --horizon 1h

        mlpred compare-models v1.4 v1.5 --symbol BTCUSDT --format json
    """
    if horizon != "all":
        try:
            check_horizons([horizon])
        except InputError as error:
            raise fail(f"--horizon: {error} or all", 2) from None
    from mlpred_cli.render.comparison import (
        coverage_rows,
        metric_rows,
        pairs_line,
        test_rows,
    )
    from mlpred_cli.render.model_views import compare_models
    from mlpred_cli.render.output import emit_object, emit_rows

    with cli_errors(), flag_errors():
        comparison = compare_models(
            database_url(ctx),
            version_a,
            version_b,
            days=days,
            symbol=symbol,
            horizons=None if horizon == "all" else [horizon],
        )
    if fmt is OutputFormat.json:
        emit_object(comparison.to_dict(), fmt)
        return
    if fmt is OutputFormat.csv:
        emit_rows(comparison.flat(), fmt)
        return
    emit_rows(
        coverage_rows(comparison),
        fmt,
        title=f"Coverage, {comparison.selection}",
        wrap=["symbols"],
    )
    typer.echo(pairs_line(comparison))
    emit_rows(
        metric_rows(comparison),
        fmt,
        title=f"{version_a} (A) vs {version_b} (B), {comparison.selection}",
    )
    emit_rows(test_rows(comparison), fmt, title="Tests (B - A)")
    for item in comparison.horizons:
        typer.echo(item.verdict)
