"""Text for the figures of the HTML report, used as Jinja filters so the template stays
simple. Every helper takes ``None`` (or NaN / inf) and answers ``n/a``: a report shows
what it does not know instead of failing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time
from typing import Any

#: What a figure that is unknown (or not enough data) shows.
NOT_AVAILABLE = "n/a"


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (also for bools, which are not figures)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _signed(number: float, digits: int) -> str:
    # rounding can leave "-0.0", which reads as a loss; show it as no change
    text = f"{number:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text


def percent(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.5421`` -> ``54.2 %``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{number * 100:.{digits}f} %"


def interval(low: Any, high: Any, digits: int = 1) -> str:
    """A 95 % interval of fractions, joined by an en dash: ``53.1\N{EN DASH}55.3 %``."""
    lower, upper = _finite(low), _finite(high)
    if lower is None or upper is None:
        return NOT_AVAILABLE
    return f"{lower * 100:.{digits}f}\N{EN DASH}{upper * 100:.{digits}f} %"


def points(value: Any, digits: int = 1) -> str:
    """A change of a fraction in percentage points: ``0.013`` -> ``+1.3 pp``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{_signed(number * 100, digits)} pp"


def return_percent(value: Any, digits: int = 2) -> str:
    """A return (a fraction) in signed percent: ``0.0012`` -> ``+0.12 %``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{_signed(number * 100, digits)} %"


def basis_points(value: Any, digits: int = 1) -> str:
    """A return (a fraction) in signed basis points: ``0.0012`` -> ``+12.0 bp``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{_signed(number * 10_000, digits)} bp"


def magnitude(value: Any) -> str:
    """A size of a return (a threshold, an MAE) in unsigned percent: ``0.0015`` -> ``0.15 %``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{number * 100:.2f} %"


def count(value: Any) -> str:
    """A count with thousands separators: ``12345`` -> ``12,345``."""
    number = _finite(value)
    return NOT_AVAILABLE if number is None else f"{round(number):,}"


def number(value: Any, digits: int = 3) -> str:
    """A plain figure (Brier score, feature mean): ``0.2481``."""
    value = _finite(value)
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def coefficient(value: Any, digits: int = 3) -> str:
    """A signed coefficient (an IC): ``+0.034``."""
    value = _finite(value)
    return NOT_AVAILABLE if value is None else _signed(value, digits)


def t_statistic(value: Any) -> str:
    """A t-statistic: ``t = 2.31``."""
    value = _finite(value)
    return NOT_AVAILABLE if value is None else f"t = {value:.2f}"


def p_value(value: Any) -> str:
    """A p-value: ``p = 0.004``, ``p < 0.001`` below that."""
    value = _finite(value)
    if value is None:
        return NOT_AVAILABLE
    return f"p = {value:.3f}" if value >= 0.001 else "p < 0.001"


def milliseconds(value: Any) -> str:
    """A duration in milliseconds: ``12.3 ms``."""
    value = _finite(value)
    return NOT_AVAILABLE if value is None else f"{value:,.1f} ms"


def moment(value: Any) -> str:
    """An ISO 8601 time as ``2026-12-01 17:25 UTC`` (a day stays a day)."""
    if value is None or value == "":
        return NOT_AVAILABLE
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return text
        if len(text) == 10:
            return text
    if parsed.tzinfo is None:
        return f"{parsed:%Y-%m-%d %H:%M}"
    return f"{parsed.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def age(seconds: Any) -> str:
    """How long ago, from seconds: ``45 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    value = _finite(seconds)
    if value is None:
        return NOT_AVAILABLE
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    if value < 36 * 3600:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def days(value: Any) -> str:
    """A length in days, to a tenth when it is not whole: ``6.875`` -> ``6.9 days``,
    ``30.0`` -> ``30 days``, ``1`` -> ``1 day``."""
    number = _finite(value)
    if number is None:
        return NOT_AVAILABLE
    shown = f"{number:.1f}".removesuffix(".0")
    return f"{shown} {'day' if shown == '1' else 'days'}"


def span(since: Any, until: Any) -> str:
    """A period, its ends joined by an en dash: ``2026-11-24`` to ``2026-12-01`` alone when
    both ends are midnight UTC, else with their times (``06:00``) and ``UTC`` after them."""
    ends = [utc_time(value) for value in (since, until)]
    if any(end is None for end in ends):
        return f"{moment(since)} \N{EN DASH} {moment(until)}"
    start, end = ends
    assert start is not None and end is not None
    if all(value.time() == time(0) for value in (start, end)):
        return f"{start:%Y-%m-%d} \N{EN DASH} {end:%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M} \N{EN DASH} {end:%Y-%m-%d %H:%M} UTC"


def utc_time(value: Any) -> datetime | None:
    """An ISO 8601 time with a zone, in UTC; None for anything else."""
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return None if parsed.tzinfo is None else parsed.astimezone(UTC)


def text(value: Any) -> str:
    """A label that may be missing: ``None`` -> ``n/a``."""
    return NOT_AVAILABLE if value is None or value == "" else str(value)


#: The filters the template uses, by name.
FILTERS = {
    "percent": percent,
    "interval": interval,
    "points": points,
    "return_percent": return_percent,
    "bp": basis_points,
    "magnitude": magnitude,
    "count": count,
    "number": number,
    "coefficient": coefficient,
    "t_statistic": t_statistic,
    "p_value": p_value,
    "ms": milliseconds,
    "moment": moment,
    "age": age,
    "days": days,
    "span": span,
    "text": text,
}
