"""Regenerate docs/report-screenshot.png: the Status and Accuracy sections of `mlpred report`
on a planted demo database (30 days, 5 symbols, accuracy dropping in the last week).

Run from the repository root: ``python docs/make_report_screenshot.py``. Needs the report
extra, Playwright for Python and Chromium on PATH (Debian: ``apt-get install -y chromium``).
Dated by SOURCE_DATE_EPOCH and seeded, so reruns draw the same report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))

from browser import chromium  # noqa: E402

from mlpred_cli.outcomes.rollups import rebuild_rollups  # noqa: E402
from mlpred_cli.store.database import create_engine  # noqa: E402
from mlpred_cli.store.migrations import upgrade_to_head  # noqa: E402
from tests.factories import insert_predictions  # noqa: E402
from tests.monitor_scenarios import Scenario, scenario_rows  # noqa: E402

OUTPUT = REPO / "docs" / "report-screenshot.png"
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
SECTIONS = ("#status", "#accuracy")
VIEWPORT_WIDTH = 1000
#: White space kept around the sections, in CSS pixels.
MARGIN = 10


def plant(url: str) -> None:
    """A migrated database holding the demo scenario, outcomes filled and rollups built."""
    engine = create_engine(url)
    try:
        upgrade_to_head(engine)
        scenario = Scenario(
            days=DAYS,
            symbols=SYMBOLS,
            accuracy=0.60,
            degrade_from=DAYS - 7,  # a visible drop for the status cards to flag
            degraded_accuracy=0.50,
            start_at=START,
            seed=2026,
        )
        rows = scenario_rows(scenario)
        keys = {key for row in rows for key in row}  # rows without a due outcome lack its keys
        rows = [{key: row.get(key) for key in keys} for row in rows]
        for first in range(0, len(rows), 5_000):
            insert_predictions(engine, rows[first : first + 5_000])
        rebuild_rollups(engine)
    finally:
        engine.dispose()


def render(url: str, out: Path) -> None:
    """``mlpred report`` over the demo window, dated an hour after the data ends."""
    end = START + timedelta(days=DAYS)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(int((end + timedelta(hours=1)).timestamp())))
    command = [sys.executable, "-m", "mlpred_cli", "--db", url, "report"]
    command += ["--since", START.isoformat(), "--until", end.isoformat(), "--out", str(out)]
    subprocess.run(command, check=True, env=env, cwd=REPO)


def screenshot(report: Path, target: Path) -> None:
    """The union of SECTIONS' boxes (plus MARGIN), at VIEWPORT_WIDTH CSS pixels and scale 1."""
    with chromium() as browser:
        page = browser.new_page(
            viewport={"width": VIEWPORT_WIDTH, "height": 800}, device_scale_factor=1
        )
        page.goto(report.resolve().as_uri(), wait_until="load")
        boxes = []
        for selector in SECTIONS:
            box = page.locator(selector).bounding_box()
            if box is None:
                sys.exit(f"{selector} is not rendered in {report}")
            boxes.append(box)
        left = max(0.0, min(box["x"] for box in boxes) - MARGIN)
        top = max(0.0, min(box["y"] for box in boxes) - MARGIN)
        right = min(VIEWPORT_WIDTH, max(box["x"] + box["width"] for box in boxes) + MARGIN)
        bottom = max(box["y"] + box["height"] for box in boxes) + MARGIN
        clip = {"x": left, "y": top, "width": right - left, "height": bottom - top}
        page.screenshot(path=str(target), clip=clip, full_page=True)


def main() -> None:
    """Plant, render, shoot; prints where the PNG went."""
    with tempfile.TemporaryDirectory(prefix="mlpred-screenshot-") as scratch:
        directory = Path(scratch)
        url = f"sqlite:///{directory / 'demo.db'}"
        plant(url)
        report = directory / "report.html"
        render(url, report)
        screenshot(report, OUTPUT)
    print(f"wrote {OUTPUT.relative_to(REPO)} ({OUTPUT.stat().st_size / 1024:,.0f} KB)")


if __name__ == "__main__":
    main()
