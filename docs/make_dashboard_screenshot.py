"""Regenerate docs/dashboard-screenshot.png: the overview page of `mlpred serve` on a planted
demo database (14 days ending now, 5 symbols, two model versions, v1 degrading in its last
days, one open alert).

Run from the repository root: ``python docs/make_dashboard_screenshot.py``. Needs the web
extra, Playwright for Python and Chromium on PATH (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))

from browser import chromium  # noqa: E402

from mlpred_cli.monitor.check import run_check  # noqa: E402
from mlpred_cli.outcomes.rollups import rebuild_rollups  # noqa: E402
from mlpred_cli.store.database import create_engine  # noqa: E402
from mlpred_cli.store.migrations import upgrade_to_head  # noqa: E402
from mlpred_cli.web.app import create_app  # noqa: E402
from mlpred_cli.web.live import LiveSettings  # noqa: E402
from tests.factories import insert_predictions  # noqa: E402
from tests.monitor_scenarios import Scenario, recent_start, scenario_rows  # noqa: E402
from tests.web_support import TOKEN, read_only, running_server  # noqa: E402

OUTPUT = REPO / "docs" / "dashboard-screenshot.png"
DAYS = 14
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
VIEWPORT = {"width": 1280, "height": 900}


def plant(url: str) -> None:
    """A migrated database with the demo scenario, rollups built and `mlpred check` run."""
    engine = create_engine(url)
    try:
        upgrade_to_head(engine)
        for number, (version, days) in enumerate((("v1", DAYS), ("v2", 5))):
            scenario = Scenario(
                days=days,
                symbols=SYMBOLS,
                accuracy=0.60 if version == "v1" else 0.62,
                degrade_from=days - 3 if version == "v1" else None,
                degraded_accuracy=0.50,
                model_version=version,
                seed=2026 + number,
                start_at=recent_start(days),
            )
            rows = scenario_rows(scenario)
            keys = {key for row in rows for key in row}
            rows = [{key: row.get(key) for key in keys} for row in rows]
            for first in range(0, len(rows), 5_000):
                insert_predictions(engine, rows[first : first + 5_000])
        rebuild_rollups(engine)
        run_check(engine)  # records the alerts the overview lists
    finally:
        engine.dispose()


def screenshot(base_url: str, target: Path) -> None:
    """The overview, logged in with the token cookie, once its charts are drawn."""
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.goto(f"{base_url}/login?token={TOKEN}", wait_until="load")
        page.wait_for_selector("canvas", state="visible", timeout=20_000)
        page.wait_for_timeout(500)  # the first SSE tick fills "updated N s ago"
        page.screenshot(path=str(target), full_page=True)


def main() -> None:
    """Plant, serve, shoot; prints where the PNG went."""
    with tempfile.TemporaryDirectory(prefix="mlpred-dashboard-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'demo.db'}"
        plant(url)
        engine = read_only(url)
        try:
            app = create_app(engine, token=TOKEN, settings=LiveSettings(refresh_s=5))
            with running_server(app) as server:
                screenshot(server.base_url, OUTPUT)
        finally:
            engine.dispose()
    print(f"wrote {OUTPUT.relative_to(REPO)} ({OUTPUT.stat().st_size / 1024:,.0f} KB)")


if __name__ == "__main__":
    main()
