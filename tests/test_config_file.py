"""The TOML config file: which file is read, every key checked against ``config_file.KEYS``,
its values applied at the import of ``mlpred_cli.config`` (so behaviour is tested in a
subprocess), and ``mlpred config show``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from mlpred_cli import config, config_file
from mlpred_cli.config_file import KEYS, parse_config
from mlpred_cli.errors import ConfigError
from tests.cli_helpers import run_cli
from tests.factories import insert_predictions, prediction_row

REPO = Path(__file__).resolve().parents[1]


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any config or database setting, with a
    private user config directory (so a real ~/.config/mlpred/mlpred.toml is never read)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (config_file.CONFIG_ENV, config.DATABASE_URL_ENV)
    }
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.update(extra)
    return env


def mlpred(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m mlpred_cli ARGS`` in a fresh interpreter (the config applies at import)."""
    return subprocess.run(
        [sys.executable, "-m", "mlpred_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_environment(tmp_path, **env),
        timeout=120,
        check=False,
    )


def write_config(tmp_path: Path, text: str, name: str = "mlpred.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- behaviour, in a subprocess


def test_file_sets_database_and_analyze_window(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """``[database] url`` picks the database and ``[analysis] default_days`` the window of a
    plain ``analyze``: of rows 1 hour and 3 days old, only the first is in a 1-day window."""
    now = datetime.now(UTC)
    insert_predictions(
        engine, [prediction_row("BTCUSDT", now - timedelta(hours=1)),
                 prediction_row("BTCUSDT", now - timedelta(days=3))]
    )  # fmt: skip
    code, out, err = run_cli("--db", db_url, "analyze", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["overview"]["predictions"] == 2  # default window: 7 days
    path = write_config(tmp_path, f'[database]\nurl = "{db_url}"\n\n[analysis]\ndefault_days = 1\n')
    result = mlpred(tmp_path, "analyze", "--format", "json", MLPRED_CONFIG=str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["overview"]["predictions"] == 1


def test_constants_and_settings_defaults_follow_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [writer]
        batch_size = 25
        [monitor]
        stale_candles_warning = 6
        freshness_lookback_hours = 36
        [backfill]
        retry_window_hours = 12
        [backfill.direction_thresholds]
        1h = 0.004
        """.replace("        ", ""),
    )
    probe = (
        "from mlpred_cli.config import WriterSettings, BACKFILL_RETRY_WINDOW, "
        "DEFAULT_DIRECTION_THRESHOLDS, direction_thresholds\n"
        "from mlpred_cli.monitor.settings import DEFAULT_SETTINGS, MonitorSettings\n"
        "from mlpred_cli.capture.batch_writer import WriterOptions\n"
        "print(WriterSettings().batch_size, WriterOptions().batch_size,\n"
        "      MonitorSettings().stale_candles_warning, DEFAULT_SETTINGS.freshness_lookback,\n"
        "      BACKFILL_RETRY_WINDOW, DEFAULT_DIRECTION_THRESHOLDS['1h'],\n"
        "      DEFAULT_DIRECTION_THRESHOLDS['4h'], direction_thresholds()['1h'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_environment(tmp_path, MLPRED_CONFIG=str(path)),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "25", "25", "6", "1", "day,", "12:00:00", "12:00:00", "0.004", "0.007", "0.004",
    ]  # fmt: skip


def test_config_show_names_file_and_sources(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[database]\nurl = "postgresql://me:s3cret@db.example/mlpred"\n'
        "[monitor]\ncheck_days = 3\noutcome_lag_warning_hours = 4\n",
    )
    result = mlpred(tmp_path, "config", "show", "--format", "json", MLPRED_CONFIG=str(path))
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["config_file"]["path"] == str(path)
    assert shown["config_file"]["source"] == "MLPRED_CONFIG"
    assert shown["database"] == {
        "url": "postgresql://me:***@db.example/mlpred",
        "source": "config file",
    }
    settings = {row["key"]: row for row in shown["settings"]}
    assert settings.keys() == {key.label for key in KEYS}
    assert (settings["monitor.check_days"]["value"], settings["monitor.check_days"]["source"]) == (
        3.0,
        str(path),
    )
    assert settings["monitor.outcome_lag_warning_hours"]["value"] == 4
    assert settings["monitor.outcome_lag_critical_hours"] == {
        "key": "monitor.outcome_lag_critical_hours",
        "value": 12,
        "source": "default",
        "doc": settings["monitor.outcome_lag_critical_hours"]["doc"],
    }
    assert settings["analysis.confidence_bin_edges"]["source"] == "fixed"
    from_file = {key for key, row in settings.items() if row["source"] == str(path)}
    assert from_file == {"database.url", "monitor.check_days", "monitor.outcome_lag_warning_hours"}

    table = mlpred(tmp_path, "--db", "x.db", "config", "show", MLPRED_CONFIG=str(path))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"Config file: {path} (from $MLPRED_CONFIG)"
    assert lines[1] == "Database: x.db (from --db)"
    assert any(line.split()[:4] == ["check_days", "3", "config", "file"] for line in lines)
    assert any(line.split()[:3] == ["reference_days", "14", "default"] for line in lines)


def test_config_option_selects_the_file(tmp_path: Path) -> None:
    """``mlpred --config FILE`` (the entry point selects the file before the import)."""
    path = write_config(tmp_path, "[signal]\nmin_confidence = 0.7\n", name="other.toml")
    result = mlpred(tmp_path, "--config", str(path), "config", "show", "--format", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config_file"]["source"] == "--config"
    settings = {row["key"]: row for row in shown["settings"]}
    assert settings["signal.min_confidence"]["value"] == 0.7


def test_user_config_directory_is_the_default(tmp_path: Path) -> None:
    result = mlpred(tmp_path, "config", "show")
    assert result.returncode == 0, result.stderr
    default = tmp_path / "xdg-config" / "mlpred" / "mlpred.toml"
    assert result.stdout.splitlines()[0] == (
        f"Config file: none (all defaults; looked for {default})"
    )
    write_config(default.parent, "[compare]\nalpha = 0.01\n")
    result = mlpred(tmp_path, "config", "show", "--format", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config_file"] == {
        "path": str(default),
        "source": "user config",
        "keys": ["compare.alpha"],
    }


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("[monitor]\nchek_days = 3\n", ("[monitor] chek_days", "did you mean check_days?")),
        ("[moniter]\ncheck_days = 3\n", ("unknown table [moniter]", "did you mean [monitor]?")),
        (
            '[monitor]\nreference_days = "seven"\n',
            ("[monitor] reference_days must be an integer, got string 'seven'",),
        ),
        ("[monitor]\ncheck_days = 3\n[analysis\n", ("invalid TOML", "line 3")),
    ],
    ids=["unknown-key", "unknown-table", "wrong-type", "syntax"],
)
def test_invalid_file_is_one_line_exit_2(tmp_path: Path, text: str, parts: tuple[str, ...]) -> None:
    path = write_config(tmp_path, text)
    assert_one_line_error(mlpred(tmp_path, "recent", MLPRED_CONFIG=str(path)), str(path), *parts)


def test_missing_or_empty_config_file_setting_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert_one_line_error(
        mlpred(tmp_path, "recent", MLPRED_CONFIG=str(missing)),
        f"config file {missing} does not exist",
    )
    assert_one_line_error(mlpred(tmp_path, "recent", MLPRED_CONFIG=" "), "MLPRED_CONFIG")
    assert_one_line_error(
        mlpred(tmp_path, "--config", str(missing), "recent"),
        f"config file {missing} does not exist",
    )


# ---------------------------------------------------------------- empty database settings


def test_empty_db_option_is_an_error(tmp_path: Path) -> None:
    code, _, err = run_cli("--db", "", "recent")
    assert code == 2
    assert err.strip().splitlines() == [
        "Error: --db is empty: give a database URL or a SQLite file path, or leave --db out "
        "for the embedded file"
    ]
    code, _, err = run_cli("recent", env={config.DATABASE_URL_ENV: ""})
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"{config.DATABASE_URL_ENV} is set but empty" in err
    with pytest.raises(ConfigError, match="--db is empty"):
        config.resolve_database_url("  ")


def test_database_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DATABASE_URL", "sqlite:////tmp/from-file.db")
    monkeypatch.setenv(config.DATABASE_URL_ENV, "sqlite:////tmp/from-env.db")
    assert config.locate_database_url("cli.db") == ("cli.db", "--db")
    assert config.locate_database_url() == ("sqlite:////tmp/from-env.db", "MLPRED_DATABASE_URL")
    monkeypatch.delenv(config.DATABASE_URL_ENV)
    assert config.locate_database_url() == ("sqlite:////tmp/from-file.db", "config file")


# ---------------------------------------------------------------- the loader, in process


def parse(text: str) -> dict[str, Any]:
    return parse_config(text, "f.toml", config.DEFAULTS)


def test_every_key_names_a_constant_whose_default_reads_back() -> None:
    """The key table and config.py agree: each default, written as the file would, reads
    back to itself and passes its own check."""
    labels = [key.label for key in KEYS]
    assert len(labels) == len(set(labels))
    for key in KEYS:
        default = config.DEFAULTS[key.constant]
        if default is None:
            continue
        assert key.kind.read(key.kind.show(default)) == default, key.label
        if key.check is not None:
            assert key.check(default, config.DEFAULTS) is None, key.label


def test_values_are_converted() -> None:
    values = parse(
        "[monitor]\ncheck_days = 3\ndrift_min_window_days = 1.5\nwarning_alpha = 0.02\n"
        "[backfill]\nretry_window_hours = 6\n[backfill.direction_thresholds]\n12h = 0.02\n"
        "[web]\nhost = '0.0.0.0'\nport = 9000\n"
    )
    assert values == {
        "CHECK_DAYS": 3.0,
        "DRIFT_MIN_WINDOW": timedelta(days=1.5),
        "WARNING_ALPHA": 0.02,
        "BACKFILL_RETRY_WINDOW": timedelta(hours=6),
        "DEFAULT_DIRECTION_THRESHOLDS": {"15m": 0.0015, "1h": 0.003, "4h": 0.007, "12h": 0.02},
        "WEB_DEFAULT_HOST": "0.0.0.0",
        "WEB_DEFAULT_PORT": 9000,
    }
    assert isinstance(values["CHECK_DAYS"], float)
    assert parse("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[writer]\nbatch_size = true\n", "[writer] batch_size must be an integer, got boolean"),
        ("[writer]\nbatch_size = 2.5\n", "[writer] batch_size must be an integer, got float 2.5"),
        ("[writer]\nbatch_size = 0\n", "[writer] batch_size must be positive, got 0"),
        ("[monitor]\ncheck_days = nan\n", "[monitor] check_days must be a finite number"),
        ("[monitor]\ncheck_days = -1\n", "[monitor] check_days must be positive"),
        ("[monitor]\nwarning_alpha = 1\n", "warning_alpha must be between 0 and 1 (exclusive)"),
        ("[monitor]\ncritical_alpha = 0.05\n", "critical_alpha (0.05) must not exceed [monitor]"),
        ("[monitor]\ncheck_days = [1]\n", "check_days must be a number, got array"),
        ("[signal]\nmin_confidence = 1.5\n", "min_confidence must be between 0 and 1"),
        ("[backfill]\ndefault_interval = '2m'\n", "default_interval must be one of 1m, 5m"),
        ("[backfill]\nretry_window_hours = 0\n", "retry_window_hours must be positive, got 0"),
        ("[backfill]\nretry_window_hours = 1e300\n", "must be at most 878,400 hours"),
        ("[monitor]\nfreshness_lookback_hours = 1e9\n", "must be at most 878,400 hours"),
        ("[monitor]\ndrift_min_window_days = 1e6\n", "must be at most 36,600 days"),
        ("[analysis]\ndefault_days = 1e10\n", "[analysis] default_days must be at most 36,600"),
        ("[monitor]\ncheck_days = 40000\n", "[monitor] check_days must be at most 36,600"),
        ("[partitions]\ndays_ahead = 400\n", "[partitions] days_ahead must be at most 366"),
        ("[backfill]\ndirection_thresholds = 0.1\n", "must be a table of numbers, got float"),
        ("[backfill.direction_thresholds]\n2h = 0.1\n", "has unknown horizon '2h'"),
        ("[backfill.direction_thresholds]\n1h = 'x'\n", "1h must be a number, got string 'x'"),
        ("[backfill.direction_thresholds]\n1h = -0.1\n", "1h must be >= 0"),
        ("[web]\nport = 70000\n", "[web] port must be a port number"),
        ("[web]\ntoken_min_length = 8\n", "token_min_length must be at least 16"),
        ("[database]\nurl = ''\n", "[database] url must not be empty"),
        ("[analysis]\nconfidence_bin_edges = [0, 1]\n", "cannot be set in a config file"),
        ("monitor = 3\n", "monitor must be a table ([monitor]), got integer 3"),
        ("check_days = 3\n", "unknown table [check_days]"),
        ("[writer]\nbatch = 3\n", "unknown key [writer] batch (did you mean batch_size?)"),
        ("[writer]\nbatch_size = 1\nbatch_size = 2\n", "invalid TOML: Cannot overwrite"),
    ],
)
def test_bad_values_name_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(text)
    assert str(raised.value).startswith("f.toml: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        config_file.read_config(tmp_path, "--config", config.DEFAULTS)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[writer]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config_file.read_config(binary, "--config", config.DEFAULTS)


def test_selection_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(config_file.CONFIG_ENV, raising=False)
    assert config_file.locate_config_file() is None
    default = write_config(tmp_path / "mlpred", "")
    assert config_file.locate_config_file() == (default, "user config")
    monkeypatch.setenv(config_file.CONFIG_ENV, "env.toml")
    assert config_file.locate_config_file() == (Path("env.toml").resolve(), "MLPRED_CONFIG")
    try:
        config_file.select_config_file("flag.toml")
        assert config_file.locate_config_file() == (Path("flag.toml").resolve(), "--config")
        config_file.select_config_file("")
        with pytest.raises(ConfigError, match="--config is empty"):
            config_file.locate_config_file()
    finally:
        config_file.select_config_file(None)


def test_keys_markdown_lists_every_key() -> None:
    rows = config_file.keys_markdown(config.DEFAULTS).splitlines()[2:]
    assert len(rows) == len(KEYS)
    assert rows[0].startswith("| `[database] url` | string | `none` |")
    assert any(row.startswith("| `[backfill] retry_window_hours` | hours | `48` |") for row in rows)
    assert all(row.count("|") == 5 for row in rows)  # no stray pipe breaks the table


def test_the_readme_lists_every_key_as_the_table_says() -> None:
    """The README's key table is ``keys_markdown``'s output: a key added, renamed or given
    another default shows up here until the README says so."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = config_file.keys_markdown(config.DEFAULTS)
    assert table in readme
