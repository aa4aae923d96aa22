"""The HTML form of ``mlpred report``: one self-contained, script-free document from the
report's content dict (charts inlined as SVG or PNG data URIs). Pure: no files besides the
packaged template, no database, no clock; the same content gives the same bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    UndefinedError,
    select_autoescape,
)

from mlpred_cli.config import HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.report import charts
from mlpred_cli.report import formatting as fmt
from mlpred_cli.report.charts import Image, ImageFormat

TEMPLATE = "report.html.j2"

#: The report's sections, in document order (each a ``<section id=...>``).
SECTION_IDS: tuple[str, ...] = (
    "header",
    "status",
    "accuracy",
    "ic",
    "calibration",
    "returns",
    "signals",
    "symbols",
    "versions",
    "monitoring",
    "input-health",
    "definitions",
)

#: What each status verdict says next to its colour.
VERDICT_LABELS: dict[str, str] = {
    "above": "above base rate",
    "within": "within base rate",
    "below": "below base rate",
    "unknown": "not enough data",
}

# top-level keys the template reads, with what an absent key means
_DEFAULTS: dict[str, Callable[[], Any]] = {
    "selection": dict,
    "overview": dict,
    "sources": dict,
    "signals": list,
    "horizons": list,
    "confidence_bins": list,
    "calibration": list,
    "symbols": list,
    "input_health": dict,
    "performance": dict,
    "maturity": list,
    "freshness": dict,
    "status": list,
    "daily": list,
    "ic_distribution": list,
    "monthly_ic": list,
    "reliability": list,
    "return_quintiles": list,
    "return_by_confidence": list,
    "signal_economics": dict,
    "symbol_table": list,
    "model_versions": dict,
    "monitoring": lambda: None,
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(fmt.FILTERS)
    return environment


def render_html(content: Mapping[str, Any]) -> str:
    """The report document for ``content`` (``ReportContent.to_dict()`` made JSON-able);
    ``content["report"]["images"]`` picks inline SVG (default) or PNG charts. Any figure
    may be None (shown as n/a); a key missing from a row raises ``InputError``."""
    view: dict[str, Any] = {key: content.get(key) or make() for key, make in _DEFAULTS.items()}
    report: Mapping[str, Any] = content.get("report") or {}
    view["report"] = report
    view["empty"] = bool(content.get("empty")) or not (view["overview"].get("predictions") or 0)
    images: ImageFormat = "png" if report.get("images") == "png" else "svg"
    base_rates = {
        str(row["horizon"]): row.get("base_rate")
        for row in [*view["horizons"], *view["status"]]
        if row.get("horizon") is not None
    }
    followed_at = _followed_at(view["signal_economics"], report)
    figures = {} if view["empty"] else _figures(view, base_rates, images, followed_at)
    template = _environment().get_template(TEMPLATE)
    try:
        return template.render(
            c=view,
            title=str(report.get("title") or "mlpred report"),
            horizons=HORIZONS,
            figures=figures,
            verdict_labels=VERDICT_LABELS,
            cell_class=lambda row: _cell_class(row, base_rates),
            monitoring_rows=_monitoring_rows(view["monitoring"]),
            followed_at=followed_at,
            recent=lambda part: _recent_phrase(part, report.get("window") or {}),
        )
    except UndefinedError as error:
        # the content does not follow the report schema: name the key, not a traceback
        raise InputError(f"report content is missing a figure: {error.message}") from error


def _followed_at(economics: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    """Where the signals were followed, for the text: ``at 1h`` when every signal has one
    primary horizon, else ``at each signal's primary horizon (1h: 80 %, 4h: 20 %)``."""
    mix = {
        horizon: int(economics["horizon_mix"][horizon])
        for horizon in HORIZONS
        if (economics.get("horizon_mix") or {}).get(horizon)
    }
    total = sum(mix.values())
    if len(mix) > 1:
        shares = ", ".join(f"{horizon}: {_share(n / total)}" for horizon, n in mix.items())
        return f"at each signal's primary horizon ({shares})"
    primary = next(iter(mix), None) or economics.get("primary_horizon")
    return f"at {fmt.text(primary or report.get('primary_horizon'))}"


def _share(fraction: float) -> str:
    # whole percent reads best in a sentence; a sliver keeps a decimal rather than "0 %"
    return fmt.percent(fraction, 0 if fraction >= 0.01 else 1)


def _recent_phrase(part: Mapping[str, Any] | None, window: Mapping[str, Any]) -> str:
    """A part of the window (the paired test's, mlpred check's) in words: its span (see
    ``formatting.span``) and ``the window's last 7 days`` or ``the whole window``."""
    if not part or part.get("since") is None or part.get("until") is None:
        return "the window"
    text = fmt.span(part["since"], part["until"])
    if part.get("since") == window.get("since") and part.get("until") == window.get("until"):
        return f"{text}, the whole window"
    start, end = fmt.utc_time(part["since"]), fmt.utc_time(part["until"])
    if start is None or end is None:
        return text
    length = fmt.days((end - start).total_seconds() / 86400)
    return f"{text}, the window's last {length}"


def _figures(
    view: Mapping[str, Any], base_rates: Mapping[str, Any], images: ImageFormat, followed_at: str
) -> dict[str, tuple[Image, str]]:
    """Each chart with data, by name, with its caption: the key figures in words."""
    economics = view["signal_economics"]
    figures: dict[str, tuple[Image, str]] = {}
    daily = view["daily"]
    if any(row.get("accuracy") is not None for row in daily):
        figures["accuracy"] = (
            charts.accuracy_chart(daily, base_rates, images),
            _accuracy_caption(view),
        )
    if any(row.get("ic_mean") is not None for row in daily):
        figures["daily_ic"] = (charts.daily_ic_chart(daily, images), _daily_ic_caption(view))
    if any(item.get("bins") for item in view["ic_distribution"]):
        figures["ic_distribution"] = (
            charts.ic_distribution_chart(view["ic_distribution"], images),
            _ic_distribution_caption(view["ic_distribution"]),
        )
    if any(row.get("ic_mean") is not None for row in view["monthly_ic"]):
        figures["monthly_ic"] = (
            charts.monthly_ic_chart(view["monthly_ic"], images),
            _monthly_caption(view["monthly_ic"]),
        )
    if any(b.get("n") for item in view["reliability"] for b in item.get("bins") or []):
        figures["reliability"] = (
            charts.reliability_chart(view["reliability"], images),
            _reliability_caption(view["calibration"]),
        )
    if view["confidence_bins"]:
        figures["confidence"] = (
            charts.confidence_chart(view["confidence_bins"], images),
            _confidence_caption(view["confidence_bins"]),
        )
    if any(item.get("quintiles") for item in view["return_quintiles"]):
        figures["quintiles"] = (
            charts.quintile_chart(view["return_quintiles"], images),
            _quintile_caption(view["return_quintiles"]),
        )
    if view["return_by_confidence"]:
        figures["confidence_returns"] = (
            charts.confidence_return_chart(view["return_by_confidence"], images),
            _confidence_return_caption(view["return_by_confidence"]),
        )
    cumulative = economics.get("cumulative") or []
    if cumulative:
        figures["cumulative"] = (
            charts.cumulative_chart(cumulative, followed_at, images),
            _cumulative_caption(economics, followed_at),
        )
    return figures


def _rows_of(rows: Sequence[Mapping[str, Any]], horizon: str) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("horizon") == horizon]


def _extreme(
    rows: Sequence[Mapping[str, Any]], key: str, *, lowest: bool
) -> Mapping[str, Any] | None:
    known = [row for row in rows if row.get(key) is not None]
    if not known:
        return None
    pick = min if lowest else max
    return pick(known, key=lambda row: float(row[key]))


def _accuracy_caption(view: Mapping[str, Any]) -> str:
    summaries = {row.get("horizon"): row for row in [*view["horizons"], *view["status"]]}
    parts = []
    for horizon in HORIZONS:
        days = [row for row in _rows_of(view["daily"], horizon) if row.get("accuracy") is not None]
        summary = summaries.get(horizon)
        if not days or summary is None:
            continue
        text = (
            f"{horizon} accuracy {fmt.percent(summary.get('accuracy'))} "
            f"({fmt.interval(summary.get('accuracy_low'), summary.get('accuracy_high'))}) "
            f"over {len(days)} days"
        )
        lowest = _extreme(days, "accuracy", lowest=True)
        if lowest is not None:
            text += f"; lowest day {lowest['day']} at {fmt.percent(lowest['accuracy'])}"
        parts.append(text + f"; base rate {fmt.percent(summary.get('base_rate'))}")
    return ". ".join(parts) + "." if parts else "No daily accuracy in the window."


def _daily_ic_caption(view: Mapping[str, Any]) -> str:
    parts = []
    for row in view["horizons"]:
        if row.get("daily_ic_mean") is None:
            continue
        days = [d for d in _rows_of(view["daily"], row["horizon"]) if d.get("ic_mean") is not None]
        worst = _extreme(days, "ic_mean", lowest=True)
        text = (
            f"{row['horizon']} mean daily IC {fmt.coefficient(row['daily_ic_mean'])} "
            f"({fmt.t_statistic(row.get('daily_ic_t'))}, "
            f"{fmt.count(row.get('daily_ic_days'))} symbol-day ICs)"
        )
        if worst is not None:
            text += f", weakest day {worst['day']} at {fmt.coefficient(worst['ic_mean'])}"
        parts.append(text)
    return "; ".join(parts) + "." if parts else "No daily IC in the window."


def _ic_distribution_caption(distributions: Sequence[Mapping[str, Any]]) -> str:
    parts = [
        f"{item.get('horizon')}: {fmt.count(item.get('n'))} symbol-day ICs, median "
        f"{fmt.coefficient(item.get('median'))}, {fmt.percent(item.get('share_positive'))} positive"
        for item in distributions
        if item.get("bins")
    ]
    return "; ".join(parts) + "."


def _monthly_caption(monthly: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for horizon in HORIZONS:
        rows = _rows_of(monthly, horizon)
        best = _extreme(rows, "ic_mean", lowest=False)
        worst = _extreme(rows, "ic_mean", lowest=True)
        if best is None or worst is None:
            continue
        if best is worst:
            parts.append(f"{horizon} {_month_ic(best)}")
        else:
            parts.append(f"{horizon} best {_month_ic(best)}, worst {_month_ic(worst)}")
    return "Mean daily IC per month: " + "; ".join(parts) + "."


def _month_ic(row: Mapping[str, Any]) -> str:
    # a partial month rests on few ICs: say how many, so its extreme is read with care
    return (
        f"{row['month']} {fmt.coefficient(row['ic_mean'])} "
        f"({fmt.count(row.get('ic_days'))} symbol-days)"
    )


def _reliability_caption(calibration: Sequence[Mapping[str, Any]]) -> str:
    parts = [
        f"{row.get('horizon')} ECE {fmt.percent(row.get('ece'))}, "
        f"Brier {fmt.number(row.get('brier'))}"
        for row in calibration
    ]
    text = "Points on the diagonal are calibrated; marker area grows with the bin's predictions."
    return (" ".join(["; ".join(parts) + ".", text])) if parts else text


def _confidence_caption(bins: Sequence[Mapping[str, Any]]) -> str:
    largest = _extreme(bins, "count", lowest=False)
    total = sum(int(row.get("count") or 0) for row in bins)
    text = f"{fmt.count(total)} predictions in {len(bins)} confidence bins"
    if largest is not None and total:
        text += (
            f"; the largest is {largest.get('bin')} with {fmt.count(largest['count'])} "
            f"({fmt.percent(largest['count'] / total)})"
        )
    top = next((row for row in reversed(bins) if row.get("accuracy") is not None), None)
    if top is not None:
        text += (
            f"; accuracy in the highest scored bin {top.get('bin')} is "
            f"{fmt.percent(top['accuracy'])}"
        )
    return text + "."


def _quintile_caption(quintiles: Sequence[Mapping[str, Any]]) -> str:
    parts = [
        f"{item.get('horizon')} {fmt.basis_points(item.get('spread'))}"
        for item in quintiles
        if item.get("quintiles")
    ]
    return (
        "Realized return of the top minus the bottom quintile (Q5 - Q1): " + ", ".join(parts) + "."
    )


def _confidence_return_caption(rows: Sequence[Mapping[str, Any]]) -> str:
    known = [row for row in rows if row.get("mean_return") is not None]
    if not known:
        return "No signal with an outcome in any confidence bin."
    first, last = known[0], known[-1]
    best = _extreme(known, "mean_return", lowest=False)
    text = (
        f"Mean return of following a LONG or SHORT signal, before costs: "
        f"{fmt.basis_points(first['mean_return'])} in the lowest bin {first.get('bin')}, "
        f"{fmt.basis_points(last['mean_return'])} in the highest {last.get('bin')}"
    )
    if best is not None and best is not first and best is not last:
        text += f"; best {best.get('bin')} at {fmt.basis_points(best['mean_return'])}"
    return text + "."


def _cumulative_caption(economics: Mapping[str, Any], followed_at: str) -> str:
    days = economics.get("cumulative") or []
    worst = _extreme(days, "mean_return", lowest=True)
    text = (
        f"Following every LONG/SHORT signal {followed_at} returned "
        f"{fmt.return_percent(economics.get('total_return'))} over {len(days)} days before costs "
        "(running sum of the daily mean return)"
    )
    if worst is not None:
        text += f"; worst day {worst['day']} at {fmt.basis_points(worst['mean_return'])}"
    return text + "."


def _cell_class(row: Mapping[str, Any], base_rates: Mapping[str, Any]) -> str:
    """The colour class of a symbol's accuracy cell: its interval against the horizon's base
    rate (50 % when unknown)."""
    low, high = row.get("accuracy_low"), row.get("accuracy_high")
    if row.get("accuracy") is None or low is None or high is None:
        return "cell-na"
    base = base_rates.get(str(row.get("horizon")))
    reference = 0.5 if base is None else float(base)
    if low > reference:
        return "cell-above"
    if high < reference:
        return "cell-below"
    return "cell-within"


def _monitoring_rows(monitoring: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The results worth a reader's time: everything that is not OK."""
    if not monitoring:
        return []
    return [row for row in monitoring.get("results") or [] if row.get("severity") != "OK"]
