"""Rendering of the analysis commands: the ``analyze`` report's sections and the compact
prediction table of ``high-confidence`` / ``recent``. All output goes through ``emit_rows``
/ ``emit_object``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from mlpred_cli.analysis.report import AnalysisReport
from mlpred_cli.config import HORIZONS
from mlpred_cli.render.output import OutputFormat, emit_object, emit_rows

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
            plain = ";".join(map(str, value)) if isinstance(value, list) else value
            rows.append({"section": section, "item": "", "metric": metric, "value": plain})
    for section, key in _ROW_KEYS.items():
        for entry in document[section]:
            for metric, value in entry.items():
                if metric != key:
                    rows.append(
                        {"section": section, "item": entry[key], "metric": metric, "value": value}
                    )
    return rows


def _field_table(title: str, payload: Mapping[str, Any], out: TextIO | None) -> None:
    rows = [
        {"field": key, "value": ", ".join(map(str, value)) if isinstance(value, list) else value}
        for key, value in payload.items()
    ]
    emit_rows(rows, OutputFormat.table, title=title, columns=["field", "value"], out=out)


def render_report(report: AnalysisReport, fmt: OutputFormat, out: TextIO | None = None) -> None:
    """Print the report: JSON document, long-format CSV, or one table per section."""
    if fmt is OutputFormat.json:
        emit_object(report.to_dict(), fmt, out=out)
        return
    if fmt is OutputFormat.csv:
        emit_rows(report_long_rows(report), fmt, columns=REPORT_CSV_COLUMNS, out=out)
        return
    _field_table(f"Overview ({report.selection['description']})", report.overview, out)
    titles = {
        "signals": "Signal distribution",
        "horizons": "Accuracy per horizon (95% Wilson intervals; base rate = constant guess)",
        "confidence_bins": "Confidence bins (accuracy of the primary horizon)",
        "calibration": "Calibration of direction confidence",
        "symbols": "Per symbol",
    }
    document = report.to_dict()
    for section, title in titles.items():
        if document[section]:
            emit_rows(document[section], fmt, title=title, out=out)
    _field_table("Input health", report.input_health, out)
    _field_table("Performance", report.performance, out)


def _outcome_cell(record: Mapping[str, Any], horizon: str) -> str:
    predicted = record.get(f"direction_{horizon}") or "-"
    actual = record.get(f"actual_direction_{horizon}")
    if actual is None:
        return f"{predicted} / ?"
    mark = "ok" if record.get(f"accuracy_{horizon}") else "miss"
    return f"{predicted} / {actual} {mark}"


_TABLE_COLUMNS = (
    "datetime",
    "symbol",
    "model_version",
    "signal_type",
    "signal_confidence",
    "signal_timeframe",
    "close_price",
)


def render_predictions(
    records: Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    columns: Sequence[str],
    *,
    title: str,
    out: TextIO | None = None,
) -> None:
    """JSON/CSV: every column. Table: the signal plus one ``predicted / actual`` cell per
    horizon (``?`` until the outcome is backfilled)."""
    if fmt is not OutputFormat.table:
        emit_rows(records, fmt, columns=columns, out=out)
        return
    rows = []
    for record in records:
        row = {name: record.get(name) for name in _TABLE_COLUMNS}
        row.update({horizon: _outcome_cell(record, horizon) for horizon in HORIZONS})
        rows.append(row)
    emit_rows(rows, fmt, title=title, columns=[*_TABLE_COLUMNS, *HORIZONS], out=out)
