"""Rendering of the analysis commands: the ``analyze`` report's sections and the compact
prediction table of ``high-confidence`` / ``recent``. All output goes through ``emit_rows``
/ ``emit_object``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from mlpred_cli.analysis.report import AnalysisReport
from mlpred_cli.config import HORIZONS
from mlpred_cli.render.output import emit_object, emit_rows
from mlpred_cli.render.output_format import OutputFormat

#: Long-format columns of ``analyze --format csv``.
REPORT_CSV_COLUMNS = ("section", "item", "metric", "value")

#: The key that names a row in each list section of the report.
_ROW_KEYS = {
    "signals": "signal_type",
    "horizons": "horizon",
    "confidence_bins": "bin",
    "calibration": "horizon",
    "symbols": "symbol",
}

_OBJECT_SECTIONS = ("overview", "input_health", "performance")


def report_long_rows(report: AnalysisReport) -> list[dict[str, Any]]:
    """The report as ``section, item, metric, value`` rows (``item`` empty for the
    one-object sections); lists such as the overview's symbols are joined with ``;``."""
    document = report.to_dict()
    rows: list[dict[str, Any]] = []
    for section in _OBJECT_SECTIONS:
        for metric, value in document[section].items():
            if isinstance(value, Mapping):  # input_health's drift: one item per statistic
                for item, figures in value.items():
                    rows += [
                        {"section": section, "item": f"{metric}:{item}", "metric": key,
                         "value": _plain_cell(cell)}
                        for key, cell in figures.items()
                    ]  # fmt: skip
                continue
            rows.append(
                {"section": section, "item": "", "metric": metric, "value": _plain_cell(value)}
            )
    for section, key in _ROW_KEYS.items():
        for entry in document[section]:
            for metric, value in entry.items():
                if metric != key:
                    rows.append(
                        {"section": section, "item": entry[key], "metric": metric, "value": value}
                    )
    return rows


def _plain_cell(value: Any) -> Any:
    return ";".join(map(str, value)) if isinstance(value, list | tuple) else value


def _field_table(title: str, payload: Mapping[str, Any], out: TextIO | None) -> None:
    rows = [
        {"field": key, "value": ", ".join(map(str, value)) if isinstance(value, list) else value}
        for key, value in payload.items()
        if not isinstance(value, Mapping)
    ]
    table = OutputFormat.table
    emit_rows(rows, table, title=title, columns=["field", "value"], wrap=["value"], out=out)


def _drift_rows(drift: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per statistic: sizes and effective sizes, PSI against its null threshold,
    its p-value, scaled Wasserstein (reference sds) against its bootstrap threshold."""
    rows = []
    for stat, test in drift.items():
        if test.get("verdict") == "unknown":
            rows.append({"statistic": stat, "verdict": "unknown", "reason": test["reason"]})
            continue
        wasserstein = test["wasserstein"]
        limit = test["wasserstein_threshold"]
        rows.append(
            {
                "statistic": stat,
                "n/m": f"{test['n']}/{test['m']}",
                "eff": f"{test['n_eff']:.0f}/{test['m_eff']:.0f}",
                "PSI/limit": f"{test['psi']:.2g}/{test['psi_threshold']:.2g}",
                "p": f"{test['p_value']:.1g}",
                "W/limit": "-" if wasserstein is None else f"{wasserstein:.2g}/{limit:.2g}",
                "verdict": test["verdict"],
            }
        )
    if all("reason" in row for row in rows):
        return rows  # nothing judged: say why
    # mixed: unknown rows get the judged rows' columns, blank (the JSON has the reason)
    blank = dict.fromkeys(next(row for row in rows if "reason" not in row), "-")
    return [
        {**blank, "statistic": row["statistic"], "verdict": "unknown"} if "reason" in row else row
        for row in rows
    ]


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def interval_cell(value: Any, low: Any, high: Any, n: Any = None) -> str:
    """``62.5% (40.9-80.3) n=8``; ``-`` when unknown."""
    if value is None:
        return "-" if n is None else f"- n={n}"
    text = f"{_pct(value)} ({100 * low:.1f}-{100 * high:.1f})"
    return text if n is None else f"{text} n={n}"


def range_cell(low: Any, high: Any) -> str:
    """``40.9-80.3`` (percent); ``-`` when unknown."""
    return "-" if low is None or high is None else f"{100 * low:.1f}-{100 * high:.1f}"


def effective_cell(value: Any) -> str:
    """An effective sample size, rounded; ``-`` when unknown."""
    return "-" if value is None else f"{value:,.0f}"


def _p_cell(value: Any) -> str:
    return "-" if value is None else f"{value:.2g}"


def _horizon_rows(horizons: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "horizon": h["horizon"],
            "n": h["n"],
            "n eff": effective_cell(h.get("n_effective")),
            "accuracy (naive 95%)": interval_cell(
                h["accuracy"], h["accuracy_low"], h["accuracy_high"]
            ),
            "overlap 95%": range_cell(
                h.get("accuracy_overlap_low"), h.get("accuracy_overlap_high")
            ),
            "hit rate (naive 95%)": interval_cell(
                h["hit_rate"], h["hit_rate_low"], h["hit_rate_high"], h["n_directional"]
            ),
            "hit overlap 95%": range_cell(
                h.get("hit_rate_overlap_low"), h.get("hit_rate_overlap_high")
            ),
            "base rate": _pct(h["base_rate"]),
            "MAE": h["mae"],
            "RMSE": h["rmse"],
            "IC": h["ic"],
            "IC p overlap": _p_cell(h.get("ic_p_value_overlap")),
            "IC n": h["ic_n"],
        }
        for h in horizons
    ]


def _bin_rows(bins: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "confidence": b["bin"],
            "count": b["count"],
            "mean conf": b["avg_confidence"],
            "LONG/SHORT/NEUTRAL": "-"
            if b["count"] == 0
            else "/".join(_pct(b[f"share_{kind}"]) for kind in ("LONG", "SHORT", "NEUTRAL")),
            "primary accuracy (95% CI)": interval_cell(
                b["accuracy"], b["accuracy_low"], b["accuracy_high"], b["n_primary"]
            ),
        }
        for b in bins
    ]


def _symbol_rows(symbols: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entry in symbols:
        row: dict[str, Any] = {
            "symbol": entry["symbol"],
            "predictions": entry["predictions"],
            "mean conf": entry["avg_confidence"],
        }
        for horizon in HORIZONS:
            ic = entry[f"ic_{horizon}"]
            ic_text = "" if ic is None else f" IC {ic:+.3f}"
            row[horizon] = (
                f"{_pct(entry[f'accuracy_{horizon}'])} n={entry[f'n_{horizon}']}{ic_text}"
            )
        rows.append(row)
    return rows


def accuracy_table_rows(
    records: Sequence[Mapping[str, Any]], by: str, horizons: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of ``mlpred accuracy`` for the table format: one interval cell per horizon."""
    rows = []
    for record in records:
        row: dict[str, Any] = {
            by: record[by],
            "total": record["total"],
            "with outcomes": record["n_outcomes"],
            "mean conf": record["avg_confidence"],
        }
        for horizon in horizons:
            row[horizon] = accuracy_cell(record, horizon)
        rows.append(row)
    return rows


def accuracy_cell(record: Mapping[str, Any], horizon: str) -> str:
    """``62.5% (30.1-90.2) n=8 eff=3``: the interval corrected for overlapping outcome
    windows at the effective n; ``62.5% (40.9-80.3) n=8 naive`` when only the naive Wilson
    interval is known."""
    accuracy, n = record[f"accuracy_{horizon}"], record[f"n_{horizon}"]
    effective = record.get(f"n_{horizon}_effective")
    if accuracy is None or effective is None:
        text = interval_cell(
            accuracy, record[f"accuracy_{horizon}_low"], record[f"accuracy_{horizon}_high"], n
        )
        return text if accuracy is None else f"{text} naive"
    low = record[f"accuracy_{horizon}_overlap_low"]
    high = record[f"accuracy_{horizon}_overlap_high"]
    return f"{interval_cell(accuracy, low, high, n)} eff={effective_cell(effective)}"


def render_accuracy(
    records: Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    by: str,
    horizons: Sequence[str],
    out: TextIO | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> None:
    """JSON/CSV: the accuracy records as they are (``columns``: their order, also the header
    of an empty CSV). Table: accuracy (95% CI) n per horizon."""
    if fmt is not OutputFormat.table:
        if columns is None:
            columns = list(records[0]) if records else None
        emit_rows(records, fmt, columns=columns, out=out)
        return
    emit_rows(
        accuracy_table_rows(records, by, horizons),
        fmt,
        title=(
            f"Accuracy by {by} (95% Wilson intervals at the effective n (eff) of overlapping "
            "outcome windows; naive: treating rows as independent)"
        ),
        drop_first=("mean conf", "with outcomes"),
        out=out,
    )


def render_report(report: AnalysisReport, fmt: OutputFormat, out: TextIO | None = None) -> None:
    """Print the report: JSON document, long-format CSV, or one table per section."""
    if fmt is OutputFormat.json:
        emit_object(report.to_dict(), fmt, out=out)
        return
    if fmt is OutputFormat.csv:
        emit_rows(report_long_rows(report), fmt, columns=REPORT_CSV_COLUMNS, out=out)
        return
    _field_table(f"Overview ({report.selection['description']})", report.overview, out)
    emit_rows(report.signals, fmt, title="Signal distribution", out=out)
    emit_rows(
        _horizon_rows(report.horizons),
        fmt,
        title=(
            "Accuracy per horizon (naive: rows as if independent; overlap: at the effective "
            "n of overlapping outcome windows; base rate: always the most common direction)"
        ),
        drop_first=("IC n", "RMSE", "MAE", "hit overlap 95%", "base rate", "hit rate (naive 95%)"),
        out=out,
    )
    emit_rows(
        _bin_rows(report.confidence_bins),
        fmt,
        title="Signal confidence bins (accuracy at each row's primary horizon)",
        drop_first=("mean conf", "LONG/SHORT/NEUTRAL"),
        out=out,
    )
    emit_rows(report.calibration, fmt, title="Calibration of direction confidence", out=out)
    emit_rows(
        _symbol_rows(report.symbols),
        fmt,
        title="Per symbol (accuracy n IC)",
        drop_first=("mean conf", "predictions"),
        out=out,
    )
    _field_table("Input health", report.input_health, out)
    if report.input_health.get("drift"):
        emit_rows(
            _drift_rows(report.input_health["drift"]),
            fmt,
            title="Input drift, first vs second half (null thresholds at these sizes)",
            out=out,
        )
    _field_table("Performance", report.performance, out)


_SHORT_DIRECTION = {"LONG": "L", "SHORT": "S", "NEUTRAL": "N"}


def _outcome_cell(record: Mapping[str, Any], horizon: str) -> str:
    predicted = _SHORT_DIRECTION.get(record.get(f"direction_{horizon}") or "", "-")
    actual = record.get(f"actual_direction_{horizon}")
    if actual is None:
        return f"{predicted}→?"
    mark = "✓" if record.get(f"accuracy_{horizon}") else "✗"
    return f"{predicted}→{_SHORT_DIRECTION.get(actual, actual)} {mark}"


def render_predictions(
    records: Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    columns: Sequence[str],
    *,
    title: str,
    out: TextIO | None = None,
) -> None:
    """JSON/CSV: every column. Table: the signal plus one ``predicted→actual`` cell per
    horizon (L/S/N; ✓ right, ✗ wrong, ? not backfilled yet)."""
    if fmt is not OutputFormat.table:
        emit_rows(records, fmt, columns=columns, out=out)
        return
    rows = []
    for record in records:
        moment = record.get("datetime")
        rows.append(
            {
                "time (UTC)": moment.strftime("%Y-%m-%d %H:%M") if moment is not None else None,
                "symbol": record.get("symbol"),
                "model": record.get("model_version"),
                "signal": record.get("signal_type"),
                "conf": record.get("signal_confidence"),
                "tf": record.get("signal_timeframe"),
                **{horizon: _outcome_cell(record, horizon) for horizon in HORIZONS},
            }
        )
    emit_rows(
        rows,
        fmt,
        title=f"{title} (predicted→actual: ✓ right, ✗ wrong, ? pending)",
        drop_first=("model", "tf", "conf"),
        out=out,
    )
