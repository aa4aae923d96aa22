"""The dashboard's data: one poller's reading of the database and the views computed from
it, shared by every open page.

``LiveData.poll`` reads the pulse (a fixed set of queries, however many pages are open) and
moves ``version`` when it differs from the last one. A view is computed once per filter
and version and then served from memory, so many tabs on the same filter cost one
computation per change, and none between changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlpred_cli import config
from mlpred_cli.errors import InputError
from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings
from mlpred_cli.render.output import to_jsonable
from mlpred_cli.store.alert_rows import alert_rows
from mlpred_cli.store.dashboard_reads import (
    Pulse,
    WindowRollups,
    read_choices,
    read_feed,
    read_pulse,
    read_window_rollups,
)
from mlpred_cli.store.driver_errors import database_errors
from mlpred_cli.store.read_only import create_read_only_engine
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.web import views
from mlpred_cli.web.filters import DEFAULT_DAYS, DashboardFilter, parse_filter, parse_limit

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: The views ``LiveData.view`` serves (``/api/<name>``).
VIEWS: tuple[str, ...] = ("overview", "timeseries", "calibration", "symbols", "versions", "feed")


@dataclass(frozen=True)
class LiveSettings:
    """How the dashboard reads: poll interval, feed rows, chart hours, cached views, and
    the monitor settings whose freshness limits the overview applies."""

    refresh_s: float = config.WEB_REFRESH_S
    feed_rows: int = config.WEB_FEED_ROWS
    hours: int = config.WEB_HOURLY_HOURS
    cache_entries: int = config.WEB_CACHE_ENTRIES
    monitor: MonitorSettings = field(default_factory=lambda: DEFAULT_SETTINGS)


@dataclass(frozen=True)
class Reading:
    """One successful poll: when, what it read, and the version it gives the data."""

    polled_at: datetime
    pulse: Pulse
    version: str
    alerts: list[dict[str, Any]]


def _version(pulse: Pulse, alerts: list[dict[str, Any]]) -> str:
    state = {"pulse": pulse.__dict__, "alerts": alerts}
    text = json.dumps(to_jsonable(state), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LiveData:
    """The poller's state and the view cache over one read-only ``engine``."""

    def __init__(
        self,
        engine: Engine,
        settings: LiveSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or LiveSettings()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._reading: Reading | None = None
        self._error: str | None = None
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._computing: dict[tuple[Any, ...], threading.Lock] = {}
        #: Database round trips of the polls so far (``bench_serve`` compares them).
        self.polls = 0

    @property
    def reading(self) -> Reading | None:
        """The last successful poll (None before the first)."""
        return self._reading

    @property
    def error(self) -> str | None:
        """Why the last poll failed (None when it succeeded)."""
        return self._error

    def poll(self) -> bool:
        """Read the pulse; True when the data's version moved. A failure (the database
        down, say) is kept in ``error`` and raised."""
        now = self._clock()
        monitor = self.settings.monitor
        try:
            with database_errors(self.engine.url), self.engine.connect() as conn, conn.begin():
                pulse = read_pulse(
                    conn,
                    now=now,
                    lookback=monitor.freshness_lookback,
                    candle_interval=monitor.candle_interval,
                    feed_limit=self.settings.feed_rows,
                )
                alerts = views.alert_rows(alert_rows(conn, open_only=True))
        except Exception as error:
            self._error = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise
        self.polls += 1
        version = _version(pulse, alerts)
        with self._lock:
            changed = self._reading is None or self._reading.version != version
            self._reading = Reading(polled_at=now, pulse=pulse, version=version, alerts=alerts)
            self._error = None
        return changed

    def status(self) -> dict[str, Any]:
        """The poller's state: data version, time of the last poll, interval, error."""
        reading = self._reading
        return {
            "data_version": reading.version if reading else None,
            "polled_at": reading.polled_at if reading else None,
            "newest_prediction": reading.pulse.newest_prediction if reading else None,
            "newest_id": reading.pulse.max_id if reading else None,
            "refresh_s": self.settings.refresh_s,
            "error": self._error,
        }

    def _current(self) -> Reading:
        if self._reading is None:
            self.poll()
        assert self._reading is not None
        return self._reading

    def view(self, name: str, flt: DashboardFilter, limit: int | None = None) -> dict[str, Any]:
        """The JSON document of view ``name`` for ``flt`` at the current version."""
        if name not in VIEWS:
            raise KeyError(name)
        reading = self._current()
        key = (name, flt, limit, reading.version)
        found: dict[str, Any] = self._memo(
            key, lambda: to_jsonable(self._compute(name, flt, limit, reading))
        )
        return found

    def view_json(self, name: str, flt: DashboardFilter, limit: int | None = None) -> bytes:
        """``view`` encoded as JSON bytes (encoded once per version, like the view)."""
        reading = self._current()
        key = ("json", name, flt, limit, reading.version)

        def encode() -> bytes:
            document = self.view(name, flt, limit)
            return json.dumps(
                document, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")

        body: bytes = self._memo(key, encode)
        return body

    def cached_json(
        self, name: str, flt: DashboardFilter, limit: int | None = None
    ) -> bytes | None:
        """``view_json`` when it is already computed at the current version, else None
        (a lookup only: no database, so the server answers it on its event loop)."""
        reading = self._reading
        if reading is None:
            return None
        with self._lock:
            found = self._cache.get(("json", name, flt, limit, reading.version))
        return found if isinstance(found, bytes) else None

    def _memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key: concurrent callers of one key wait for the first."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._computing.pop(key, None)
                raise
            with self._lock:
                self._cache[key] = value
                while len(self._cache) > self.settings.cache_entries:
                    self._cache.popitem(last=False)
                self._computing.pop(key, None)
        return value

    def _window(self, flt: DashboardFilter, reading: Reading) -> WindowRollups:
        # one window read serves every view and horizon of a symbol / version / days choice
        base = DashboardFilter(flt.symbol, flt.model_version, None, flt.days)
        monitor = self.settings.monitor

        def read() -> WindowRollups:
            with database_errors(self.engine.url), self.engine.connect() as conn, conn.begin():
                return read_window_rollups(
                    conn,
                    base.selection(reading.polled_at),
                    now=reading.polled_at,
                    candle_interval=monitor.candle_interval,
                    hours=self.settings.hours,
                )

        window: WindowRollups = self._memo(("window", base, reading.version), read)
        return window

    def _choices(self, flt: DashboardFilter, reading: Reading) -> dict[str, list[str]]:
        # every symbol and version of the window, whatever the filter picked
        def read() -> dict[str, list[str]]:
            since, _ = flt.window(reading.polled_at)
            with database_errors(self.engine.url), self.engine.connect() as conn, conn.begin():
                symbols, versions = read_choices(conn, since)
            return {"symbols": symbols, "model_versions": versions}

        choices: dict[str, list[str]] = self._memo(("choices", flt.days, reading.version), read)
        return choices

    def _compute(
        self, name: str, flt: DashboardFilter, limit: int | None, reading: Reading
    ) -> dict[str, Any]:
        now = reading.polled_at
        document = views.window_document(flt, now, now, reading.version)
        if name == "feed":
            with database_errors(self.engine.url), self.engine.connect() as conn:
                records = read_feed(conn, flt.everywhere(), limit or self.settings.feed_rows)
            interval = self.settings.monitor.candle_interval
            return {**document, **views.feed(records, flt, now, interval)}
        window = self._window(flt, reading)
        if name == "overview":
            body = views.overview(
                window,
                flt,
                now=now,
                hours=self.settings.hours,
                fresh=views.freshness(reading.pulse, now, self.settings.monitor),
                alerts=reading.alerts,
                choices=self._choices(flt, reading),
            )
        elif name == "timeseries":
            body = views.timeseries(window, flt, now)
        elif name == "calibration":
            body = views.calibration(window, flt)
        elif name == "symbols":
            body = views.symbols(window, flt)
        elif name == "versions":
            body = views.versions(window, flt)
        else:
            raise KeyError(name)
        return {**document, **body}


def dashboard_view(
    database: DatabaseSource,
    name: str,
    *,
    symbol: str | None = None,
    model_version: str | None = None,
    horizon: str | None = None,
    days: int = DEFAULT_DAYS,
    limit: int | None = None,
) -> dict[str, Any]:
    """The document ``/api/<name>`` serves for these filters, read once from ``database``
    (opened read-only) without a server: ``overview``, ``timeseries``, ``calibration``,
    ``symbols``, ``versions`` or ``feed``. Raises ``InputError`` for a bad name or value."""
    if name not in VIEWS:
        raise InputError(f"name must be one of {', '.join(VIEWS)}, got {name!r:.40}")
    params = {
        key: [str(value)]
        for key, value in (
            ("symbol", symbol),
            ("model_version", model_version),
            ("horizon", horizon),
            ("days", days),
        )
        if value is not None
    }
    flt = parse_filter(params)
    rows = parse_limit({"limit": [str(limit)]}) if limit is not None else None
    engine = create_read_only_engine(database, statement_timeout_ms=config.WEB_STATEMENT_TIMEOUT_MS)
    try:
        return LiveData(engine).view(name, flt, rows)
    finally:
        engine.dispose()
