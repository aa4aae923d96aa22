"""``mlpred serve`` in headless Chromium against a real uvicorn server, on both databases:
signing in (an HttpOnly cookie), the overview's charts and cards showing the API's figures,
filters kept in the URL, live updates without a reload (a new feed row, the window's count,
an outcome filled in), every page free of console errors, page errors and CSP violations,
the symbols table sorting, and the sign-in message without the cookie.

One browser per module; each test plants a small data set (2 days, 3 symbols, 2 model
versions) in a fresh database and serves it with a 0.5 s poll. Chromium comes from PATH
(tests/browser_support.py: skip locally, fail under CI). Waits poll with deadlines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from mlpred_cli.config import HORIZONS
from mlpred_cli.store.database import create_engine
from mlpred_cli.store.tables import predictions_table
from mlpred_cli.web.app import create_app
from mlpred_cli.web.auth import SESSION_COOKIE
from mlpred_cli.web.live import LiveSettings
from tests.browser_support import headless_chromium
from tests.factories import insert_predictions, prediction_row
from tests.monitor_scenarios import CANDLE, Scenario
from tests.web_support import BEARER, SYMBOLS, TOKEN, plant, read_only, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.timeout(120)

P = predictions_table.c
DAYS = 2
#: Playwright waits, in milliseconds.
WAIT_MS = 15_000
PAGES = ("/", "/timeseries", "/calibration", "/symbols", "/symbols/BTCUSDT", "/versions", "/feed")

#: A uPlot canvas with a visible size and at least one painted pixel inside ``selector``.
CANVAS_DRAWN_JS = """selector => Array.from(
  document.querySelectorAll(selector + ' canvas')
).some(c => {
    const box = c.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0 && c.width > 0 && c.height > 0)) return false;
    const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
})"""
#: The page has rendered its data: no load running, the summary line filled in.
SETTLED_JS = """() => {
    const summary = document.getElementById('summary');
    // the calibration page has no summary line
    const text = summary === null ? 'drawn' : summary.textContent.trim();
    return !document.body.classList.contains('is-loading') && text !== '' && text !== 'loading…';
}"""
#: What each page shows once drawn (a CSS selector that must match).
READY: dict[str, str] = {
    "/": "#per-hour canvas, #horizon-cards article.card",
    "/timeseries": "#chart-accuracy canvas",
    "/calibration": "#calibration canvas",
    "/symbols": "#symbols tbody tr",
    "/symbols/BTCUSDT": "#chart-accuracy canvas",
    "/versions": "#versions tbody tr",
    "/feed": "#feed tbody tr",
}
#: Records CSP violations (init scripts run outside the page's CSP).
CSP_LISTENER_JS = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});"""


# --------------------------------------------------------------------------- formatting


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """dashboard.js ``fmtPct``: ``(v * 100).toFixed(digits) + '%'`` (toFixed rounds the
    double's exact value half up), a dash for null."""
    if value is None:
        return "\u2013"  # an en dash, as the page shows
    scaled = Decimal(value * 100).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{scaled}%"


def fmt_int(value: int) -> str:
    """dashboard.js ``fmtInt``: ``toLocaleString('en-US')``."""
    return f"{value:,}"


# --------------------------------------------------------------------------- fixtures


@dataclass
class Served:
    """A planted database served by a running dashboard."""

    url: str
    base_url: str
    scenario: Scenario

    def api(self, name: str, **params: Any) -> dict[str, Any]:
        """``/api/<name>`` fetched with the bearer token."""
        response = httpx.get(
            f"{self.base_url}/api/{name}", params=params, headers=BEARER, timeout=20
        )
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document


@dataclass
class Watched:
    """A page with what it said while loading: console messages, uncaught errors, CSP
    violations and the URLs it requested."""

    page: Page
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"]

    def csp_messages(self) -> list[str]:
        return [text for _, text in self.console if "content security policy" in text.lower()]

    def csp_violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("() => window.__csp || []")
        return found

    def assert_clean(self, base_url: str) -> None:
        assert self.console_errors() == []
        assert self.page_errors == []
        assert self.csp_messages() == []
        assert self.csp_violations() == []
        assert self.requests, "the request listener saw nothing"
        foreign = [url for url in self.requests if not url.startswith((base_url, "data:"))]
        assert foreign == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    with headless_chromium() as launched:
        yield launched


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    """``db_url`` planted (DAYS days) and served by the dashboard with a 0.5 s poll."""
    scenario = plant(db_url, days=DAYS)
    app = create_app(read_only(db_url), token=TOKEN, settings=LiveSettings(refresh_s=0.5))
    try:
        with running_server(app) as server:
            yield Served(db_url, server.base_url, scenario)
    finally:
        app.app.state.dashboard.live.engine.dispose()


@pytest.fixture
def context(browser: Browser, served: Served) -> Iterator[BrowserContext]:
    """A fresh browser context (no cookie yet), closed before the server stops."""
    created = browser.new_context(viewport={"width": 1280, "height": 900})
    created.set_default_timeout(WAIT_MS)
    created.add_init_script(CSP_LISTENER_JS)
    yield created
    created.close()


def watch(context: BrowserContext) -> Watched:
    """A new page in ``context`` whose console, errors and requests are recorded."""
    page = context.new_page()
    watched = Watched(page)
    page.on("console", lambda message: watched.console.append((message.type, message.text)))
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("request", lambda request: watched.requests.append(request.url))
    return watched


def sign_in(context: BrowserContext, served: Served) -> Watched:
    """Open ``/login?token=...`` in a new page: redirected to the overview, signed in."""
    watched = watch(context)
    response = watched.page.goto(f"{served.base_url}/login?token={TOKEN}")
    assert response is not None and response.status == 200
    assert watched.page.url == f"{served.base_url}/"
    redirect = response.request.redirected_from
    assert redirect is not None and redirect.url.startswith(f"{served.base_url}/login")
    redirected = redirect.response()
    assert redirected is not None and redirected.status == 303
    return watched


def settle(page: Page, ready: str | None = None) -> None:
    """Wait until the page has drawn its data (and ``ready`` matches something)."""
    page.wait_for_function(SETTLED_JS)
    if ready:
        page.locator(ready).first.wait_for(state="attached")
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def card_figures(page: Page) -> dict[str, str]:
    """The horizon cards shown: horizon -> the big accuracy figure's text."""
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(Array.from(
            document.querySelectorAll('#horizon-cards article.card')
        ).map(card => [card.dataset.horizon, (card.querySelector('.big') || {}).textContent]))"""
    )
    return found


def expected_cards(document: dict[str, Any]) -> dict[str, str]:
    return {card["horizon"]: fmt_pct(card["accuracy"]) for card in document["horizons"]}


def wait_for_cards(page: Page, wanted: dict[str, str]) -> None:
    """Wait until the cards show exactly ``wanted`` (horizon -> accuracy text)."""
    page.wait_for_function(
        """wanted => {
            const cards = Array.from(document.querySelectorAll('#horizon-cards article.card'));
            const shown = Object.fromEntries(cards.map(
                card => [card.dataset.horizon, (card.querySelector('.big') || {}).textContent]));
            return JSON.stringify(shown) === JSON.stringify(wanted);
        }""",
        arg=wanted,
    )


def summary_count(page: Page) -> str:
    """The "<N> predictions in the window" figure of the summary line."""
    text: str = page.locator("#summary strong").first.inner_text()
    return text


# --------------------------------------------------------------------------- tests


def test_sign_in_then_the_overview_draws_charts_and_the_apis_figures(
    served: Served, context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    watched = sign_in(context, served)
    page = watched.page
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    assert SESSION_COOKIE in cookies
    assert cookies[SESSION_COOKIE]["httpOnly"] is True
    assert cookies[SESSION_COOKIE]["sameSite"] == "Strict"
    assert TOKEN not in cookies[SESSION_COOKIE]["value"]
    assert SESSION_COOKIE not in page.evaluate("() => document.cookie")

    settle(page, READY["/"])
    page.wait_for_function(CANVAS_DRAWN_JS, arg="#per-hour")
    overview = served.api("overview")
    assert [card["horizon"] for card in overview["horizons"]] == list(HORIZONS)
    assert all(card["accuracy"] is not None for card in overview["horizons"])
    wanted = expected_cards(overview)
    wait_for_cards(page, wanted)
    assert card_figures(page) == wanted
    assert summary_count(page) == fmt_int(overview["predictions"])
    assert overview["predictions"] == DAYS * 96 * len(SYMBOLS) * 2
    # the filter choices come from the API
    symbols = page.locator("#filters select[name=symbol] option")
    expect(symbols).to_have_count(1 + len(SYMBOLS))
    assert symbols.evaluate_all("options => options.map(o => o.value)") == ["", *SYMBOLS]
    # live: the stream is open and the poll's age is shown
    expect(page.locator("#connection")).to_contain_text("live")
    expect(page.locator("#updated")).to_have_text(re.compile(r"^updated \d+ s ago$"))
    expect(page.locator("#newest")).to_have_text(re.compile(r"newest prediction \d+ (s|min) ago"))
    watched.assert_clean(served.base_url)


def test_filters_live_in_the_url_and_survive_a_reload(
    served: Served, context: BrowserContext
) -> None:
    from playwright.sync_api import expect

    page = sign_in(context, served).page
    settle(page, READY["/"])
    everyone = served.api("overview")
    wait_for_cards(page, expected_cards(everyone))

    page.select_option("#filters select[name=horizon]", "1h")
    expect(page).to_have_url(f"{served.base_url}/?horizon=1h")
    one_hour = served.api("overview", horizon="1h")
    assert [card["horizon"] for card in one_hour["horizons"]] == ["1h"]
    wait_for_cards(page, expected_cards(one_hour))

    expect(page.locator("#filters select[name=symbol] option[value=ETHUSDT]")).to_have_count(1)
    page.select_option("#filters select[name=symbol]", "ETHUSDT")
    expect(page).to_have_url(f"{served.base_url}/?symbol=ETHUSDT&horizon=1h")
    eth = served.api("overview", symbol="ETHUSDT", horizon="1h")
    assert eth["filters"]["symbol"] == "ETHUSDT"
    assert eth["predictions"] * len(SYMBOLS) == everyone["predictions"]
    wait_for_cards(page, expected_cards(eth))
    expect(page.locator("#summary strong").first).to_have_text(fmt_int(eth["predictions"]))
    # the nav links carry the filters
    href = page.locator("#nav a[data-nav-base='/timeseries']").get_attribute("href")
    assert href == "/timeseries?symbol=ETHUSDT&horizon=1h"

    page.reload()
    assert page.url == f"{served.base_url}/?symbol=ETHUSDT&horizon=1h"
    expect(page.locator("#filters select[name=symbol]")).to_have_value("ETHUSDT")
    expect(page.locator("#filters select[name=horizon]")).to_have_value("1h")
    expect(page.locator("#filters select[name=days]")).to_have_value("7")
    settle(page, READY["/"])
    wait_for_cards(page, expected_cards(eth))
    expect(page.locator("#summary strong").first).to_have_text(fmt_int(eth["predictions"]))

    # a bad value in the URL: a plain one-line error page, no script
    response = page.goto(f"{served.base_url}/?symbol=ETHUSDT&horizon=2h")
    assert response is not None and response.status == 400
    lines = [line for line in page.locator("body").inner_text().splitlines() if line.strip()]
    assert lines[0].startswith("Error 400") and "horizon" in lines[0]
    assert page.locator("script").count() == 0


def test_new_predictions_and_outcomes_appear_without_a_reload(
    served: Served, context: BrowserContext
) -> None:
    feed = sign_in(context, served).page
    overview = watch(context).page
    overview.goto(f"{served.base_url}/")
    feed.goto(f"{served.base_url}/feed")
    settle(feed, READY["/feed"])
    settle(overview, READY["/"])
    before = served.api("overview")["predictions"]
    assert summary_count(overview) == fmt_int(before)
    for page in (feed, overview):
        page.evaluate("() => { window.__kept = 'no reload'; }")

    moment = datetime.now(UTC).replace(microsecond=0)
    newest_planted = served.scenario.end - CANDLE
    assert moment > newest_planted
    row = prediction_row("SOLUSDT", moment, model_version="v-live", signal_type="LONG")
    writer = create_engine(served.url)
    try:
        insert_predictions(writer, [row])
        with writer.connect() as conn:
            new_id = int(
                conn.execute(
                    sa.select(P.id).where(P.prediction_id == row["prediction_id"])
                ).scalar_one()
            )

        feed.wait_for_function(
            """id => {
                const top = document.querySelector('#feed tbody tr');
                return top !== null && top.dataset.id === String(id);
            }""",
            arg=new_id,
        )
        top = feed.locator("#feed tbody tr").first
        assert "v-live" in top.inner_text()
        cell = top.locator("td[data-horizon='15m']")
        assert cell.get_attribute("data-state") == "pending"
        assert "pending" in cell.inner_text()
        overview.wait_for_function(
            """wanted => {
                const strong = document.querySelector('#summary strong');
                return strong !== null && strong.textContent === wanted;
            }""",
            arg=fmt_int(before + 1),
        )
        # the new version's choices list the new model version too
        assert overview.locator("select[name=model_version] option[value='v-live']").count() == 1

        with writer.begin() as conn:
            updated = conn.execute(
                sa.update(predictions_table)
                .where(P.id == new_id)
                .values(actual_direction_15m="LONG", actual_return_15m=0.0031, accuracy_15m=True)
            )
            assert updated.rowcount == 1
    finally:
        writer.dispose()

    feed.wait_for_function(
        """id => {
            const td = document.querySelector(`#feed tr[data-id="${id}"] td[data-horizon="15m"]`);
            return td !== null && td.dataset.state === 'correct';
        }""",
        arg=new_id,
    )
    cell = feed.locator(f"#feed tr[data-id='{new_id}'] td[data-horizon='15m']")
    assert cell.inner_text().startswith("✓")
    assert "+0.31%" in cell.inner_text()
    for page in (feed, overview):
        assert page.evaluate("() => window.__kept") == "no reload"


def test_every_page_loads_cleanly_and_the_symbols_table_sorts(
    served: Served, context: BrowserContext
) -> None:
    watched = sign_in(context, served)
    page = watched.page
    for path in PAGES:
        response = page.goto(f"{served.base_url}{path}")
        assert response is not None and response.status == 200, path
        settle(page, READY[path])
        if "canvas" in READY[path]:
            page.wait_for_function(CANVAS_DRAWN_JS, arg="#content")
        assert page.locator("#content").get_attribute("data-page") is not None
    watched.assert_clean(served.base_url)
    # the symbol page asks the API about its symbol
    symbol_calls = [url for url in watched.requests if "/api/timeseries" in url]
    assert any("symbol=BTCUSDT" in url for url in symbol_calls)

    page.goto(f"{served.base_url}/symbols")
    settle(page, READY["/symbols"])
    key = "15m:ic"  # a mean of daily correlations: the planted symbols differ in it
    column = "#symbols tbody tr td:nth-child(5)"  # symbol, predictions, 15m accuracy, n, IC
    header = page.locator(f"#symbols th[data-sort-key='{key}']")

    def shown() -> tuple[list[str], list[float]]:
        names = page.locator("#symbols tbody tr td.sym").all_inner_texts()
        values = [float(text) for text in page.locator(column).all_inner_texts()]
        return names, values

    def sorted_as(direction: str) -> None:
        page.wait_for_function(
            """([key, direction]) => {
                const th = document.querySelector(`#symbols th[data-sort-key="${key}"]`);
                return th !== null && th.getAttribute('aria-sort') === direction;
            }""",
            arg=[key, direction],
        )

    ics = {row["symbol"]: row["by_horizon"]["15m"]["ic"] for row in served.api("symbols")["rows"]}
    assert None not in ics.values() and len(set(ics.values())) == len(SYMBOLS), ics
    first_names, _ = shown()
    assert sorted(first_names) == sorted(SYMBOLS)

    header.click()
    sorted_as("descending")
    down_names, down_values = shown()
    assert down_names == sorted(SYMBOLS, key=lambda s: -ics[s])
    assert down_values == sorted(down_values, reverse=True)
    assert down_values == [pytest.approx(ics[s], abs=5e-4) for s in down_names]

    header.click()
    sorted_as("ascending")
    up_names, up_values = shown()
    assert up_names == list(reversed(down_names))
    assert up_values == sorted(up_values)
    assert up_names != down_names
    watched.assert_clean(served.base_url)

    # the CSP listeners do see a violation: an inline script, refused by the policy
    page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.__inline = true;';
            document.body.append(script);
        }"""
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("() => window.__inline") is None
    assert any("script-src" in v for v in watched.csp_violations())
    assert watched.csp_messages() != []


def test_without_the_cookie_a_page_asks_to_sign_in(served: Served, context: BrowserContext) -> None:
    watched = watch(context)
    page = watched.page
    response = page.goto(f"{served.base_url}/")
    assert response is not None and response.status == 401
    text = page.locator("body").inner_text()
    assert "needs its token" in text and "/login?token=" in text
    assert page.locator("script").count() == 0

    wrong = page.goto(f"{served.base_url}/login?token=not-the-token")
    assert wrong is not None and wrong.status == 401
    assert context.cookies() == []
    assert "wrong or missing token" in page.locator("body").inner_text()

    # the failed document loads are the only console errors
    errors = watched.console_errors()
    assert errors, "Chromium reports a 401 document as a failed resource"
    assert all(e.startswith("Failed to load resource") and "401" in e for e in errors), errors
    assert watched.page_errors == []
    assert watched.csp_messages() == []

    # signed in, then the session goes: the page says so instead of failing silently
    signed = sign_in(context, served).page
    settle(signed, READY["/"])
    context.clear_cookies()
    signed.select_option("#filters select[name=horizon]", "4h")
    signed.locator("#error").wait_for(state="visible")
    assert "session expired" in signed.locator("#error").inner_text()
    assert "/login?token=" in signed.locator("#error").inner_text()
    assert signed.evaluate("() => window.location.pathname") == "/"
