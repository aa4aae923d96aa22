"""``mlpred report`` opened in headless Chromium: the file loads without console or page
errors, asks for nothing beyond itself, every chart has a visible size and every section is
shown, with SVG and with PNG charts; a window without predictions loads and says so.

On both databases (a planted 10-day, 3-symbol data set). One browser per module keeps the
file fast; Chromium comes from PATH (tests/browser_support.py: skip locally, fail under CI).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine

from mlpred_cli.cli.report_commands import SOURCE_DATE_EPOCH
from mlpred_cli.outcomes.rollups import rebuild_rollups
from tests.browser_support import headless_chromium
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions
from tests.monitor_scenarios import Scenario, scenario_rows

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(180)

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 10
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: The report is dated an hour after the data ends (SOURCE_DATE_EPOCH), whatever the clock.
REPORT_AT = START + timedelta(days=DAYS, hours=1)
SECTIONS = (
    "header",
    "status",
    "accuracy",
    "ic",
    "calibration",
    "returns",
    "signals",
    "symbols",
    "versions",
    "monitoring",
    "input-health",
    "definitions",
)

#: Per figure: its chart element's tag, rendered size and (for <img>) decoded width.
CHARTS_JS = """() => Array.from(document.querySelectorAll('figure')).map(figure => {
    const chart = figure.querySelector('svg, img');
    const box = chart ? chart.getBoundingClientRect() : null;
    return {
        section: figure.closest('section') ? figure.closest('section').id : null,
        tag: chart ? chart.tagName.toLowerCase() : null,
        width: box ? box.width : 0,
        height: box ? box.height : 0,
        complete: chart && chart.tagName === 'IMG' ? chart.complete : null,
        naturalWidth: chart && chart.tagName === 'IMG' ? chart.naturalWidth : null,
        src: chart && chart.tagName === 'IMG' ? chart.getAttribute('src').slice(0, 30) : null,
    };
})"""


@dataclass
class OpenedReport:
    """A report loaded in a page, with what the page said and asked for while loading."""

    page: Page
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, no request beyond the file and data URIs."""
        assert self.console_errors == []
        assert self.page_errors == []
        # the listener works: it saw the document itself
        assert self.url in self.requests
        foreign = [url for url in self.requests if not url.startswith(("file://", "data:"))]
        assert foreign == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    with headless_chromium() as launched:
        yield launched


@pytest.fixture
def opener(browser: Browser) -> Iterator[Any]:
    """``open(path) -> OpenedReport`` in a fresh browser context, closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def open_report(path: Path) -> OpenedReport:
        page = context.new_page()
        opened = OpenedReport(page=page, url=path.resolve().as_uri())
        page.on(
            "console",
            lambda message: (
                opened.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda error: opened.page_errors.append(str(error)))
        page.on("request", lambda request: opened.requests.append(request.url))
        response = page.goto(opened.url, wait_until="load")
        assert response is not None and response.ok
        return opened

    yield open_report
    context.close()


@pytest.fixture
def planted(db_url: str) -> str:
    """``db_url`` holding DAYS of predictions for SYMBOLS, outcomes filled, rollups built."""
    rows = scenario_rows(Scenario(days=DAYS, symbols=SYMBOLS, accuracy=0.6, start_at=START, seed=5))
    keys = {key for row in rows for key in row}  # rows without a due outcome lack its keys
    engine = create_engine(db_url)
    try:
        insert_predictions(engine, [{key: row.get(key) for key in keys} for row in rows])
        assert rebuild_rollups(engine).status == "done"
    finally:
        engine.dispose()
    return db_url


def _render(db_url: str, out: Path, since: datetime, until: datetime, images: str) -> str:
    code, stdout, stderr = run_cli(
        "--db",
        db_url,
        "report",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--out",
        str(out),
        "--images",
        images,
        env={SOURCE_DATE_EPOCH: str(int(REPORT_AT.timestamp()))},
    )
    assert code == 0, stderr
    assert out.is_file()
    return stdout


@pytest.mark.parametrize("images", ["svg", "png"])
def test_the_report_renders_cleanly_in_chromium(
    planted: str, tmp_path: Path, opener: Any, images: str
) -> None:
    out = tmp_path / f"report-{images}.html"
    _render(planted, out, START, START + timedelta(days=DAYS), images)
    opened: OpenedReport = opener(out)
    page = opened.page
    opened.assert_clean()
    assert page.locator("script").count() == 0

    for section in SECTIONS:
        located = page.locator(f"#{section}")
        assert located.count() == 1, section
        assert located.is_visible(), section
    assert f"{REPORT_AT:%Y-%m-%d %H:%M}" in page.locator("#header").inner_text()

    charts = page.evaluate(CHARTS_JS)
    assert charts, "the planted window should draw charts"
    assert any(chart["section"] == "accuracy" for chart in charts)
    for chart in charts:
        assert chart["tag"] == ("svg" if images == "svg" else "img"), chart
        assert chart["width"] > 0 and chart["height"] > 0, chart
        if images == "png":
            assert chart["src"].startswith("data:image/png"), chart
            assert chart["complete"] and chart["naturalWidth"] > 0, chart


def test_a_window_without_predictions_renders_and_says_so(
    planted: str, tmp_path: Path, opener: Any
) -> None:
    out = tmp_path / "empty.html"
    before = START - timedelta(days=7)
    stdout = _render(planted, out, before, START - timedelta(days=1), "svg")
    assert "no predictions" in stdout
    opened: OpenedReport = opener(out)
    page = opened.page
    opened.assert_clean()
    assert page.locator("#header").is_visible()
    status = page.locator("#status")
    assert status.is_visible()
    assert re.search(r"\bno predictions\b", status.inner_text(), re.IGNORECASE)
    assert page.locator("figure").count() == 0
