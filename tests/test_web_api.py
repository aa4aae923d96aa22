"""``mlpred serve``'s routes and JSON API through Starlette's TestClient: every route with and
without the token, the filter parameters' checks, and the figures against a direct
computation from the planted rows.

One planted database per backend serves the whole module (``planted``): SQLite, PostgreSQL
and PostgreSQL with ``ml_predictions`` partitioned by day.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

import mlpred_cli
from mlpred_cli.config import HORIZONS
from mlpred_cli.store.database import create_engine, run_autocommit
from mlpred_cli.store.tables import predictions_table
from mlpred_cli.web.app import create_app
from mlpred_cli.web.auth import SESSION_COOKIE
from mlpred_cli.web.live import LiveSettings
from tests.conftest import PARTITIONED_PG, require_pg_admin_url
from tests.web_support import BEARER, SYMBOLS, TOKEN, plant, read_only

P = predictions_table.c
PACKAGE_DIR = str(Path(mlpred_cli.__file__).resolve().parent)

PAGES = ("/", "/timeseries", "/calibration", "/symbols", "/symbols/BTCUSDT", "/versions", "/feed")
APIS = tuple(
    f"/api/{name}"
    for name in ("overview", "timeseries", "calibration", "symbols", "versions", "feed", "status")
)
ROUTES = (*PAGES, *APIS)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Planted:
    """A planted database: its URL, a normal engine to read the truth, the raw rows."""

    url: str
    engine: Engine
    rows: list[dict[str, Any]]


def _read_rows(engine: Engine) -> list[dict[str, Any]]:
    columns = [P.id, P.datetime, P.symbol, P.model_version]
    columns += [P[f"accuracy_{h}"] for h in HORIZONS]
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(*columns))]


@pytest.fixture(scope="module", params=["sqlite", "postgresql", PARTITIONED_PG])
def planted(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[Planted]:
    """Two days of planted predictions (v1 and v2, three symbols) for this module."""
    name: str | None = None
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("web-api") / "planted.db"
        shutil.copyfile(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        pg_admin_url = require_pg_admin_url(request)
        fixture = "pg_partitioned_template" if request.param == PARTITIONED_PG else "pg_template"
        template = request.getfixturevalue(fixture)
        name = f"mlpred_web_{uuid.uuid4().hex[:12]}"
        run_autocommit(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = pg_admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        plant(url, days=2)
        engine = create_engine(url)
        try:
            yield Planted(url, engine, _read_rows(engine))
        finally:
            engine.dispose()
    finally:
        if name is not None and pg_admin_url is not None:
            run_autocommit(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def read_engine(planted: Planted) -> Iterator[Engine]:
    """The dashboard's read-only engine on the planted database."""
    engine = read_only(planted.url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def client(read_engine: Engine) -> Iterator[TestClient]:
    """A TestClient (lifespan running: the poller polls) of an app guarded by ``TOKEN``."""
    app = create_app(read_engine, token=TOKEN, settings=LiveSettings(refresh_s=0.5))
    with TestClient(app) as test_client:
        yield test_client


def clean(response: httpx.Response) -> httpx.Response:
    """``response``, checked to leak neither a stack trace nor the package's files."""
    body = response.text
    assert "Traceback" not in body
    assert PACKAGE_DIR not in body
    assert "mlpred_cli/" not in body and '.py"' not in body
    return response


def api(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    """The JSON document of an authorised GET ``path`` (checked to be a 200)."""
    response = clean(client.get(path, params=params, headers=BEARER))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def when(text: str) -> datetime:
    """An ISO timestamp from the API as an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return moment


# --------------------------------------------------------------------------- routes and auth


def test_every_route_answers_with_the_token(client: TestClient) -> None:
    for path in ROUTES:
        response = clean(client.get(path, headers=BEARER))
        assert response.status_code == 200, (path, response.text)
        if path.startswith("/api/"):
            assert response.headers["content-type"].startswith("application/json")
            assert "data_version" in response.json()
        else:
            assert response.headers["content-type"].startswith("text/html")
            assert '<main id="content"' in response.text
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Cookie": f"{SESSION_COOKIE}={TOKEN}"},
        {"Cookie": f"{SESSION_COOKIE}={'0' * 64}"},
        {"Cookie": f"other={TOKEN}"},
    ],
    ids=[
        "none",
        "wrong-bearer",
        "longer-bearer",
        "basic",
        "token-as-cookie",
        "forged-cookie",
        "other-cookie",
    ],
)
def test_every_route_refuses_without_the_token(client: TestClient, headers: dict[str, str]) -> None:
    for path in (*ROUTES, "/events"):
        response = clean(client.get(path, headers=headers))
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].lower().startswith("bearer")
        if path.startswith("/api/") or path == "/events":
            assert response.headers["content-type"].startswith("application/json")
            error = response.json()["error"]
            assert isinstance(error, str) and "\n" not in error and error
        else:
            assert response.headers["content-type"].startswith("text/html")
            assert '<main id="content"' not in response.text
            assert "/login" in response.text
        assert "data_version" not in response.text
        assert "BTCUSDT" not in response.text


def test_login_sets_a_session_cookie_that_is_not_the_token(read_engine: Engine) -> None:
    app = create_app(read_engine, token=TOKEN, settings=LiveSettings(refresh_s=0.5))
    with TestClient(app) as browser:
        assert browser.get("/api/overview").status_code == 401
        response = clean(browser.get("/login", params={"token": TOKEN}, follow_redirects=False))
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in attributes
        assert "samesite=strict" in attributes
        assert "path=/" in attributes
        value = cookie.split(";")[0].split("=", 1)[1]
        assert cookie.split("=")[0] == SESSION_COOKIE
        assert value and value != TOKEN and TOKEN not in cookie
        # the cookie the client now holds authorises every route, without a bearer header
        assert browser.cookies.get(SESSION_COOKIE) == value
        for path in ROUTES:
            assert clean(browser.get(path)).status_code == 200, path
        # and it is tied to the token: another app with another token refuses it
        other = create_app(read_engine, token=TOKEN[::-1], settings=LiveSettings(refresh_s=0.5))
        with TestClient(other) as stranger:
            cookie_header = {"Cookie": f"{SESSION_COOKIE}={value}"}
            assert stranger.get("/api/overview", headers=cookie_header).status_code == 401
        # logging out drops it
        assert browser.get("/logout", follow_redirects=False).status_code == 303
        assert SESSION_COOKIE not in browser.cookies
        assert browser.get("/api/overview").status_code == 401


@pytest.mark.parametrize(
    "given", ["", "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), f" {TOKEN}"]
)
def test_login_with_a_wrong_token_is_refused(read_engine: Engine, given: str) -> None:
    app = create_app(read_engine, token=TOKEN, settings=LiveSettings(refresh_s=0.5))
    with TestClient(app) as browser:
        response = clean(browser.get("/login", params={"token": given}, follow_redirects=False))
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert not browser.cookies
        assert browser.get("/api/overview").status_code == 401


def test_static_assets_need_no_token(client: TestClient) -> None:
    response = client.get("/static/dashboard.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert client.get("/static/nothing-here.js").status_code == 404


# --------------------------------------------------------------------------- filter checks

BAD_FILTERS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("days-zero", [("days", "0")], "days"),
    ("days-text", [("days", "abc")], "days"),
    ("days-huge", [("days", "99999")], "days"),
    ("days-negative", [("days", "-3")], "days"),
    ("days-fraction", [("days", "1.5")], "days"),
    ("horizon", [("horizon", "2h")], "horizon"),
    ("symbol-21", [("symbol", "A" * 21)], "symbol"),
    ("symbol-control", [("symbol", "BTC\x01USDT")], "symbol"),
    ("symbol-newline", [("symbol", "BTC\nUSDT")], "symbol"),
    ("symbol-spaces", [("symbol", " BTCUSDT")], "symbol"),
    ("version-51", [("model_version", "v" * 51)], "model_version"),
    ("version-control", [("model_version", "v1\x7f")], "model_version"),
    ("repeated", [("symbol", "BTCUSDT"), ("symbol", "ETHUSDT")], "symbol"),
    ("repeated-days", [("days", "1"), ("days", "7")], "days"),
    ("unknown", [("colour", "red")], "colour"),
]
BAD_IDS = [case[0] for case in BAD_FILTERS]


def _one_line_error(response: httpx.Response, parameter: str) -> str:
    clean(response)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert list(document) == ["error"]
    error = document["error"]
    assert isinstance(error, str) and error.strip() and "\n" not in error and "\r" not in error
    assert parameter in error
    return str(error)


VIEWS = ("overview", "timeseries", "calibration", "symbols", "versions", "feed")


@pytest.mark.parametrize(("case", "params", "parameter"), BAD_FILTERS, ids=BAD_IDS)
def test_a_bad_filter_is_a_one_line_json_400(
    client: TestClient, case: str, params: list[tuple[str, str]], parameter: str
) -> None:
    for name in VIEWS:
        response = client.get(f"/api/{name}", params=params, headers=BEARER)
        _one_line_error(response, parameter)


def test_the_feed_limit_is_checked(client: TestClient) -> None:
    for limit in ("0", "501", "-1", "ten", "1e2", "50.0", "9999999"):
        response = client.get("/api/feed", params={"limit": limit}, headers=BEARER)
        _one_line_error(response, "limit")
    response = client.get("/api/feed", params=[("limit", "5"), ("limit", "6")], headers=BEARER)
    _one_line_error(response, "limit")


def test_limit_is_refused_on_another_view(client: TestClient) -> None:
    for name in VIEWS[:-1]:
        response = client.get(f"/api/{name}", params={"limit": "5"}, headers=BEARER)
        _one_line_error(response, "limit")


def test_the_feed_limit_bounds_are_accepted(client: TestClient, planted: Planted) -> None:
    assert len(api(client, "/api/feed", limit=1)["rows"]) == 1
    assert len(api(client, "/api/feed", limit=500)["rows"]) == min(500, len(planted.rows))


def test_events_takes_no_parameters(client: TestClient) -> None:
    _one_line_error(client.get("/events", params={"days": "7"}, headers=BEARER), "parameters")


@pytest.mark.parametrize(("case", "params", "parameter"), BAD_FILTERS, ids=BAD_IDS)
def test_a_bad_filter_on_a_page_is_a_plain_400_page(
    client: TestClient, case: str, params: list[tuple[str, str]], parameter: str
) -> None:
    for path in PAGES:
        response = clean(client.get(path, params=params, headers=BEARER))
        assert response.status_code == 400, path
        assert response.headers["content-type"].startswith("text/html")
        assert '<main id="content"' not in response.text
        assert "<script" not in response.text
        text = response.text
        lines = [line for line in text.splitlines() if "Error 400" in line and "<p>" in line]
        assert len(lines) == 1 and parameter in lines[0], (path, text)


def test_a_bad_symbol_in_the_path_is_a_400_page(client: TestClient) -> None:
    for symbol in ("%01", "A" * 21, "%20BTC", "BTC%7F"):
        response = clean(client.get(f"/symbols/{symbol}", headers=BEARER))
        assert response.status_code == 400, symbol
        assert "symbol" in response.text and '<main id="content"' not in response.text
    # a newline does not match the route at all: a plain 404 page
    response = clean(client.get("/symbols/BTC%0AUSDT", headers=BEARER))
    assert response.status_code == 404 and '<main id="content"' not in response.text


def test_unknown_routes_and_methods_are_one_line_errors(client: TestClient) -> None:
    response = clean(client.get("/api/nothing", headers=BEARER))
    assert response.status_code == 404 and response.json() == {"error": "not found"}
    response = clean(client.post("/api/overview", headers=BEARER))
    assert response.status_code == 405 and list(response.json()) == ["error"]
    response = clean(client.get("/nothing", headers=BEARER))
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")


def test_accepted_filters_are_echoed(client: TestClient) -> None:
    document = api(  # the feed: the cheapest view that echoes every filter
        client, "/api/feed", symbol="ETHUSDT", model_version="v2", horizon="4h", days="30"
    )
    assert document["filters"] == {
        "symbol": "ETHUSDT", "model_version": "v2", "horizon": "4h", "days": 30,
    }  # fmt: skip
    assert document["window"]["days"] == 30
    empty = api(client, "/api/feed", symbol="", model_version="", horizon="", days="")
    assert empty["filters"] == {"symbol": None, "model_version": None, "horizon": None, "days": 7}


def test_status_refuses_unknown_parameters(client: TestClient) -> None:
    _one_line_error(client.get("/api/status", params={"colour": "red"}, headers=BEARER), "colour")


# --------------------------------------------------------------------------- figures


def _window(document: dict[str, Any]) -> tuple[datetime, datetime]:
    since, until = when(document["window"]["since"]), when(document["window"]["until"])
    days = document["window"]["days"]
    midnight = datetime.combine(until.astimezone(UTC).date(), time(), tzinfo=UTC)
    assert since == midnight - timedelta(days=days - 1)
    return since, until


def _selected(
    planted: Planted,
    since: datetime,
    until: datetime,
    symbol: str | None = None,
    version: str | None = None,
) -> list[dict[str, Any]]:
    return [
        row
        for row in planted.rows
        if since <= row["datetime"] <= until
        and (symbol is None or row["symbol"] == symbol)
        and (version is None or row["model_version"] == version)
    ]


def _truth(rows: list[dict[str, Any]], horizon: str) -> tuple[int, float | None]:
    known = [row[f"accuracy_{horizon}"] for row in rows if row[f"accuracy_{horizon}"] is not None]
    return len(known), (sum(bool(value) for value in known) / len(known) if known else None)


FILTERS: list[dict[str, str]] = [
    {},
    {"days": "1"},
    {"symbol": "BTCUSDT"},
    {"model_version": "v1"},
    {"symbol": "SOLUSDT", "model_version": "v2", "days": "2"},
    {"horizon": "12h", "symbol": "ETHUSDT"},
    {"symbol": "NOSUCH"},
]


@pytest.mark.parametrize(
    "params", FILTERS, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items())
)
def test_overview_figures_match_the_planted_rows(
    client: TestClient, planted: Planted, params: dict[str, str]
) -> None:
    document = api(client, "/api/overview", **params)
    since, until = _window(document)
    rows = _selected(planted, since, until, params.get("symbol"), params.get("model_version"))
    assert document["predictions"] == len(rows)
    expected = [params["horizon"]] if "horizon" in params else list(HORIZONS)
    assert [card["horizon"] for card in document["horizons"]] == expected
    for card in document["horizons"]:
        scored, accuracy = _truth(rows, card["horizon"])
        assert card["predictions"] == len(rows)
        assert card["scored"] == scored
        if accuracy is None:
            assert card["accuracy"] is None
        else:
            assert card["accuracy"] == pytest.approx(accuracy, abs=1e-12)
            assert card["accuracy_low"] <= card["accuracy"] <= card["accuracy_high"]
        assert card["scored_share"] == (pytest.approx(scored / len(rows)) if rows else None)


def test_filters_change_the_figures(client: TestClient, planted: Planted) -> None:
    everything = api(client, "/api/overview")
    assert everything["predictions"] == len(planted.rows)  # 2 days fit in the default 7
    today = api(client, "/api/overview", days="1")
    # the planted history starts two days back: days=1 keeps today's rows only
    assert 0 <= today["predictions"] < everything["predictions"]
    by_symbol = {s: api(client, "/api/overview", symbol=s)["predictions"] for s in SYMBOLS}
    assert sum(by_symbol.values()) == everything["predictions"]
    assert all(0 < count < everything["predictions"] for count in by_symbol.values())
    v1 = api(client, "/api/overview", model_version="v1")
    v2 = api(client, "/api/overview", model_version="v2")
    assert v1["predictions"] + v2["predictions"] == everything["predictions"]
    # v1 is planted at 60 % accuracy and v2 at 56 %: their figures differ
    assert [c["accuracy"] for c in v1["horizons"]] != [c["accuracy"] for c in v2["horizons"]]
    one = api(client, "/api/overview", horizon="4h")
    full = next(card for card in everything["horizons"] if card["horizon"] == "4h")
    assert one["horizons"] == [full]
    # the choices list every symbol and version of the window, whatever the filter
    for document in (everything, v1, one):
        assert document["choices"] == {"symbols": sorted(SYMBOLS), "model_versions": ["v1", "v2"]}


def test_symbol_rows_sum_to_the_total(client: TestClient, planted: Planted) -> None:
    overview = api(client, "/api/overview")
    document = api(client, "/api/symbols")
    rows = document["rows"]
    assert sorted(row["symbol"] for row in rows) == sorted(SYMBOLS)
    assert sum(row["predictions"] for row in rows) == overview["predictions"]
    since, until = _window(document)
    for card in overview["horizons"]:
        horizon = card["horizon"]
        assert sum(row["by_horizon"][horizon]["n"] for row in rows) == card["scored"]
        for row in rows:
            n, accuracy = _truth(_selected(planted, since, until, row["symbol"]), horizon)
            assert row["by_horizon"][horizon]["n"] == n
            assert row["by_horizon"][horizon]["accuracy"] == pytest.approx(accuracy)
    assert set(document["base_rate"]) == set(HORIZONS)
    counts = [row["predictions"] for row in rows]
    assert counts == sorted(counts, reverse=True)
    single = api(client, "/api/symbols", symbol="ETHUSDT", horizon="1h")
    assert [row["symbol"] for row in single["rows"]] == ["ETHUSDT"]
    assert list(single["rows"][0]["by_horizon"]) == ["1h"]


def test_versions_list_v1_and_v2(client: TestClient, planted: Planted) -> None:
    overview = api(client, "/api/overview")
    document = api(client, "/api/versions")
    rows = {row["model_version"]: row for row in document["rows"]}
    assert set(rows) == {"v1", "v2"}
    assert sum(row["predictions"] for row in rows.values()) == overview["predictions"]
    since, until = _window(document)
    for version, row in rows.items():
        selected = _selected(planted, since, until, version=version)
        assert row["predictions"] == len(selected)
        assert row["first_day"] == min(r["datetime"] for r in selected).date().isoformat()
        assert row["last_day"] == max(r["datetime"] for r in selected).date().isoformat()
        for horizon in HORIZONS:
            n, accuracy = _truth(selected, horizon)
            assert row["by_horizon"][horizon]["n"] == n
            assert row["by_horizon"][horizon]["accuracy"] == pytest.approx(accuracy)
    only = api(client, "/api/versions", model_version="v2")
    assert [row["model_version"] for row in only["rows"]] == ["v2"]


def test_timeseries_days_add_up(client: TestClient, planted: Planted) -> None:
    document = api(client, "/api/timeseries", days="5")
    overview = api(client, "/api/overview", days="5")
    since, until = _window(document)
    expected_days = [int((since + timedelta(days=k)).timestamp()) for k in range(5)]
    scored = {card["horizon"]: card["scored"] for card in overview["horizons"]}
    assert [series["horizon"] for series in document["series"]] == list(HORIZONS)
    for series in document["series"]:
        assert series["t"] == expected_days
        assert sum(series["n"]) == scored[series["horizon"]]
        for k, start in enumerate(series["t"]):
            day = datetime.fromtimestamp(start, UTC)
            rows = _selected(planted, day, min(day + timedelta(days=1), until))
            rows = [row for row in rows if row["datetime"] < day + timedelta(days=1)]
            n, accuracy = _truth(rows, series["horizon"])
            assert series["n"][k] == n
            assert series["accuracy"][k] == (None if accuracy is None else pytest.approx(accuracy))


def test_calibration_agrees_with_the_overview(client: TestClient) -> None:
    overview = {card["horizon"]: card for card in api(client, "/api/overview")["horizons"]}
    document = api(client, "/api/calibration")
    for entry in document["horizons"]:
        card = overview[entry["horizon"]]
        assert entry["n"] == card["scored"]
        assert entry["accuracy"] == pytest.approx(card["accuracy"])
        assert sum(b["n"] for b in entry["bins"]) == entry["n"]
        assert all(b["low"] < b["high"] for b in entry["bins"])


def test_feed_is_newest_first_and_honours_limit_and_symbol(
    client: TestClient, planted: Planted
) -> None:
    newest = sorted(planted.rows, key=lambda row: (row["datetime"], row["id"]), reverse=True)
    document = api(client, "/api/feed", limit=7)
    assert [row["id"] for row in document["rows"]] == [row["id"] for row in newest[:7]]
    moments = [when(row["datetime"]) for row in document["rows"]]
    assert moments == sorted(moments, reverse=True)
    assert len(api(client, "/api/feed")["rows"]) == 50  # the default
    eth = api(client, "/api/feed", symbol="ETHUSDT", model_version="v1", limit=12)
    expected = [r["id"] for r in newest if r["symbol"] == "ETHUSDT" and r["model_version"] == "v1"]
    assert [row["id"] for row in eth["rows"]] == expected[:12]
    assert {(row["symbol"], row["model_version"]) for row in eth["rows"]} == {("ETHUSDT", "v1")}
    # days does not apply to the feed; horizon narrows the outcome cells
    one = api(client, "/api/feed", days="1", horizon="15m", limit=3)
    assert [row["id"] for row in one["rows"]] == [row["id"] for row in newest[:3]]
    assert all(list(row["by_horizon"]) == ["15m"] for row in one["rows"])
    oldest = api(client, "/api/feed", limit=500)["rows"][-1]
    due = when(oldest["by_horizon"]["15m"]["due_at"]) - when(oldest["datetime"])
    assert due == timedelta(minutes=30)  # the candle at t + 15m has closed


def test_feed_outcomes_match_the_rows(client: TestClient, planted: Planted) -> None:
    by_id = {row["id"]: row for row in planted.rows}
    for row in api(client, "/api/feed", limit=200)["rows"]:
        truth = by_id[row["id"]]
        for horizon, cell in row["by_horizon"].items():
            assert cell["correct"] == truth[f"accuracy_{horizon}"]
            assert (cell["actual_direction"] is None) == (truth[f"accuracy_{horizon}"] is None)


def test_status_reports_the_poller(client: TestClient, planted: Planted) -> None:
    status = api(client, "/api/status")
    assert status["data_version"] == api(client, "/api/overview")["data_version"]
    assert status["refresh_s"] == 0.5
    assert (
        status["newest_id"] == max(planted.rows, key=lambda row: (row["datetime"], row["id"]))["id"]
    )
    assert when(status["newest_prediction"]) == max(row["datetime"] for row in planted.rows)


def test_status_counts_the_clients(client: TestClient) -> None:
    assert api(client, "/api/status")["clients"] == 0
