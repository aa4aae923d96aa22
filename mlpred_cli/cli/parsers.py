"""Text syntax of the command line turned into Python values: horizon lists
(``15m,1h``), per-horizon thresholds (``15m=0.002,1h=0.003``) and moments (ISO 8601).

The library takes the values (``list[str]``, ``dict[str, float]``, ``datetime``); only the
CLI parses text, so only the CLI's messages name the syntax.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mlpred_cli.config import HORIZONS, check_horizons, direction_thresholds
from mlpred_cli.errors import InputError


def parse_horizons(text: str | None) -> list[str]:
    """``"15m,1h"`` -> ``["15m", "1h"]`` in schema order; ``None`` or empty means all."""
    if text is None or not text.strip():
        return list(HORIZONS)
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    return list(check_horizons(wanted))


def parse_thresholds(text: str | None) -> dict[str, float]:
    """``"15m=0.0015,1h=0.003"`` over the defaults; values are fractions (0.003 = 0.3 %)."""
    overrides: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        horizon, sep, value = part.partition("=")
        horizon = horizon.strip().lower()
        if not sep or horizon not in HORIZONS:
            raise InputError(
                f"bad threshold '{part.strip()}': expected HORIZON=VALUE, e.g. 1h=0.003"
            )
        try:
            overrides[horizon] = float(value)
        except ValueError:
            raise InputError(f"bad threshold value '{value.strip()}' for {horizon}") from None
    return direction_thresholds(overrides)


def parse_moment(text: str | None) -> datetime | None:
    """An ISO date or date-time as aware UTC; naive input is taken as UTC."""
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"bad date/time '{text}': use ISO 8601, e.g. 2026-03-01T12:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
