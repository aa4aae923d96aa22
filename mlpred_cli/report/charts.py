"""The charts of the HTML report, drawn with matplotlib's object API (``Figure``, never
pyplot: no global figure registry, safe from threads) and exported as inline SVG or a PNG
data URI. Output is deterministic: fixed hash salt, no dates or creator in the metadata,
and nothing in the markup that points outside the document."""

from __future__ import annotations

import base64
import io
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter
from PIL import Image as PILImage

from mlpred_cli.config import HORIZONS

ImageFormat = Literal["svg", "png"]

#: Okabe-Ito colours (safe for the common colour-vision deficiencies), one per horizon.
HORIZON_COLOURS: dict[str, str] = {
    "15m": "#0072B2",
    "1h": "#E69F00",
    "4h": "#009E73",
    "12h": "#CC79A7",
}
ACCURACY_COLOUR = "#0072B2"
HIT_RATE_COLOUR = "#D55E00"
POSITIVE_COLOUR = "#0072B2"
NEGATIVE_COLOUR = "#D55E00"
REFERENCE_COLOUR = "#444444"
#: Diverging, colour-blind safe; centred on 0 by a symmetric norm.
DIVERGING_COLORMAP = "PuOr"

WIDTH_IN = 8.0
#: The CSS width a chart is shown at: the report's content column at its widest (60rem less
#: the body's padding); the ``<img>`` carries it so the layout does not jump while decoding.
DISPLAY_WIDTH_PX = 920
#: Device pixels per CSS pixel of a PNG chart, so HiDPI screens get a sharp image.
PNG_SCALE = 2.0
#: Rendering resolution that gives a PNG ``PNG_SCALE`` times the display width.
PNG_DPI = DISPLAY_WIDTH_PX * PNG_SCALE / WIDTH_IN
#: Colours kept in a PNG chart: flat charts need few, and a palette image is a third the size.
PNG_COLOURS = 256

# typed loosely: matplotlib's stubs accept only a literal mapping of known keys
_STYLE: Any = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "lines.linewidth": 1.5,
    "path.simplify": True,
    "image.composite_image": True,
}
_SVG_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PNG_METADATA: dict[str, Any] = {"Software": None}

# rc_context changes the process-wide rcParams for its duration: one chart at a time, each
# from matplotlib's defaults
_DRAWING = threading.Lock()


@dataclass(frozen=True)
class Image:
    """One chart as markup ready to inline: an ``<svg>`` element or an ``<img>`` with a PNG
    data URI. ``label`` is its accessible name (``aria-label`` / ``alt``). Jinja inlines it
    unescaped through ``__html__``."""

    markup: str
    label: str
    format: ImageFormat

    def __html__(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


def _defaults() -> dict[str, Any]:
    """matplotlib's own defaults, so that a user's matplotlibrc or a caller's rcParams do not
    change the charts; the backend stays as it is (rc_context would not restore it)."""
    return {key: value for key, value in matplotlib.rcParamsDefault.items() if key != "backend"}


@contextmanager
def _drawing(name: str) -> Iterator[None]:
    # a salt per chart keeps the ids of clip paths and markers unique across the page
    style = {**_defaults(), **_STYLE, "svg.hashsalt": f"mlpred-{name}"}
    with _DRAWING, matplotlib.rc_context(style):
        yield


def _svg(figure: Figure, label: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    # inline SVG in HTML5 needs no namespaces; the parser maps xlink:href itself
    svg = re.sub(r'\s+xmlns(?::xlink)?="[^"]*"', "", svg)
    # group ids (figure_1, axes_1...) repeat in every chart and nothing refers to them
    svg = re.sub(r'(<g\b[^>]*?)\s+id="[^"]*"', r"\1", svg)
    svg = svg.replace("<svg", f'<svg role="img" aria-label="{escape(label)}"', 1)
    return svg.strip() + "\n"


def _png(figure: Figure, label: str) -> str:
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png", dpi=PNG_DPI, metadata=_PNG_METADATA)
    rendered.seek(0)
    with PILImage.open(rendered) as image:
        palette = image.convert("RGB").quantize(PNG_COLOURS, method=PILImage.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    palette.save(buffer, format="png", optimize=True)
    inches_wide, inches_high = figure.get_size_inches()
    # the attributes are the CSS size; the bitmap behind them is PNG_SCALE times larger
    width = DISPLAY_WIDTH_PX
    height = round(DISPLAY_WIDTH_PX * inches_high / inches_wide)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{escape(label)}" '
        f'width="{width}" height="{height}">\n'
    )


def _export(figure: Figure, label: str, images: ImageFormat) -> Image:
    markup = _png(figure, label) if images == "png" else _svg(figure, label)
    return Image(markup=markup, label=label, format=images)


def _figure(height: float) -> Figure:
    return Figure(figsize=(WIDTH_IN, height), layout="constrained")


def _floats(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """The ``key`` of each row as floats, NaN for a missing figure (matplotlib leaves a gap)."""
    return np.array(
        [np.nan if row.get(key) is None else float(row[key]) for row in rows], dtype=float
    )


def _days(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each row's day as its proleptic ordinal: plain numbers, labelled by ``_date_axis``."""
    return np.array(
        [date.fromisoformat(str(row["day"])[:10]).toordinal() for row in rows], dtype=float
    )


def _by_horizon(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {horizon: [] for horizon in HORIZONS}
    for row in rows:
        grouped.setdefault(str(row.get("horizon")), []).append(row)
    return grouped


def _panels(figure: Figure, *, sharey: bool = True) -> list[Axes]:
    grid = figure.subplots(2, 2, sharex=False, sharey=sharey, squeeze=False)
    return list(grid.flat)


def _no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=REFERENCE_COLOUR
    )


def _date_axis(ax: Axes, days: np.ndarray) -> None:
    """At most six day ticks, evenly spaced from the first day, labelled ``03 Nov``."""
    if days.size == 0:
        return
    first, last = int(days.min()), int(days.max())
    step = max(1, -(-(last - first) // 5))
    ax.set_xticks(np.arange(first, last + 1, step, dtype=float))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _: date.fromordinal(round(value)).strftime("%d %b"))
    )


def _legend(figure: Figure, handles: Sequence[Any]) -> None:
    """One legend row under the panels, frameless, a column per entry."""
    figure.legend(
        handles=list(handles), loc="outside lower center", ncols=len(handles), frameon=False
    )


def _marker(colour: str, label: str) -> Line2D:
    """A legend entry for points (no line)."""
    return Line2D([], [], color=colour, marker="o", linestyle="none", label=label)


def _bp_axis(ax: Axes) -> None:
    """Y ticks (values already in basis points) as ``+12 bp``, with as many decimals as the
    tick step needs so that small ranges do not repeat a label."""

    def label(value: float, _: Any) -> str:
        ticks = np.diff(ax.yaxis.get_majorticklocs())
        step = float(np.abs(ticks).min()) if ticks.size else 1.0
        # the fewest decimals that show the step exactly (0.25 bp needs two)
        digits = next((d for d in range(3) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 3)
        text = f"{value:+.{digits}f}"
        return f"{'0' if float(text) == 0 else text} bp"

    ax.yaxis.set_major_formatter(FuncFormatter(label))


def accuracy_chart(
    daily: Sequence[Mapping[str, Any]],
    base_rates: Mapping[str, float | None],
    images: ImageFormat = "svg",
) -> Image:
    """Accuracy and hit rate per day with their 95 % Wilson bands, one panel per horizon,
    the horizon's base rate dashed."""
    label = "Daily accuracy and hit rate per horizon with 95 % intervals and the base rate"
    with _drawing("accuracy"):
        figure = _figure(5.0)
        axes = _panels(figure)
        grouped = _by_horizon(daily)
        for ax, horizon in zip(axes, HORIZONS, strict=True):
            rows = grouped[horizon]
            ax.set_title(horizon, loc="left", fontweight="bold")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            accuracy = _floats(rows, "accuracy")
            if not rows or np.isnan(accuracy).all():
                _no_data(ax, "no matured predictions")
                continue
            days = _days(rows)
            for key, colour in (("hit_rate", HIT_RATE_COLOUR), ("accuracy", ACCURACY_COLOUR)):
                ax.fill_between(
                    days,
                    _floats(rows, f"{key}_low"),
                    _floats(rows, f"{key}_high"),
                    color=colour,
                    alpha=0.18,
                    linewidth=0,
                )
                ax.plot(days, _floats(rows, key), color=colour, marker=".", markersize=3)
            base = base_rates.get(horizon)
            if base is not None:
                ax.axhline(base, color=REFERENCE_COLOUR, linestyle="--", linewidth=1)
            _date_axis(ax, days)
        for ax in axes[::2]:
            ax.set_ylabel("share correct per day")
        handles = [
            Line2D([], [], color=ACCURACY_COLOUR, label="accuracy (band: 95 % interval)"),
            Line2D([], [], color=HIT_RATE_COLOUR, label="hit rate (band: 95 % interval)"),
            Line2D([], [], color=REFERENCE_COLOUR, linestyle="--", label="base rate"),
        ]
        _legend(figure, handles)
        return _export(figure, label, images)


def daily_ic_chart(daily: Sequence[Mapping[str, Any]], images: ImageFormat = "svg") -> Image:
    """The mean (across symbols) Spearman IC of each day, one panel per horizon, with the
    zero line and the period's mean dashed."""
    label = "Mean daily information coefficient per day and horizon"
    with _drawing("daily-ic"):
        figure = _figure(5.0)
        axes = _panels(figure)
        grouped = _by_horizon(daily)
        for ax, horizon in zip(axes, HORIZONS, strict=True):
            rows = grouped[horizon]
            ax.set_title(horizon, loc="left", fontweight="bold")
            values = _floats(rows, "ic_mean")
            if not rows or np.isnan(values).all():
                _no_data(ax)
                continue
            colours = [NEGATIVE_COLOUR if value < 0 else POSITIVE_COLOUR for value in values]
            days = _days(rows)
            ax.bar(days, np.nan_to_num(values), color=colours, width=0.8)
            ax.axhline(0, color="#000000", linewidth=0.8)
            ax.axhline(float(np.nanmean(values)), color=REFERENCE_COLOUR, linestyle="--", lw=1)
            _date_axis(ax, days)
        for ax in axes[::2]:
            ax.set_ylabel("IC (Spearman), symbol mean")
        handles = [
            Patch(color=POSITIVE_COLOUR, label="IC ≥ 0"),
            Patch(color=NEGATIVE_COLOUR, label="IC < 0"),
            Line2D([], [], color=REFERENCE_COLOUR, linestyle="--", label="mean of the days shown"),
        ]
        _legend(figure, handles)
        return _export(figure, label, images)


def ic_distribution_chart(
    distributions: Sequence[Mapping[str, Any]], images: ImageFormat = "svg"
) -> Image:
    """Histogram of the per-symbol daily ICs, one panel per horizon, mean dashed."""
    label = "Distribution of the per-symbol daily information coefficients per horizon"
    with _drawing("ic-distribution"):
        figure = _figure(4.5)
        axes = _panels(figure, sharey=False)
        by_horizon = {str(item.get("horizon")): item for item in distributions}
        for ax, horizon in zip(axes, HORIZONS, strict=True):
            ax.set_title(horizon, loc="left", fontweight="bold")
            item = by_horizon.get(horizon)
            bins = list(item.get("bins") or []) if item else []
            if not bins:
                _no_data(ax)
                continue
            lows, highs = _floats(bins, "low"), _floats(bins, "high")
            ax.bar(
                lows,
                np.nan_to_num(_floats(bins, "count")),
                width=highs - lows,
                align="edge",
                color=HORIZON_COLOURS[horizon],
                edgecolor="#ffffff",
                linewidth=0.5,
            )
            ax.axvline(0, color="#000000", linewidth=0.8)
            if item and item.get("mean") is not None:
                ax.axvline(float(item["mean"]), color=REFERENCE_COLOUR, linestyle="--", lw=1)
            ax.set_ylabel("symbol-days")
        for ax in axes[2:]:
            ax.set_xlabel("daily IC (Spearman) of one symbol")
        _legend(figure, [Line2D([], [], color=REFERENCE_COLOUR, linestyle="--", label="mean IC")])
        return _export(figure, label, images)


def monthly_ic_chart(monthly: Sequence[Mapping[str, Any]], images: ImageFormat = "svg") -> Image:
    """Heatmap of the mean daily IC per month (columns) and horizon (rows), centred on 0,
    each cell labelled with its value."""
    label = "Mean daily information coefficient per month and horizon"
    months = sorted({str(row["month"]) for row in monthly})
    rows_present = [h for h in HORIZONS if any(row.get("horizon") == h for row in monthly)]
    horizons = rows_present or list(HORIZONS)
    grid = np.full((len(horizons), max(len(months), 1)), np.nan)
    for row in monthly:
        if row.get("horizon") in horizons and row.get("ic_mean") is not None:
            grid[horizons.index(row["horizon"]), months.index(str(row["month"]))] = row["ic_mean"]
    finite = grid[np.isfinite(grid)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    limit = limit if limit > 0 else 0.05
    with _drawing("monthly-ic"):
        figure = _figure(1.2 + 0.45 * len(horizons))
        ax = figure.add_subplot()
        ax.grid(False)
        ax.set_facecolor("#eeeeee")
        norm = Normalize(vmin=-limit, vmax=limit)
        # pcolormesh stays vector (one path per cell) where imshow would embed a bitmap
        # 16 bands keep the colour bar vector too (matplotlib rasterizes a smooth one)
        mesh = ax.pcolormesh(
            np.ma.masked_invalid(grid),
            cmap=matplotlib.colormaps[DIVERGING_COLORMAP].resampled(16),
            norm=norm,
            edgecolors="#ffffff",
        )
        colormap = mesh.get_cmap()
        for (row_index, column), value in np.ndenumerate(grid):
            if np.isnan(value):
                cell, colour = "n/a", REFERENCE_COLOUR
            else:
                red, green, blue, _ = colormap(norm(value))
                light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.55
                cell, colour = f"{value:+.3f}", "#000000" if light else "#ffffff"
            ax.text(column + 0.5, row_index + 0.5, cell, ha="center", va="center", color=colour)
        ax.set_xticks(np.arange(len(months)) + 0.5, months or [""])
        ax.set_yticks(np.arange(len(horizons)) + 0.5, horizons)
        ax.invert_yaxis()
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        figure.colorbar(mesh, ax=ax, label="mean daily IC", shrink=0.9, pad=0.01)
        return _export(figure, label, images)


def reliability_chart(
    reliability: Sequence[Mapping[str, Any]], images: ImageFormat = "svg"
) -> Image:
    """Reliability diagram per horizon: accuracy against average confidence in each bin, the
    diagonal of perfect calibration; marker area grows with the bin's predictions."""
    label = "Reliability diagram per horizon: accuracy against average confidence"
    with _drawing("reliability"):
        figure = _figure(5.5)
        axes = _panels(figure)
        by_horizon = {str(item.get("horizon")): item for item in reliability}
        largest = max(
            (int(b.get("n") or 0) for item in reliability for b in item.get("bins") or []),
            default=0,
        )
        for ax, horizon in zip(axes, HORIZONS, strict=True):
            ax.set_title(horizon, loc="left", fontweight="bold")
            ax.plot([0, 1], [0, 1], color=REFERENCE_COLOUR, linestyle="--", linewidth=1)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal", adjustable="box")
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            item = by_horizon.get(horizon)
            bins = [
                b
                for b in (item.get("bins") or [] if item else [])
                if b.get("n")
                and b.get("accuracy") is not None
                and b.get("avg_confidence") is not None
            ]
            if not bins:
                _no_data(ax)
                continue
            confidence, accuracy = _floats(bins, "avg_confidence"), _floats(bins, "accuracy")
            sizes = 12 + 160 * _floats(bins, "n") / max(largest, 1)
            ax.plot(confidence, accuracy, color=HORIZON_COLOURS[horizon], linewidth=1)
            ax.scatter(
                confidence,
                accuracy,
                s=sizes,
                color=HORIZON_COLOURS[horizon],
                edgecolors="#ffffff",
                linewidths=0.5,
                zorder=3,
            )
        for ax in axes[2:]:
            ax.set_xlabel("average confidence")
        for ax in axes[::2]:
            ax.set_ylabel("accuracy")
        _legend(
            figure,
            [
                Line2D([], [], color=REFERENCE_COLOUR, linestyle="--", label="perfect calibration"),
                _marker(REFERENCE_COLOUR, "bin (area: predictions)"),
            ],
        )
        return _export(figure, label, images)


def confidence_chart(
    confidence_bins: Sequence[Mapping[str, Any]], images: ImageFormat = "svg"
) -> Image:
    """Predictions per confidence bin (bars) and the primary horizon's accuracy in each bin
    with its 95 % interval (points, right axis)."""
    label = "Predictions per confidence bin and their accuracy"
    with _drawing("confidence"):
        figure = _figure(3.6)
        ax = figure.add_subplot()
        positions = np.arange(len(confidence_bins))
        labels = [str(row.get("bin")) for row in confidence_bins]
        ax.bar(positions, np.nan_to_num(_floats(confidence_bins, "count")), color="#56B4E9")
        ax.set_xticks(positions, labels)
        ax.set_xlabel("confidence")
        ax.set_ylabel("predictions")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        accuracy_axis = ax.twinx()
        accuracy_axis.grid(False)
        accuracy_axis.spines["right"].set_visible(True)
        accuracy = _floats(confidence_bins, "accuracy")
        low = _floats(confidence_bins, "accuracy_low")
        high = _floats(confidence_bins, "accuracy_high")
        errors = np.nan_to_num(np.vstack([accuracy - low, high - accuracy]))
        accuracy_axis.errorbar(
            positions, accuracy, yerr=errors, color=HIT_RATE_COLOUR, fmt="o", capsize=3, ms=4
        )
        accuracy_axis.set_ylim(0, 1)
        accuracy_axis.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        accuracy_axis.set_ylabel("accuracy (primary horizon)")
        _legend(
            figure,
            [
                Patch(color="#56B4E9", label="predictions"),
                _marker(HIT_RATE_COLOUR, "accuracy with 95 % interval"),
            ],
        )
        return _export(figure, label, images)


def quintile_chart(quintiles: Sequence[Mapping[str, Any]], images: ImageFormat = "svg") -> Image:
    """Mean realized return by quintile of the predicted return, one panel per horizon."""
    label = "Mean realized return by predicted-return quintile per horizon"
    with _drawing("quintiles"):
        figure = _figure(4.8)
        axes = _panels(figure, sharey=False)
        by_horizon = {str(item.get("horizon")): item for item in quintiles}
        for ax, horizon in zip(axes, HORIZONS, strict=True):
            item = by_horizon.get(horizon)
            rows = list(item.get("quintiles") or []) if item else []
            ax.set_title(horizon, loc="left", fontweight="bold")
            actual = _floats(rows, "mean_actual") * 10_000
            if not rows or np.isnan(actual).all():
                _no_data(ax)
                continue
            colours = [NEGATIVE_COLOUR if value < 0 else POSITIVE_COLOUR for value in actual]
            positions = [f"Q{row.get('quintile')}" for row in rows]
            ax.bar(positions, np.nan_to_num(actual), color=colours)
            ax.axhline(0, color="#000000", linewidth=0.8)
            _bp_axis(ax)
        for ax in axes[2:]:
            ax.set_xlabel("predicted-return quintile (Q1 lowest)")
        for ax in axes[::2]:
            ax.set_ylabel("mean realized return")
        return _export(figure, label, images)


def confidence_return_chart(
    by_confidence: Sequence[Mapping[str, Any]], images: ImageFormat = "svg"
) -> Image:
    """Mean return of following LONG/SHORT signals per signal-confidence bin."""
    label = "Mean return of following a signal by signal confidence, before costs"
    with _drawing("confidence-returns"):
        figure = _figure(3.4)
        ax = figure.add_subplot()
        values = _floats(by_confidence, "mean_return") * 10_000
        colours = [NEGATIVE_COLOUR if value < 0 else POSITIVE_COLOUR for value in values]
        ax.bar([str(row.get("bin")) for row in by_confidence], np.nan_to_num(values), color=colours)
        ax.axhline(0, color="#000000", linewidth=0.8)
        _bp_axis(ax)
        ax.set_xlabel("signal confidence")
        ax.set_ylabel("mean return, before costs")
        return _export(figure, label, images)


def cumulative_chart(
    cumulative: Sequence[Mapping[str, Any]], horizon: str | None, images: ImageFormat = "svg"
) -> Image:
    """Running sum of the daily mean return of following the signals, before costs.
    ``horizon`` says where each was followed: ``at 1h`` or ``at each signal's primary
    horizon (1h: 80 %, 4h: 20 %)``; a bare horizon (``1h``) reads as ``at 1h``."""
    label = "Cumulative return of following the signals, before costs"
    where = horizon or "n/a"
    where = where if where.startswith("at ") else f"at {where}"
    with _drawing("cumulative"):
        figure = _figure(3.4)
        ax = figure.add_subplot()
        days = _days(cumulative)
        values = _floats(cumulative, "cumulative_return")
        ax.plot(days, values, color=POSITIVE_COLOUR)
        ax.fill_between(days, 0, values, color=POSITIVE_COLOUR, alpha=0.15, linewidth=0)
        ax.axhline(0, color="#000000", linewidth=0.8)
        # decimals from the axis range: a 0.25 % step must not print as 0.2 %
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
        title = f"Cumulative return of following the signals {where}, before costs"
        if len(title) > 80:
            # a horizon mix does not fit the width on one line at the title's size
            title = f"Cumulative return of following the signals, before costs,\n{where}"
        ax.set_title(title, loc="left")
        ax.set_ylabel("sum of daily mean returns")
        _date_axis(ax, days)
        return _export(figure, label, images)
