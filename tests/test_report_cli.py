"""``mlpred report`` end to end on both databases: the files it writes, the JSON sidecar
against ``analyze --format json``, byte-identical output, and its one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from mlpred_cli.outcomes.rollups import rebuild_rollups
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions
from tests.monitor_scenarios import Scenario, scenario_rows
from tests.test_report_content import SHARED_KEYS

pytestmark = pytest.mark.timeout(300)

START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 12
SINCE = (START + timedelta(days=2, hours=5)).isoformat()
UNTIL = (START + timedelta(days=DAYS, hours=-2)).isoformat()
#: The report's clock (SOURCE_DATE_EPOCH): just after the planted data ends.
EPOCH = str(int((START + timedelta(days=DAYS, minutes=5)).timestamp()))


@pytest.fixture
def planted(db_url: str) -> Iterator[str]:
    engine: Engine = create_engine(db_url)
    scenario = Scenario(
        days=DAYS, symbols=("BTCUSDT", "ETHUSDT"), accuracy=0.6, start_at=START, seed=5
    )
    rows = scenario_rows(scenario)
    keys = {key for row in rows for key in row}
    insert_predictions(engine, [{key: row.get(key) for key in keys} for row in rows])
    assert rebuild_rollups(engine).status == "done"
    engine.dispose()
    yield db_url


def report(db_url: str, *args: str, epoch: str = EPOCH) -> tuple[int, str, str]:
    return run_cli("--db", db_url, "report", *args, env={"SOURCE_DATE_EPOCH": epoch})


def test_report_file_and_sidecar_match_analyze(planted: str, tmp_path: Path) -> None:
    out, sidecar = tmp_path / "r.html", tmp_path / "r.json"
    window = ("--since", SINCE, "--until", UNTIL)
    code, stdout, stderr = report(planted, *window, "--out", str(out), "--json", str(sidecar))
    assert code == 0, stderr
    assert stdout.startswith(f"wrote {out} (") and "predictions" in stdout
    html = out.read_text("utf-8")
    lowered = html.lower()
    for forbidden in ("http://", "https://", "<script", "javascript:"):
        assert forbidden not in lowered
    assert html.count("<section") >= 12
    document = json.loads(sidecar.read_text("utf-8"))
    code, analyzed, _ = run_cli("--db", planted, "analyze", *window, "--format", "json")
    assert code == 0
    expected = json.loads(analyzed)
    for key in SHARED_KEYS:
        assert document[key] == expected[key], key
    # every per-horizon accuracy the report shows is printed in its HTML too
    for row in document["horizons"]:
        assert f"{row['accuracy'] * 100:.1f}" in html
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_same_data_and_time_give_the_same_bytes(planted: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    for target in (first, second):
        code, _, stderr = report(planted, "--days", "5", "--out", str(target))
        assert code == 0, stderr
    assert first.read_bytes() == second.read_bytes()
    later = tmp_path / "c.html"
    report(planted, "--days", "5", "--out", str(later), epoch=str(int(EPOCH) + 3600))
    assert later.read_bytes() != first.read_bytes()  # the window and dates moved


def test_out_dir_writes_a_dated_file_and_latest(planted: str, tmp_path: Path) -> None:
    folder = tmp_path / "reports" / "nightly"
    sidecar = folder / "latest.json"  # inside the folder the run creates
    code, stdout, stderr = report(
        planted, "--days", "3", "--out-dir", str(folder), "--json", str(sidecar)
    )
    assert code == 0, stderr
    assert json.loads(sidecar.read_text("utf-8"))["report"]["window"]["days"] == 3
    day = datetime.fromtimestamp(int(EPOCH), UTC).date().isoformat()
    dated, latest = folder / f"mlpred-report-{day}.html", folder / "latest.html"
    assert dated.read_bytes() == latest.read_bytes()
    assert f"wrote {latest}" in stdout
    latest.chmod(0o644)  # shared on purpose: the next run keeps that
    code, _, _ = report(
        planted, "--days", "4", "--out-dir", str(folder), epoch=str(int(EPOCH) + 60)
    )
    assert code == 0
    assert stat.S_IMODE(latest.stat().st_mode) == 0o644
    assert dated.read_bytes() == latest.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [dated.name, "latest.html", "latest.json"]
    )


def test_png_images_and_standard_output(planted: str, tmp_path: Path) -> None:
    code, stdout, stderr = report(planted, "--days", "5", "--images", "png", "--out", "-")
    assert code == 0, stderr
    assert stdout.lstrip().lower().startswith("<!doctype html")
    assert "data:image/png;base64," in stdout and "<svg" not in stdout


def test_an_empty_window_writes_a_report_that_says_so(planted: str, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    code, stdout, stderr = report(
        planted, "--since", "2020-01-01", "--until", "2020-01-02", "--out", str(out)
    )
    assert code == 0, stderr
    assert "no predictions in the window" in stdout
    assert "no predictions" in out.read_text("utf-8").lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "1e10"), "calendar"),
        (("--days", "inf"), "finite"),
        (("--out", "x.html", "--out-dir", "d"), "not both"),
        (("--days", "2", "--since", "2026-01-01"), "not both"),
        (("--out", "/nonexistent/folder/r.html"), "does not exist"),
    ],
)
def test_bad_options_are_one_line_errors(planted: str, args: tuple[str, ...], message: str) -> None:
    code, stdout, stderr = report(planted, *args)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr + stdout
    assert len(stderr.strip().splitlines()) <= 2


def test_an_unknown_image_format_is_a_usage_error(planted: str) -> None:
    code, _, stderr = report(planted, "--images", "gif")
    assert code == 2 and "'gif' is not one of 'svg', 'png'" in stderr


def test_a_bad_source_date_epoch_and_an_unreachable_database(planted: str, tmp_path: Path) -> None:
    code, _, stderr = report(planted, "--out", str(tmp_path / "r.html"), epoch="yesterday")
    assert code == 2 and "SOURCE_DATE_EPOCH" in stderr
    code, _, stderr = run_cli(
        "--db", "postgresql://nobody@127.0.0.1:1/none", "report", "--out", str(tmp_path / "r.html")
    )
    assert code == 1 and "Traceback" not in stderr
    assert not (tmp_path / "r.html").exists()


def test_without_the_extra_it_says_which_pip_install(tmp_path: Path) -> None:
    # a child interpreter in which jinja2 cannot be imported, as without the extra
    program = (
        "import sys; sys.modules['jinja2'] = None\n"
        "from mlpred_cli.cli import main\n"
        f"sys.argv = ['mlpred', '--db', {str(tmp_path / 'x.db')!r}, 'report']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'mlpred-cli[report]'" in result.stderr
    assert "jinja2" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.html"))
