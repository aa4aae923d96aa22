"""The dashboard's filter state: parsed from a page's or an API call's query parameters,
checked, and written back as the query string that reproduces the view.

Every value is checked against a closed set or a length and character limit here; the
queries bind them as parameters, never as SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from mlpred_cli.config import HORIZONS
from mlpred_cli.errors import InputError
from mlpred_cli.store.prediction_queries import PredictionFilter

DEFAULT_DAYS = 7
MAX_DAYS = 3650
#: The windows the page offers (any whole number from 1 to MAX_DAYS is accepted).
DAY_CHOICES: tuple[int, ...] = (1, 7, 30, 90, 365)
DEFAULT_FEED_ROWS = 50
MAX_FEED_ROWS = 500

#: The column widths of ``symbol`` and ``model_version`` in ``ml_predictions``.
_LIMITS = {"symbol": 20, "model_version": 50}
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")
_KNOWN = frozenset({"symbol", "model_version", "horizon", "days", "limit"})


@dataclass(frozen=True)
class DashboardFilter:
    """What a view shows: one symbol / model version / horizon or all (None), over the
    window of ``days`` (today so far and the days - 1 whole UTC days before it)."""

    symbol: str | None = None
    model_version: str | None = None
    horizon: str | None = None
    days: int = DEFAULT_DAYS

    def horizons(self) -> tuple[str, ...]:
        """The horizons the view shows."""
        return (self.horizon,) if self.horizon else HORIZONS

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``[since, now]``: from the UTC midnight ``days - 1`` days before ``now``'s."""
        today = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
        return today - timedelta(days=self.days - 1), now

    def selection(self, now: datetime) -> PredictionFilter:
        """The predictions of the window (``until`` left open: rows logged up to now)."""
        since, _ = self.window(now)
        return PredictionFilter(symbol=self.symbol, model_version=self.model_version, since=since)

    def everywhere(self) -> PredictionFilter:
        """The symbol and model version, at any time (the live feed)."""
        return PredictionFilter(symbol=self.symbol, model_version=self.model_version)

    def query(self, **changes: str | int | None) -> str:
        """The URL query string of this filter (defaults left out), with ``changes``."""
        values = {**asdict(self), **changes}
        pairs = [
            (name, str(value))
            for name, value in values.items()
            if value not in (None, "") and not (name == "days" and value == DEFAULT_DAYS)
        ]
        return urlencode(pairs)

    def to_dict(self) -> dict[str, str | int | None]:
        """The filter as JSON-ready values."""
        return asdict(self)


def _text(name: str, value: str) -> str | None:
    if value == "":
        return None
    if len(value) > _LIMITS[name]:
        raise InputError(f"{name} must be at most {_LIMITS[name]} characters")
    if not _PRINTABLE.fullmatch(value) or value != value.strip():
        raise InputError(f"{name} must be printable text without surrounding spaces")
    return value


def _whole(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {value!r:.30}")
    return int(value)


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InputError(f"{name} is given more than once")
    return values[0]


def parse_filter(params: Mapping[str, list[str]]) -> DashboardFilter:
    """A ``DashboardFilter`` from query parameters (name -> values). Raises ``InputError``
    with a one-line message for an unknown parameter or a bad value."""
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise InputError(f"unknown query parameter {unknown[0]!r:.40}")
    symbol = _single(params, "symbol")
    version = _single(params, "model_version")
    horizon = _single(params, "horizon") or None
    if horizon is not None and horizon not in HORIZONS:
        raise InputError(f"horizon must be one of {', '.join(HORIZONS)}")
    days_text = _single(params, "days")
    return DashboardFilter(
        symbol=_text("symbol", symbol) if symbol is not None else None,
        model_version=_text("model_version", version) if version is not None else None,
        horizon=horizon,
        days=_whole("days", days_text, 1, MAX_DAYS) if days_text else DEFAULT_DAYS,
    )


def parse_limit(params: Mapping[str, list[str]]) -> int:
    """The feed's ``limit`` parameter (default ``DEFAULT_FEED_ROWS``)."""
    text = _single(params, "limit")
    return _whole("limit", text, 1, MAX_FEED_ROWS) if text else DEFAULT_FEED_ROWS


def path_symbol(value: str) -> str:
    """A symbol taken from a URL path (checked like the ``symbol`` parameter)."""
    checked = _text("symbol", value)
    if checked is None:
        raise InputError("symbol must not be empty")
    return checked
