"""Model commands: ``feature-importance compute|show`` and ``compare-models``."""

from __future__ import annotations

from pathlib import Path

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

importance_app = typer.Typer(
    help="Which input features matter, and how that changes over time.", no_args_is_help=True
)
app.add_typer(importance_app, name="feature-importance", rich_help_panel="Models")

IMPORTANCE_COLUMNS = [
    "importance_rank",
    "feature_name",
    "importance_score",
    "correlation_with_returns",
    "usage_count",
]
#: Short table headers (JSON and CSV keep the column names).
IMPORTANCE_HEADERS = {
    "importance_rank": "rank",
    "feature_name": "feature",
    "importance_score": "score",
    "correlation_with_returns": "IC",
    "usage_count": "used",
    "rank_change": "rank chg",
}
SHOW_COLUMNS = [
    "rank",
    "feature_name",
    "importance_score",
    "correlation_with_returns",
    "usage_count",
    "rank_change",
    "trend",
]

#: ``compare-models --days``.
COMPARE_DAYS_OPTION = typer.Option(
    30.0,
    "--days",
    "-d",
    callback=within(MAX_DAYS),
    help="Compare over the last N days.",
)


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
    top: int = typer.Option(
        20, "--top", callback=within(MAX_COUNT, 1), help="Features to print (all are written)."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Score every feature by its Spearman IC with the realized return and save a snapshot.

    Uses predictions logged with store_features=True whose outcome at --horizon is
    backfilled. importance_score = |IC|; usage_count = predictions where the feature was
    finite and non-zero; method spearman_ic. Needs at least 30 such predictions.

    Example:

        mlpred feature-importance compute --days 30 --horizon 1h

        mlpred feature-importance compute --model-version v2 --feature-names features.txt
    """
    from mlpred_cli.analysis.feature_importance import compute_feature_importance
    from mlpred_cli.render.output import emit_rows

    with cli_errors(), flag_errors():
        result = compute_feature_importance(
            database_url(ctx),
            days=days,
            horizon=horizon,
            model_version=model_version,
            feature_names=feature_names,
        )
    stderr_console().print(
        f"Wrote {result.written} features ({result.predictions} predictions, horizon "
        f"{result.horizon}, model version {result.model_version or 'all'}"
        + (f"; {result.skipped} skipped: other vector length" if result.skipped else "")
        + ")"
    )
    emit_rows(
        result.ranked()[:top],
        fmt,
        title="Feature importance (spearman_ic)",
        columns=IMPORTANCE_COLUMNS,
        headers=IMPORTANCE_HEADERS,
    )


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
        None, "--method", help="Latest snapshot of this method (e.g. spearman_ic, model)."
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """The latest feature-importance snapshot with rank changes and score sparklines.

    rank_change compares with the previous snapshot of the same model version, method and
    horizon (+2 = moved up two places); trend is the score over the last 8 snapshots.

    Example:

        mlpred feature-importance show --top 20

        mlpred feature-importance show --model-version v2 --method spearman_ic --format json
    """
    from mlpred_cli.render.model_views import show_feature_importance
    from mlpred_cli.render.output import emit_object, emit_rows

    with cli_errors(), flag_errors():
        view = show_feature_importance(
            database_url(ctx), top=top, model_version=model_version, method=method
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
    emit_rows(view.features, fmt, title=title, columns=SHOW_COLUMNS, headers=IMPORTANCE_HEADERS)


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
