"""Settings: where the database is, and every constant a user may tune.

Database URL precedence: the ``--db`` option, then ``MLPRED_DATABASE_URL``, then the config
file's ``[database] url``, then an embedded SQLite file in the user's data directory.

The config file (``mlpred_cli.config_file``: ``--config``, ``MLPRED_CONFIG``, else
``mlpred.toml`` in the user config directory) is applied when this module is first imported:
its values replace the defaults below, so every ``from mlpred_cli.config import X`` and every
dataclass default built from them (``WriterSettings``, ``MonitorSettings``) sees them. An
invalid file makes the import raise ``ConfigError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import platformdirs

from mlpred_cli import config_file
from mlpred_cli.errors import ConfigError, InputError

DATABASE_URL_ENV = "MLPRED_DATABASE_URL"
LOG_LEVEL_ENV = "LOG_LEVEL"
DEFAULT_SQLITE_NAME = "mlpred.db"

#: Prediction horizons, in the order they appear in the schema and the raw outputs.
HORIZONS: tuple[str, ...] = ("15m", "1h", "4h", "12h")

#: How far ahead each horizon looks.
HORIZON_DELTAS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "12h": timedelta(hours=12),
}

#: |actual return| above which an outcome counts as LONG or SHORT rather than NEUTRAL.
DEFAULT_DIRECTION_THRESHOLDS: dict[str, float] = {
    "15m": 0.0015,
    "1h": 0.003,
    "4h": 0.007,
    "12h": 0.01,
}


def check_horizons(horizons: Iterable[str] | None) -> tuple[str, ...]:
    """The horizons asked for, in schema order (all when ``None``).

    Raises ``InputError`` naming the first unknown one.
    """
    if horizons is None:
        return HORIZONS
    wanted = list(horizons)
    unknown = [horizon for horizon in wanted if horizon not in HORIZONS]
    if unknown:
        raise InputError(f"unknown horizon {unknown[0]!r}: use one of {', '.join(HORIZONS)}")
    return tuple(horizon for horizon in HORIZONS if horizon in wanted)


def direction_thresholds(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The per-horizon direction thresholds: the defaults with ``overrides`` on top.

    Values are fractions (0.003 = 0.3 %). Raises ``InputError`` for an unknown horizon or a
    value that is not a finite number >= 0.
    """
    thresholds = dict(DEFAULT_DIRECTION_THRESHOLDS)
    for horizon, value in (overrides or {}).items():
        check_horizons([horizon])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"threshold for {horizon} must be a number, got {value!r}")
        if not 0 <= value < math.inf:
            raise InputError(f"threshold for {horizon} must be a finite number >= 0")
        thresholds[horizon] = float(value)
    return thresholds


SIGNAL_TYPES: tuple[str, ...] = ("LONG", "SHORT", "NEUTRAL")

#: Candle intervals mlpred understands, in minutes.
CANDLE_INTERVALS: dict[str, int] = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}


#: Defaults of the batched writer (``WriterSettings``, at the end of this module).
WRITER_BATCH_SIZE = 10
WRITER_FLUSH_INTERVAL_S = 1.0
WRITER_MAX_PENDING = 100_000
WRITER_MAX_BATCH_ROWS = 5_000
WRITER_CLOSE_TIMEOUT_S = 10.0
WRITER_RETRY_INITIAL_S = 0.05
WRITER_RETRY_MAX_S = 5.0
WRITER_SPOOL_AFTER_S = 5.0  # memory-only mode: a batch failing this long goes to disk
WRITER_WRITE_TIMEOUT_S = 15.0  # a write unanswered this long breaks its connection
WRITER_FSYNC_INTERVAL_S = 1.0  # the journal's fsync period under fsync="interval"
WRITER_SEGMENT_BYTES = 16 * 1024 * 1024  # a journal segment is sealed past this size
WRITER_DUPLICATE_WINDOW = 10_000

#: Mode of the data directory when mlpred creates it (an existing one keeps its mode).
DATA_DIR_MODE = 0o700


def default_data_dir() -> Path:
    """The per-user data directory that holds the embedded database and the spool."""
    return Path(platformdirs.user_data_dir("mlpred", appauthor=False))


def default_sqlite_url() -> str:
    """URL of the embedded SQLite database, creating its directory (mode 0700, parents
    with the usual mode) if needed; an existing directory keeps its mode."""
    data_dir = default_data_dir()
    data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    # Percent-encoded, so a '%', '?' or '#' in the home directory stays part of the path.
    return f"sqlite:///{quote(str(data_dir / DEFAULT_SQLITE_NAME))}"


#: Database URL of the config file (``[database] url``); ``None`` = the embedded file.
DATABASE_URL: str | None = None

#: Where ``locate_database_url`` found the URL.
DATABASE_FROM_FLAG = "--db"
DATABASE_FROM_ENV = DATABASE_URL_ENV
DATABASE_FROM_FILE = "config file"
DATABASE_FROM_DEFAULT = "embedded SQLite"


def locate_database_url(cli_value: str | None = None) -> tuple[str, str]:
    """The database URL and where it came from: ``--db`` (``cli_value``) >
    ``MLPRED_DATABASE_URL`` > the config file's ``[database] url`` > embedded SQLite.

    An empty ``cli_value`` or a set but empty ``MLPRED_DATABASE_URL`` raises ``ConfigError``:
    neither falls back to the embedded file.
    """
    if cli_value is not None:
        if not cli_value.strip():
            raise ConfigError(
                "--db is empty: give a database URL or a SQLite file path, or leave --db out "
                "for the embedded file"
            )
        return cli_value, DATABASE_FROM_FLAG
    env_value = os.environ.get(DATABASE_URL_ENV)
    if env_value is not None:
        if not env_value.strip():
            raise ConfigError(
                f"{DATABASE_URL_ENV} is set but empty: set it to a database URL, or unset it "
                "to use the embedded SQLite file"
            )
        return env_value, DATABASE_FROM_ENV
    if DATABASE_URL is not None:
        return DATABASE_URL, DATABASE_FROM_FILE
    return default_sqlite_url(), DATABASE_FROM_DEFAULT


def resolve_database_url(cli_value: str | None = None) -> str:
    """The database URL by the precedence of ``locate_database_url``."""
    return locate_database_url(cli_value)[0]


def log_level() -> str:
    """The configured ``LOG_LEVEL`` (DEBUG, INFO or WARNING), upper-cased."""
    return os.environ.get(LOG_LEVEL_ENV, "WARNING").strip().upper() or "WARNING"


# ---------------------------------------------------------------- analysis

#: Horizon whose accuracy a confidence bin reports when a row's ``signal_timeframe`` is not
#: one of HORIZONS.
PRIMARY_HORIZON_FALLBACK = "1h"

#: Edges of the ``signal_confidence`` bins of ``mlpred analyze``: [0, .5), [.5, .6), ...,
#: [.8, 1.0]; the last bin includes its upper edge.
CONFIDENCE_BIN_EDGES: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 1.0)

#: Equal-width bins on [0, 1] for the expected calibration error.
CALIBRATION_BINS = 10

#: Above this many rows with an outcome, ``analyze`` leaves out the pooled rank ICs (which
#: need every row) and reports the mean daily IC from the rollups instead.
POOLED_IC_MAX_ROWS = 2_000_000

#: Above this many rows with an outcome, ``accuracy`` and ``analyze`` leave out the intervals
#: corrected for overlapping outcome windows (they need every row: about 0.35 s per horizon
#: at this size) and show the naive ones only.
OVERLAP_MAX_ROWS = 200_000

#: Confidence level of the Wilson intervals reported with every accuracy.
INTERVAL_CONFIDENCE = 0.95

#: Window of ``mlpred analyze`` when no --days/--since/--until is given.
DEFAULT_ANALYZE_DAYS = 7.0

# ---------------------------------------------------------------- periodic report

#: Window of ``mlpred report`` when no --days/--since/--until is given.
DEFAULT_REPORT_DAYS = 7.0

#: The report's quintile and signal-return figures read realized returns row by row; beyond
#: this many rows with an outcome they use an even sample (every k-th id) and say so.
REPORT_SAMPLE_MAX_ROWS = 200_000

#: Bins of the report's histogram of daily ICs (equal width on [-1, 1]).
IC_HISTOGRAM_BINS = 20

#: A symbol needs this many scored rows at the primary horizon to be ranked best or worst.
REPORT_RANK_MIN_ROWS = 30

#: Above this many rows with an outcome the report leaves out the pooled rank ICs (each
#: needs every row; ``analyze`` goes up to ``POOLED_IC_MAX_ROWS``) and shows the mean daily
#: IC from the rollups, which it always shows.
REPORT_POOLED_IC_MAX_ROWS = 200_000

#: The paired model-version test and the ``mlpred check`` section cover the window's last
#: this many days (each reads rows; a 1-year report stays seconds).
REPORT_RECENT_DAYS = 7.0

# ---------------------------------------------------------------- candles and backfill

#: Rows per COPY / executemany batch of ``mlpred import-candles`` (one transaction overall).
CANDLE_IMPORT_BATCH_ROWS = 50_000

#: Predictions per chunk of ``mlpred backfill-actuals``; each chunk is its own transaction.
BACKFILL_CHUNK_ROWS = 50_000

#: Candle interval the backfill reads prices from when none is given.
DEFAULT_BACKFILL_INTERVAL = "15m"

#: Without --since, the backfill looks at predictions from this long before the newest
#: completed one (so late candles still get used); older gaps are retried only with --since.
BACKFILL_RETRY_WINDOW = timedelta(days=2)

#: Days of day partitions kept ready ahead of today (UTC) on a partitioned ml_predictions:
#: loggers, backfill runs, ``init-db --partitioned`` and ``partitions ensure`` create them.
PARTITION_DAYS_AHEAD = 7

# ---------------------------------------------------------------- prediction interpretation

#: Most recent candles of ``market_data`` kept for the indicators (older ones are dropped).
MAX_INDICATOR_CANDLES = 500

#: Probability the strongest LONG/SHORT horizon needs before raw outputs give a non-NEUTRAL
#: signal (softmax over three classes, so 1/3 is chance).
MIN_SIGNAL_CONFIDENCE = 0.6

# ---------------------------------------------------------------- feature importance and A/B

#: ``method`` of the snapshots ``mlpred feature-importance compute`` writes.
IMPORTANCE_METHOD = "spearman_ic"

#: Predictions with features and an outcome that ``feature-importance compute`` needs.
MIN_IMPORTANCE_ROWS = 30

#: Snapshots the sparkline of ``feature-importance show`` spans (the latest included).
SPARKLINE_SNAPSHOTS = 8

#: False discovery rate at which ``feature-importance`` marks a feature significant
#: (Benjamini-Hochberg q-value below it).
IMPORTANCE_FDR_LEVEL = 0.05

#: Significance level of the ``compare-models`` verdict.
COMPARE_ALPHA = 0.05

#: Pairs (same symbol and candle, both with an outcome) needed before ``compare-models``
#: uses the paired tests (McNemar, bootstrap) instead of the unpaired z-test.
MIN_PAIRED_PREDICTIONS = 30

#: Bootstrap resamples of the IC difference, and the seed that makes them reproducible.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601

# ---------------------------------------------------------------- monitoring (mlpred check)

#: Window ``mlpred check`` judges when no --days/--since/--until is given.
CHECK_DAYS = 7.0

#: Days at the start of a model version's history that form its reference period when no
#: explicit reference window is given (performance and drift compare against it).
REFERENCE_DAYS = 14

#: Significance levels of the drift and per-symbol tests, after Benjamini-Hochberg across
#: every test of one run: below the first a test warns, below the second it is critical.
WARNING_ALPHA = 0.01
CRITICAL_ALPHA = 0.001

#: Drift: reference-quantile bins of the PSI and Jensen-Shannon statistics (fewer when the
#: reference has ties or too few effective rows), and the smallest shift worth reporting as
#: the Wasserstein distance in reference standard deviations (warning, critical): with many
#: rows any shift is significant, so significance alone never raises an alert.
DRIFT_BINS = 10
DRIFT_MIN_EFFECT_WARNING = 0.1
DRIFT_MIN_EFFECT_CRITICAL = 0.25
#: Effective rows (n / autocorrelation time) each drift window needs before it is judged;
#: KS is reported only while the smaller window has at most KS_MAX_ROWS rows (larger ones
#: flag negligible shifts).
DRIFT_MIN_ROWS = 30
#: Shortest current window (after the reference) drift judges: shorter ones hold too few
#: of a long horizon's overlapping outcomes to estimate their autocorrelation (stable
#: 4-symbol model, 12 windows x 22 tests: 4 warnings at 1 day, 1 at 2 days, 0 at 3 and 7).
DRIFT_MIN_WINDOW = timedelta(days=3)
KS_MAX_ROWS = 2_000
#: At most this many rows of each window are read for drift (an even sample by id beyond).
DRIFT_MAX_ROWS = 50_000
#: Drift internals: an empty bin counts as this many rows (PSI stays finite); below this
#: many effective rows per bin the smaller window gets fewer bins; longest autocorrelation
#: lag summed; largest window the Wasserstein bootstrap draws (bigger ones are rescaled by
#: sqrt(1/n + 1/m)); autocorrelation is measured around the means of stretches of
#: DRIFT_STRETCH_LAGS correlation lengths (at least DRIFT_STRETCH_MIN_ROWS rows), so that a
#: level change inside a window does not pass for autocorrelation.
DRIFT_EMPTY_BIN_ROWS = 0.5
DRIFT_MIN_EFFECTIVE_ROWS_PER_BIN = 5.0
DRIFT_MAX_AUTOCORRELATION_LAG = 1_000
DRIFT_BOOTSTRAP_MAX_ROWS = 2_000
DRIFT_STRETCH_LAGS = 50
DRIFT_STRETCH_MIN_ROWS = 200
#: Seeded bootstrap of the Wasserstein null band.
DRIFT_BOOTSTRAP_RESAMPLES = 200
DRIFT_BOOTSTRAP_SEED = 20261201

#: Performance: one-sided CUSUM on the daily standardized figures (z-scores against the
#: reference), allowance k (in day standard errors) and decision limits h for warning and
#: critical (bench/bench_check_alarms.py measured them); a single day
#: below -EXTREME_DAY_Z is a warning on its own.
CUSUM_ALLOWANCE = 0.5
CUSUM_WARNING_LIMIT = 5.0
CUSUM_CRITICAL_LIMIT = 10.0
#: Standard errors of the reference mean added to the CUSUM allowance: the reference's own
#: error is shared by every day after it, so a CUSUM summing those days would add it up
#: (without it 26 % of stable simulated 60-day models went CRITICAL; with it 0.8 %).
CUSUM_REFERENCE_ALLOWANCE = 1.64
EXTREME_DAY_Z = 4.0
#: Scored rows a day (per model version and horizon) needs to enter the daily series, and
#: a symbol needs in each window before its own test runs.
PERFORMANCE_MIN_DAY_ROWS = 30
SYMBOL_MIN_ROWS = 100
#: Reference days with enough scored rows a performance series needs to be judged.
REFERENCE_MIN_DAYS = 5

#: Liveness: a symbol or model version seen in the last FRESHNESS_LOOKBACK that has logged
#: nothing for this many candles of DEFAULT_BACKFILL_INTERVAL (warning, critical).
STALE_CANDLES_WARNING = 4
STALE_CANDLES_CRITICAL = 16
FRESHNESS_LOOKBACK = timedelta(days=2)
#: Outcomes: the newest prediction with an outcome at a horizon is this much older than it
#: could be (now - horizon - one candle) (warning, critical): the backfill cron is down.
OUTCOME_LAG_WARNING = timedelta(hours=3)
OUTCOME_LAG_CRITICAL = timedelta(hours=12)

#: Data quality of the current window: share of rows with NaN/inf features and of
#: duplicate feature vectors (warning, critical), and the inference-time p95 limits (ms).
NAN_SHARE_WARNING = 0.01
NAN_SHARE_CRITICAL = 0.10
DUPLICATE_SHARE_WARNING = 0.05
DUPLICATE_SHARE_CRITICAL = 0.25
INFERENCE_P95_WARNING_MS = 500.0
INFERENCE_P95_CRITICAL_MS = 2_000.0

#: Webhook: seconds per attempt, attempts, and the first pause between attempts (doubled).
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF_S = 0.5

#: Dashboard (``mlpred serve``): where it listens, how often its one poller reads the
#: database, the statement timeout of its read-only sessions, the hours of the
#: predictions-per-hour chart, the views it keeps computed, the shortest token it accepts,
#: and the seconds between SSE heartbeats.
WEB_DEFAULT_HOST = "127.0.0.1"
WEB_DEFAULT_PORT = 8050
WEB_REFRESH_S = 15
WEB_STATEMENT_TIMEOUT_MS = 10_000
WEB_HOURLY_HOURS = 48
WEB_FEED_ROWS = 50
WEB_CACHE_ENTRIES = 128
WEB_TOKEN_MIN_LENGTH = 16
WEB_HEARTBEAT_S = 15.0


# ---------------------------------------------------------------- the config file

#: Every constant above with its built-in value, before the config file is applied.
DEFAULTS: dict[str, Any] = {name: value for name, value in globals().items() if name.isupper()}

#: The config file applied to this module's constants, or ``None`` (all defaults).
CONFIG_FILE = config_file.load_selected(DEFAULTS)
if CONFIG_FILE is not None:
    globals().update(CONFIG_FILE.values)


@dataclass(frozen=True)
class WriterSettings:
    """Defaults of the batched writer (config file ``[writer]``); the logger's constructor
    overrides them."""

    batch_size: int = WRITER_BATCH_SIZE
    flush_interval_s: float = WRITER_FLUSH_INTERVAL_S
    max_pending: int = WRITER_MAX_PENDING
    max_batch_rows: int = WRITER_MAX_BATCH_ROWS
    close_timeout_s: float = WRITER_CLOSE_TIMEOUT_S
    retry_initial_s: float = WRITER_RETRY_INITIAL_S
    retry_max_s: float = WRITER_RETRY_MAX_S
    spool_after_s: float = WRITER_SPOOL_AFTER_S
    write_timeout_s: float = WRITER_WRITE_TIMEOUT_S
    fsync_interval_s: float = WRITER_FSYNC_INTERVAL_S
    segment_bytes: int = WRITER_SEGMENT_BYTES
    duplicate_window: int = WRITER_DUPLICATE_WINDOW


@dataclass(frozen=True)
class EffectiveSetting:
    """One key of the config file as it applies now: ``config show`` prints these."""

    key: str
    value: Any
    source: str
    doc: str


def effective_settings() -> list[EffectiveSetting]:
    """Every config-file key with its effective value (as the file would write it) and
    where it came from: ``"default"``, the config file's path, or ``"fixed"``."""
    loaded = CONFIG_FILE
    settings = []
    namespace = globals()
    for key in config_file.KEYS:
        if key.fixed is not None:
            source = "fixed"
        elif loaded is not None and key.label in loaded.keys:
            source = str(loaded.path)
        else:
            source = "default"
        value = namespace[key.constant]
        shown = None if value is None else key.kind.show(value)
        settings.append(EffectiveSetting(key.label, shown, source, key.doc))
    return settings
