"""What the logger prints: a rich panel per prediction (DEBUG) or a line per batch (INFO).

Rendering happens on the writer thread, never on the caller's path. Output goes to stderr;
rich honours ``NO_COLOR`` and drops styling when stderr is not a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from mlpred_cli.config import HORIZONS
from mlpred_cli.derive.feature_stats import format_feature_hash
from mlpred_cli.store.prediction_row import WRITE_COLUMNS, Row

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


def _fmt(value: Any, spec: str = ".4f", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:{spec}}{suffix}"
    return f"{value}{suffix}"


def _section(title: str, pairs: Sequence[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row(f"[bold]{title}[/]", "")
    for label, value in pairs:
        table.add_row(f"  {label}", value)
    return table


def prediction_panel(row: Row) -> Panel:
    """The DEBUG panel of one saved prediction row."""
    v = dict(zip(WRITE_COLUMNS, row, strict=True))
    hash_text = "-" if v["features_hash"] is None else format_feature_hash(v["features_hash"])
    features = _section(
        "INPUT FEATURES",
        [
            ("count", _fmt(v["features_count"])),
            ("hash", hash_text),
            ("NaN / inf", f"{_fmt(v['nan_count'])} / {_fmt(v['inf_count'])}"),
            ("zero variance", _fmt(v["zero_variance_count"])),
            ("mean / std", f"{_fmt(v['features_mean'])} / {_fmt(v['features_std'])}"),
        ],
    )
    indicators = _section(
        "KEY INDICATORS",
        [
            ("close", _fmt(v["close_price"], ",.4f")),
            ("volume", _fmt(v["volume"], ",.2f")),
            ("RSI", _fmt(v["rsi"], ".2f")),
            ("MACD", _fmt(v["macd"], ".4f")),
            ("BB position", _fmt(v["bb_position"], ".3f")),
            ("ATR %", _fmt(v["atr_pct"], ".3f", "%")),
        ],
    )
    returns = _section(
        "PREDICTED RETURNS",
        [
            (
                horizon,
                f"{_fmt(v[f'predicted_return_{horizon}'], '+.4%')}  "
                f"{_fmt(v[f'direction_{horizon}'])}  "
                f"({_fmt(v[f'direction_{horizon}_confidence'], '.1%')})",
            )
            for horizon in HORIZONS
        ],
    )
    risk = _section(
        "RISK METRICS",
        [
            ("risk score", _fmt(v["risk_score"], ".3f")),
            ("max drawdown", _fmt(v["max_drawdown_predicted"], "+.3%")),
            ("max rally", _fmt(v["max_rally_predicted"], "+.3%")),
        ],
    )
    signal = _section(
        "FINAL SIGNAL",
        [
            ("type", _fmt(v["signal_type"])),
            ("confidence", _fmt(v["signal_confidence"], ".1%")),
            ("primary timeframe", _fmt(v["signal_timeframe"])),
            ("inference", _fmt(v["inference_time_ms"], ".2f", " ms")),
        ],
    )
    title = f"{v['symbol']}  {v['datetime']:%Y-%m-%d %H:%M} UTC  model {v['model_version']}"
    duplicate = "  [yellow](duplicate features)[/]" if v["is_duplicate"] else ""
    return Panel(Group(features, indicators, returns, risk, signal), title=title + duplicate)


class PredictionReporter:
    """Prints according to ``LOG_LEVEL``: DEBUG panels, INFO batch lines, else nothing."""

    def __init__(self, level: str, console: Console | None = None) -> None:
        self.level = _LEVELS.get(level.upper(), 30)
        self.console = console or Console(stderr=True)

    @property
    def active(self) -> bool:
        """True when anything would be printed at this level."""
        return self.level <= _LEVELS["INFO"]

    def predictions(self, rows: Sequence[Row]) -> None:
        """One panel per row at DEBUG."""
        if self.level <= _LEVELS["DEBUG"]:
            for row in rows:
                self.console.print(prediction_panel(row))

    def batch_saved(self, rows: int, seconds: float) -> None:
        """One line per saved batch at INFO and DEBUG."""
        if self.level <= _LEVELS["INFO"]:
            self.console.print(f"mlpred: saved {rows} predictions in {seconds * 1000:.1f} ms")
