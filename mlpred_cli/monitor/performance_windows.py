"""The day windows of the performance check: reference periods, maturity, the rows of one
model version and horizon summed per day.

Pure: frames in, frames and masks out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd

from mlpred_cli.errors import InputError
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings

#: A window of days ``[first_day, end_day)``.
DayWindow = tuple[date, date]


def default_reference(first_day: date, settings: MonitorSettings = DEFAULT_SETTINGS) -> DayWindow:
    """The reference period of a model version first seen on ``first_day``: its first
    ``settings.reference_days`` days, ``[first_day, first_day + reference_days)``."""
    if settings.reference_days <= 0:
        raise InputError("reference_days must be positive")
    return first_day, first_day + timedelta(days=settings.reference_days)


def check_window(window: DayWindow, name: str) -> DayWindow:
    """``window`` if its first day comes before its end day, else ``InputError``."""
    first, end = window
    if not first < end:
        raise InputError(f"{name} must end after it starts, got [{first}, {end})")
    return window


def day_dates(frame: pd.DataFrame) -> pd.Series:
    """The ``day`` column (ISO text or dates) as ``datetime.date`` values."""
    return frame["day"].map(
        lambda value: value if isinstance(value, date) else date.fromisoformat(str(value))
    )


def matured_mask(days: pd.Series, matured_through: datetime | None) -> np.ndarray:
    """Days whose end (the next midnight UTC) is at or before ``matured_through`` (naive
    datetimes are UTC); none when it is None."""
    if matured_through is None:
        return np.zeros(len(days), dtype=bool)
    limit = matured_through if matured_through.tzinfo else matured_through.replace(tzinfo=UTC)
    ends = [datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) for day in days]
    return np.array([end <= limit for end in ends], dtype=bool)


def in_window(days: pd.Series, first: date, end: date) -> np.ndarray:
    """Days in ``[first, end)``."""
    return np.array([first <= day < end for day in days], dtype=bool)


def per_day(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame``'s ``columns`` summed per day, days in order, with a ``date`` column."""
    present = [column for column in columns if column in frame.columns]
    return frame.groupby("date", sort=True)[present].sum().reset_index()


def model_version_order(versions: Mapping[str, object] | list[str]) -> list[str]:
    """Model versions sorted, '' (none) last."""
    return sorted(versions, key=lambda version: (version == "", version))
