"""The TOML config file: which file, and its tables and keys read and checked.

``KEYS`` is the one table of what a file may set: each ``Key`` names its TOML table and key,
the ``mlpred_cli.config`` constant it overrides, how its value is read (``Kind``), what range
it must be in (``Check``) and one line of documentation. Loading, validation, ``mlpred config
show`` and the README's list of keys all come from it.

Which file: the path given to ``select_config_file`` (the ``--config`` option), else
``$MLPRED_CONFIG``, else ``mlpred.toml`` in the user config directory when it exists, else
none. ``mlpred_cli.config`` loads it when it is first imported, so every constant it
exports already holds the configured value. This module must not import
``mlpred_cli.config``: that module imports this one.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs

from mlpred_cli.errors import ConfigError

CONFIG_ENV = "MLPRED_CONFIG"
CONFIG_FILE_NAME = "mlpred.toml"

#: How a config file was chosen (``LoadedConfig.source``).
FROM_FLAG = "--config"
FROM_ENV = CONFIG_ENV
FROM_USER_DIR = "user config"

_flag_path: str | None = None
_loaded: LoadedConfig | None = None


class _WrongValue(Exception):
    """A value of the wrong type or out of range; the message completes "<key> ..."."""


# ---------------------------------------------------------------- kinds: TOML value <-> Python


def _type_name(value: object) -> str:
    """How an error names the type of a TOML value."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # datetime, date, time


def _got(value: object) -> str:
    shown = repr(value) if isinstance(value, str | int | float) else ""
    return f"got {_type_name(value)} {shown}".rstrip()


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _WrongValue(f"must be an integer, {_got(value)}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _WrongValue(f"must be a number, {_got(value)}")
    if not math.isfinite(value):
        raise _WrongValue(f"must be a finite number, got {value!r}")
    return float(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _WrongValue(f"must be a string, {_got(value)}")
    if not value.strip():
        raise _WrongValue("must not be empty")
    return value


@dataclass(frozen=True)
class Kind:
    """How a key's TOML value becomes the constant's Python value, and back for display."""

    #: What the documentation calls the TOML type ("integer", "number", "hours"...).
    name: str
    read: Callable[[object], Any]
    show: Callable[[Any], Any] = lambda value: value


INTEGER = Kind("integer", _integer)
NUMBER = Kind("number", _number)
TEXT = Kind("string", _text)


#: The longest window or duration a setting (or a ``--days`` option) may name: 100 years.
MAX_DAYS = 36_600
MAX_HOURS = MAX_DAYS * 24


def _duration(unit: timedelta, name: str) -> Kind:
    """A timedelta written as a number of ``unit``s (``retry_window_hours = 48``), at most
    ``MAX_DAYS``."""
    most = timedelta(days=MAX_DAYS) / unit

    def read(value: object) -> timedelta:
        amount = _number(value)
        if amount > most:
            raise _WrongValue(f"must be at most {most:,.0f} {name}, got {value!r}")
        return amount * unit

    def show(value: timedelta) -> float | int:
        amount = value / unit
        return int(amount) if amount == int(amount) else amount

    return Kind(name, read, show)


HOURS = _duration(timedelta(hours=1), "hours")
DAYS = _duration(timedelta(days=1), "days")


def _number_table(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _WrongValue(f"must be a table of numbers, {_got(value)}")
    numbers: dict[str, float] = {}
    for name, item in value.items():
        try:
            numbers[name] = _number(item)
        except _WrongValue as error:
            raise _WrongValue(f"{name} {error}") from None
    return numbers


#: A table of numbers merged over the default table (``[backfill.direction_thresholds]``).
NUMBER_TABLE = Kind("table of numbers", _number_table)


def _number_list(value: object) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise _WrongValue(f"must be an array of numbers, {_got(value)}")
    return tuple(_number(item) for item in value)


NUMBER_LIST = Kind("array of numbers", _number_list, list)


# ---------------------------------------------------------------- checks: ranges

#: A range check: the value and the defaults of every constant -> the problem, or None.
Check = Callable[[Any, Mapping[str, Any]], str | None]


def positive(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Counts, sizes and durations: > 0."""
    zero = timedelta(0) if isinstance(value, timedelta) else 0
    return None if value > zero else "must be positive"


def positive_at_most(maximum: int) -> Check:
    """A positive number of at most ``maximum`` (windows in days: ``MAX_DAYS``)."""

    def check(value: Any, defaults: Mapping[str, Any]) -> str | None:
        if value <= 0:
            return "must be positive"
        return None if value <= maximum else f"must be at most {maximum:,}"

    return check


WINDOW_DAYS = positive_at_most(MAX_DAYS)


def non_negative(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Seeds and allowances: >= 0."""
    return None if value >= 0 else "must be >= 0"


def open_fraction(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Significance and confidence levels: strictly between 0 and 1."""
    return None if 0 < value < 1 else "must be between 0 and 1 (exclusive)"


def share(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Probabilities and shares: in [0, 1]."""
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def at_least(minimum: int) -> Check:
    """A count of at least ``minimum``."""

    def check(value: Any, defaults: Mapping[str, Any]) -> str | None:
        return None if value >= minimum else f"must be at least {minimum}"

    return check


def port(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """A TCP port."""
    return None if 1 <= value <= 65_535 else "must be a port number (1 to 65535)"


def one_of(constant: str) -> Check:
    """A name among the keys of the ``constant`` default (``HORIZONS``, ``CANDLE_INTERVALS``)."""

    def check(value: Any, defaults: Mapping[str, Any]) -> str | None:
        choices = list(defaults[constant])
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def thresholds_per_horizon(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Direction thresholds: known horizons, each a fraction >= 0."""
    horizons = list(defaults["HORIZONS"])
    for horizon, threshold in value.items():
        if horizon not in horizons:
            return f"has unknown horizon {horizon!r}: use {', '.join(horizons)}"
        if threshold < 0:
            return f"{horizon} must be >= 0"
    return None


def increasing_edges(value: Any, defaults: Mapping[str, Any]) -> str | None:
    """Bin edges: at least two, strictly increasing, in [0, 1]."""
    if len(value) < 2:
        return "must have at least two edges"
    if any(not 0 <= edge <= 1 for edge in value):
        return "must lie in [0, 1]"
    if any(low >= high for low, high in itertools.pairwise(value)):
        return "must be strictly increasing"
    return None


# ---------------------------------------------------------------- the keys


@dataclass(frozen=True)
class Key:
    """One setting a config file may hold: ``[table] name`` overrides ``constant``.

    A ``fixed`` key is listed (``config show``, the docs) but refused in a file: ``fixed``
    says why.
    """

    table: str
    name: str
    constant: str
    kind: Kind
    check: Check | None
    doc: str
    fixed: str | None = None

    @property
    def label(self) -> str:
        """``table.name``, as ``config show`` lists it."""
        return f"{self.table}.{self.name}"


_ROLLUP_SCHEMA = (
    "the daily rollups (ml_prediction_daily) store their counts per bin, so it is part of "
    "the database schema"
)

KEYS: tuple[Key, ...] = (
    # database
    Key("database", "url", "DATABASE_URL", TEXT, None,
        "database URL or SQLite file path (--db and MLPRED_DATABASE_URL come first)"),
    # writer
    Key("writer", "batch_size", "WRITER_BATCH_SIZE", INTEGER, positive,
        "predictions per write once the queue has this many"),
    Key("writer", "flush_interval_s", "WRITER_FLUSH_INTERVAL_S", NUMBER, positive,
        "seconds a prediction waits at most before it is written"),
    Key("writer", "max_pending", "WRITER_MAX_PENDING", INTEGER, positive,
        "predictions queued in memory before new ones go to the spool"),
    Key("writer", "max_batch_rows", "WRITER_MAX_BATCH_ROWS", INTEGER, positive,
        "most rows of one write"),
    Key("writer", "close_timeout_s", "WRITER_CLOSE_TIMEOUT_S", NUMBER, positive,
        "seconds close() waits for the queue to drain"),
    Key("writer", "retry_initial_s", "WRITER_RETRY_INITIAL_S", NUMBER, positive,
        "first pause before a failed write is retried (doubling)"),
    Key("writer", "retry_max_s", "WRITER_RETRY_MAX_S", NUMBER, positive,
        "longest pause between retries"),
    Key("writer", "spool_after_s", "WRITER_SPOOL_AFTER_S", NUMBER, positive,
        "memory-only mode: a batch failing this long goes to disk"),
    Key("writer", "write_timeout_s", "WRITER_WRITE_TIMEOUT_S", NUMBER, positive,
        "a write unanswered this long has its connection broken and is retried"),
    Key("writer", "fsync_interval_s", "WRITER_FSYNC_INTERVAL_S", NUMBER, positive,
        'journal fsync period under fsync="interval"'),
    Key("writer", "segment_bytes", "WRITER_SEGMENT_BYTES", INTEGER, positive,
        "journal segment size"),
    Key("writer", "duplicate_window", "WRITER_DUPLICATE_WINDOW", INTEGER, positive,
        "recent feature hashes remembered to mark duplicates"),
    # analysis
    Key("analysis", "default_days", "DEFAULT_ANALYZE_DAYS", NUMBER, WINDOW_DAYS,
        "window of analyze without --days/--since/--until"),
    Key("analysis", "interval_confidence", "INTERVAL_CONFIDENCE", NUMBER, open_fraction,
        "confidence level of the Wilson intervals"),
    Key("analysis", "pooled_ic_max_rows", "POOLED_IC_MAX_ROWS", INTEGER, positive,
        "above this many rows analyze shows the mean daily IC instead of pooled ICs"),
    Key("analysis", "overlap_max_rows", "OVERLAP_MAX_ROWS", INTEGER, positive,
        "above this many rows accuracy and analyze leave out the overlap-corrected intervals"),
    Key("analysis", "confidence_bin_edges", "CONFIDENCE_BIN_EDGES", NUMBER_LIST,
        increasing_edges, "edges of the signal_confidence bins", fixed=_ROLLUP_SCHEMA),
    Key("analysis", "calibration_bins", "CALIBRATION_BINS", INTEGER, positive,
        "equal-width bins of the expected calibration error", fixed=_ROLLUP_SCHEMA),
    Key("analysis", "primary_horizon_fallback", "PRIMARY_HORIZON_FALLBACK", TEXT,
        one_of("HORIZONS"), "horizon of a row whose signal_timeframe is not a horizon",
        fixed="the daily rollups count each row's bin at this horizon"),
    # report
    Key("report", "default_days", "DEFAULT_REPORT_DAYS", NUMBER, WINDOW_DAYS,
        "window of report without --days/--since/--until"),
    Key("report", "recent_days", "REPORT_RECENT_DAYS", NUMBER, WINDOW_DAYS,
        "last days of the window the model comparison and check sections cover"),
    Key("report", "sample_max_rows", "REPORT_SAMPLE_MAX_ROWS", INTEGER, positive,
        "rows the row-by-row figures read before they sample"),
    Key("report", "pooled_ic_max_rows", "REPORT_POOLED_IC_MAX_ROWS", INTEGER, positive,
        "above this many rows the report leaves out pooled ICs"),
    Key("report", "ic_histogram_bins", "IC_HISTOGRAM_BINS", INTEGER, positive,
        "bins of the daily-IC histogram"),
    Key("report", "rank_min_rows", "REPORT_RANK_MIN_ROWS", INTEGER, positive,
        "scored rows a symbol needs to be ranked best or worst"),
    # indicators, signal
    Key("indicators", "max_candles", "MAX_INDICATOR_CANDLES", INTEGER, positive,
        "newest candles of market_data used for the indicators"),
    Key("signal", "min_confidence", "MIN_SIGNAL_CONFIDENCE", NUMBER, share,
        "probability a LONG/SHORT horizon needs to become the signal"),
    # backfill and candles
    Key("backfill", "chunk_rows", "BACKFILL_CHUNK_ROWS", INTEGER, positive,
        "predictions per backfill transaction"),
    Key("backfill", "retry_window_hours", "BACKFILL_RETRY_WINDOW", HOURS, positive,
        "without --since, predictions this long before the newest completed one"),
    Key("backfill", "default_interval", "DEFAULT_BACKFILL_INTERVAL", TEXT,
        one_of("CANDLE_INTERVALS"), "candle interval prices are read from"),
    Key("backfill", "candle_import_batch_rows", "CANDLE_IMPORT_BATCH_ROWS", INTEGER, positive,
        "rows per batch of import-candles"),
    Key("backfill", "direction_thresholds", "DEFAULT_DIRECTION_THRESHOLDS", NUMBER_TABLE,
        thresholds_per_horizon,
        "absolute return above which an outcome is LONG or SHORT, per horizon"),
    # partitions
    Key("partitions", "days_ahead", "PARTITION_DAYS_AHEAD", INTEGER, positive_at_most(366),
        "day partitions kept ready ahead of today (PostgreSQL)"),
    # feature importance, model comparison
    Key("importance", "method", "IMPORTANCE_METHOD", TEXT, None,
        "method name of the snapshots feature-importance compute writes"),
    Key("importance", "min_rows", "MIN_IMPORTANCE_ROWS", INTEGER, at_least(3),
        "rows with features and an outcome feature-importance compute needs"),
    Key("importance", "sparkline_snapshots", "SPARKLINE_SNAPSHOTS", INTEGER, positive,
        "snapshots the sparkline of feature-importance show spans"),
    Key("importance", "fdr_level", "IMPORTANCE_FDR_LEVEL", NUMBER, open_fraction,
        "false discovery rate below whose Benjamini-Hochberg q-value a feature counts as "
        "significant"),
    Key("compare", "alpha", "COMPARE_ALPHA", NUMBER, open_fraction,
        "significance level of the compare-models verdict"),
    Key("compare", "min_paired_predictions", "MIN_PAIRED_PREDICTIONS", INTEGER, positive,
        "pairs needed before compare-models uses the paired tests"),
    Key("compare", "bootstrap_resamples", "BOOTSTRAP_RESAMPLES", INTEGER, positive,
        "bootstrap resamples of the IC difference"),
    Key("compare", "bootstrap_seed", "BOOTSTRAP_SEED", INTEGER, non_negative,
        "seed of that bootstrap"),
    # monitoring: names as in MonitorSettings
    Key("monitor", "check_days", "CHECK_DAYS", NUMBER, WINDOW_DAYS,
        "window check judges without --days/--since/--until"),
    Key("monitor", "reference_days", "REFERENCE_DAYS", INTEGER, WINDOW_DAYS,
        "days at the start of a model version's history that form its reference"),
    Key("monitor", "warning_alpha", "WARNING_ALPHA", NUMBER, open_fraction,
        "BH-adjusted p-value below which a test warns"),
    Key("monitor", "critical_alpha", "CRITICAL_ALPHA", NUMBER, open_fraction,
        "BH-adjusted p-value below which a test is critical"),
    Key("monitor", "drift_bins", "DRIFT_BINS", INTEGER, at_least(2),
        "reference-quantile bins of PSI and Jensen-Shannon"),
    Key("monitor", "drift_min_effect_warning", "DRIFT_MIN_EFFECT_WARNING", NUMBER, positive,
        "Wasserstein shift (reference sd) that can warn"),
    Key("monitor", "drift_min_effect_critical", "DRIFT_MIN_EFFECT_CRITICAL", NUMBER, positive,
        "Wasserstein shift (reference sd) that can be critical"),
    Key("monitor", "drift_min_rows", "DRIFT_MIN_ROWS", INTEGER, positive,
        "effective rows each drift window needs"),
    Key("monitor", "drift_min_window_days", "DRIFT_MIN_WINDOW", DAYS, positive,
        "shortest current window drift judges"),
    Key("monitor", "ks_max_rows", "KS_MAX_ROWS", INTEGER, positive,
        "KS is reported only up to this many rows in the smaller window"),
    Key("monitor", "drift_max_rows", "DRIFT_MAX_ROWS", INTEGER, positive,
        "rows of each window read for drift (an even sample beyond)"),
    Key("monitor", "drift_empty_bin_rows", "DRIFT_EMPTY_BIN_ROWS", NUMBER, positive,
        "rows an empty bin counts as (PSI stays finite)"),
    Key("monitor", "drift_min_effective_rows_per_bin", "DRIFT_MIN_EFFECTIVE_ROWS_PER_BIN",
        NUMBER, positive, "below this many effective rows per bin, fewer bins"),
    Key("monitor", "drift_max_autocorrelation_lag", "DRIFT_MAX_AUTOCORRELATION_LAG", INTEGER,
        positive, "longest autocorrelation lag summed"),
    Key("monitor", "drift_bootstrap_max_rows", "DRIFT_BOOTSTRAP_MAX_ROWS", INTEGER, positive,
        "largest window the Wasserstein bootstrap draws"),
    Key("monitor", "drift_stretch_lags", "DRIFT_STRETCH_LAGS", INTEGER, positive,
        "correlation lengths per stretch of the autocorrelation estimate"),
    Key("monitor", "drift_stretch_min_rows", "DRIFT_STRETCH_MIN_ROWS", INTEGER, positive,
        "fewest rows of such a stretch"),
    Key("monitor", "drift_bootstrap_resamples", "DRIFT_BOOTSTRAP_RESAMPLES", INTEGER, positive,
        "resamples of the Wasserstein null band"),
    Key("monitor", "drift_bootstrap_seed", "DRIFT_BOOTSTRAP_SEED", INTEGER, non_negative,
        "seed of that bootstrap"),
    Key("monitor", "cusum_allowance", "CUSUM_ALLOWANCE", NUMBER, non_negative,
        "CUSUM allowance k (day standard errors)"),
    Key("monitor", "cusum_warning_limit", "CUSUM_WARNING_LIMIT", NUMBER, positive,
        "CUSUM decision limit h of a warning"),
    Key("monitor", "cusum_critical_limit", "CUSUM_CRITICAL_LIMIT", NUMBER, positive,
        "CUSUM decision limit h of a critical"),
    Key("monitor", "cusum_reference_allowance", "CUSUM_REFERENCE_ALLOWANCE", NUMBER,
        non_negative, "reference-mean standard errors added to the allowance"),
    Key("monitor", "extreme_day_z", "EXTREME_DAY_Z", NUMBER, positive,
        "a single day below -z warns on its own"),
    Key("monitor", "performance_min_day_rows", "PERFORMANCE_MIN_DAY_ROWS", INTEGER, positive,
        "scored rows a day needs to enter the daily series"),
    Key("monitor", "symbol_min_rows", "SYMBOL_MIN_ROWS", INTEGER, positive,
        "rows a symbol needs in each window for its own test"),
    Key("monitor", "reference_min_days", "REFERENCE_MIN_DAYS", INTEGER, WINDOW_DAYS,
        "reference days a performance series needs"),
    Key("monitor", "stale_candles_warning", "STALE_CANDLES_WARNING", INTEGER, positive,
        "candles without a prediction before a symbol is stale (warning)"),
    Key("monitor", "stale_candles_critical", "STALE_CANDLES_CRITICAL", INTEGER, positive,
        "candles without a prediction before a symbol is stale (critical)"),
    Key("monitor", "freshness_lookback_hours", "FRESHNESS_LOOKBACK", HOURS, positive,
        "symbols and versions seen this recently are checked for staleness"),
    Key("monitor", "outcome_lag_warning_hours", "OUTCOME_LAG_WARNING", HOURS, positive,
        "outcomes this much later than possible warn (backfill down)"),
    Key("monitor", "outcome_lag_critical_hours", "OUTCOME_LAG_CRITICAL", HOURS, positive,
        "outcomes this much later than possible are critical"),
    Key("monitor", "nan_share_warning", "NAN_SHARE_WARNING", NUMBER, share,
        "share of rows with NaN/inf features that warns"),
    Key("monitor", "nan_share_critical", "NAN_SHARE_CRITICAL", NUMBER, share,
        "share of rows with NaN/inf features that is critical"),
    Key("monitor", "duplicate_share_warning", "DUPLICATE_SHARE_WARNING", NUMBER, share,
        "share of duplicate feature vectors that warns"),
    Key("monitor", "duplicate_share_critical", "DUPLICATE_SHARE_CRITICAL", NUMBER, share,
        "share of duplicate feature vectors that is critical"),
    Key("monitor", "inference_p95_warning_ms", "INFERENCE_P95_WARNING_MS", NUMBER, positive,
        "inference-time p95 that warns (ms)"),
    Key("monitor", "inference_p95_critical_ms", "INFERENCE_P95_CRITICAL_MS", NUMBER, positive,
        "inference-time p95 that is critical (ms)"),
    Key("monitor", "webhook_timeout_s", "WEBHOOK_TIMEOUT_S", NUMBER, positive,
        "seconds per webhook attempt"),
    Key("monitor", "webhook_attempts", "WEBHOOK_ATTEMPTS", INTEGER, positive,
        "webhook attempts"),
    Key("monitor", "webhook_backoff_s", "WEBHOOK_BACKOFF_S", NUMBER, positive,
        "first pause between webhook attempts (doubled)"),
    # dashboard
    Key("web", "host", "WEB_DEFAULT_HOST", TEXT, None, "address serve listens on"),
    Key("web", "port", "WEB_DEFAULT_PORT", INTEGER, port, "port serve listens on"),
    Key("web", "refresh_s", "WEB_REFRESH_S", NUMBER, positive,
        "seconds between the dashboard's database reads"),
    Key("web", "statement_timeout_ms", "WEB_STATEMENT_TIMEOUT_MS", INTEGER, positive,
        "statement timeout of the dashboard's read-only sessions"),
    Key("web", "hourly_hours", "WEB_HOURLY_HOURS", INTEGER, positive,
        "hours of the predictions-per-hour chart"),
    Key("web", "feed_rows", "WEB_FEED_ROWS", INTEGER, positive,
        "rows of the live feed"),
    Key("web", "cache_entries", "WEB_CACHE_ENTRIES", INTEGER, positive,
        "computed views kept"),
    Key("web", "token_min_length", "WEB_TOKEN_MIN_LENGTH", INTEGER, at_least(16),
        "shortest access token accepted"),
    Key("web", "heartbeat_s", "WEB_HEARTBEAT_S", NUMBER, positive,
        "seconds between SSE heartbeats"),
)  # fmt: skip

#: ``KEYS`` by table, then by key name.
KEYS_BY_TABLE: dict[str, dict[str, Key]] = {}
for _key in KEYS:
    KEYS_BY_TABLE.setdefault(_key.table, {})[_key.name] = _key

#: Pairs (smaller, larger) of constants that must keep their order, with the reason.
ORDERED: tuple[tuple[str, str], ...] = (
    ("CRITICAL_ALPHA", "WARNING_ALPHA"),
    ("DRIFT_MIN_EFFECT_WARNING", "DRIFT_MIN_EFFECT_CRITICAL"),
    ("CUSUM_WARNING_LIMIT", "CUSUM_CRITICAL_LIMIT"),
    ("STALE_CANDLES_WARNING", "STALE_CANDLES_CRITICAL"),
    ("OUTCOME_LAG_WARNING", "OUTCOME_LAG_CRITICAL"),
    ("NAN_SHARE_WARNING", "NAN_SHARE_CRITICAL"),
    ("DUPLICATE_SHARE_WARNING", "DUPLICATE_SHARE_CRITICAL"),
    ("INFERENCE_P95_WARNING_MS", "INFERENCE_P95_CRITICAL_MS"),
    ("WRITER_RETRY_INITIAL_S", "WRITER_RETRY_MAX_S"),
)


# ---------------------------------------------------------------- reading a file


@dataclass(frozen=True)
class LoadedConfig:
    """A config file that was read: where, how it was chosen, and what it sets.

    ``values`` maps each constant the file sets to its Python value (a direction-threshold
    table already merged over the defaults); ``keys`` are the ``table.name`` labels set.
    """

    path: Path
    source: str
    values: Mapping[str, Any]
    keys: frozenset[str]


def _closest(name: str, choices: list[str], form: str = "{}") -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {form.format(match[0])}?)" if match else ""


def parse_config(text: str, where: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The constants a config file's ``text`` sets, read and checked against ``KEYS``.

    ``where`` names the file in errors; ``defaults`` holds every constant's default (range
    checks and the direction-threshold merge read it). Raises ``ConfigError`` naming the file
    and the key: invalid TOML (with line and column), an unknown table or key (with the
    closest name), a wrong type, a value out of range, or a fixed key.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: invalid TOML: {error}") from None
    values: dict[str, Any] = {}
    tables = sorted(KEYS_BY_TABLE)
    for table, content in document.items():
        if table not in KEYS_BY_TABLE:
            raise ConfigError(f"{where}: unknown table [{table}]{_closest(table, tables, '[{}]')}")
        if not isinstance(content, dict):
            raise ConfigError(f"{where}: {table} must be a table ([{table}]), {_got(content)}")
        keys = KEYS_BY_TABLE[table]
        for name, raw in content.items():
            key = keys.get(name)
            if key is None:
                raise ConfigError(
                    f"{where}: unknown key [{table}] {name}{_closest(name, sorted(keys))}"
                )
            values[key.constant] = _read_value(key, raw, where, defaults)
    _check_order(values, where, defaults)
    return values


def _read_value(key: Key, raw: object, where: str, defaults: Mapping[str, Any]) -> Any:
    place = f"{where}: [{key.table}] {key.name}"
    if key.fixed is not None:
        raise ConfigError(f"{place} cannot be set in a config file: {key.fixed}")
    try:
        value = key.kind.read(raw)
    except _WrongValue as error:
        raise ConfigError(f"{place} {error}") from None
    problem = key.check(value, defaults) if key.check is not None else None
    if problem is not None:
        raise ConfigError(f"{place} {problem}, got {key.kind.show(value)!r}")
    default = defaults.get(key.constant)
    if isinstance(default, dict):
        return {**default, **value}
    return value


def _check_order(values: Mapping[str, Any], where: str, defaults: Mapping[str, Any]) -> None:
    by_constant = {key.constant: key for key in KEYS}
    for smaller, larger in ORDERED:
        if smaller not in values and larger not in values:
            continue
        low = values.get(smaller, defaults[smaller])
        high = values.get(larger, defaults[larger])
        if low > high:
            low_key, high_key = by_constant[smaller], by_constant[larger]
            raise ConfigError(
                f"{where}: [{low_key.table}] {low_key.name} ({low_key.kind.show(low)}) must "
                f"not exceed [{high_key.table}] {high_key.name} ({high_key.kind.show(high)})"
            )


def read_config(path: Path, source: str, defaults: Mapping[str, Any]) -> LoadedConfig:
    """Read and check the config file at ``path`` (see ``parse_config``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
    values = parse_config(text, str(path), defaults)
    by_constant = {key.constant: key.label for key in KEYS}
    return LoadedConfig(path, source, values, frozenset(by_constant[c] for c in values))


# ---------------------------------------------------------------- which file


def select_config_file(path: str | None) -> None:
    """Use ``path`` (the ``--config`` option) as the config file; call before anything
    imports ``mlpred_cli.config``. ``None`` goes back to the environment and default."""
    global _flag_path
    _flag_path = path


def default_config_path() -> Path:
    """``mlpred.toml`` in the user config directory (``~/.config/mlpred/`` on Linux)."""
    return Path(platformdirs.user_config_dir("mlpred", appauthor=False)) / CONFIG_FILE_NAME


def locate_config_file() -> tuple[Path, str] | None:
    """The config file to read (an absolute path) and how it was chosen, or ``None`` for
    all defaults.

    Raises ``ConfigError`` for an empty ``--config`` or ``MLPRED_CONFIG``; a named file that
    does not exist is reported when it is read.
    """
    if _flag_path is not None:
        if not _flag_path.strip():
            raise ConfigError("--config is empty: give a config file path, or leave it out")
        return Path(_flag_path).expanduser().resolve(), FROM_FLAG
    env_value = os.environ.get(CONFIG_ENV)
    if env_value is not None:
        if not env_value.strip():
            raise ConfigError(
                f"{CONFIG_ENV} is set but empty: set it to a config file path, or unset it"
            )
        return Path(env_value).expanduser().resolve(), FROM_ENV
    default = default_config_path()
    return (default, FROM_USER_DIR) if default.is_file() else None


def load_selected(defaults: Mapping[str, Any]) -> LoadedConfig | None:
    """Read the selected config file (``locate_config_file``) and remember it for
    ``loaded_config``; ``None`` when there is none."""
    global _loaded
    located = locate_config_file()
    _loaded = None if located is None else read_config(*located, defaults)
    return _loaded


def loaded_config() -> LoadedConfig | None:
    """The config file ``mlpred_cli.config`` applied, or ``None`` (all defaults)."""
    return _loaded


def keys_markdown(defaults: Mapping[str, Any]) -> str:
    """The keys as a Markdown table (key, type, default, meaning), for the README;
    ``defaults`` is ``mlpred_cli.config.DEFAULTS``."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in KEYS:
        default = defaults.get(key.constant)
        shown = "none" if default is None else _toml_text(key.kind.show(default))
        note = f" (fixed: {key.fixed})" if key.fixed else ""
        lines.append(
            f"| `[{key.table}] {key.name}` | {key.kind.name} | `{shown}` | {key.doc}{note} |"
        )
    return "\n".join(lines)


def _toml_text(value: Any) -> str:
    """A value as it is written in TOML (inline), for the documentation."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{name} = {item:g}" for name, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(f"{item:g}" for item in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:_}" if isinstance(value, int) and value >= 10_000 else str(value)
