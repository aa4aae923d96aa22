"""The suite finds PostgreSQL by itself (tests/pg_discovery.py), on real servers: the session's
own, a throw-away cluster started from the installed binaries, and none at all."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from mlpred_cli.store.database import run_autocommit
from tests.pg_discovery import (
    DEFAULT_URL_ENV,
    PG_ENV,
    REQUIRE_ENV,
    PgUnreachable,
    discover_postgres,
    required_failure,
)
from tests.pg_server import BIN_ENV, free_port, remove_abandoned_clusters, unavailable_reason

REPOSITORY = Path(__file__).resolve().parents[1]
needs_binaries = pytest.mark.skipif(
    unavailable_reason() is not None, reason=str(unavailable_reason())
)


def _closed_port_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _session_url(pg_admin_url: URL | None) -> str:
    assert pg_admin_url is not None  # postgres_only: skipped before, when there is none
    return pg_admin_url.render_as_string(hide_password=False)


@needs_binaries
def test_without_a_server_a_throw_away_cluster_is_started_and_removed() -> None:
    choice = discover_postgres(explicit=None, candidates=[_closed_port_url()])
    try:
        assert choice.url is not None and choice.cluster is not None, choice.description
        assert choice.skip_reason is None
        assert choice.description.startswith("throw-away server from ")
        name = f"mlpred_disc_{uuid.uuid4().hex[:8]}"
        run_autocommit(choice.url, f'CREATE DATABASE "{name}"')  # an admin URL, as promised
        engine = sa.create_engine(choice.url.set(database=name))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        engine.dispose()
        port, root = choice.cluster.port, choice.cluster.root
        assert _port_open(port) and root.is_dir()
    finally:
        choice.close()
    assert not _port_open(port)
    assert not root.exists()
    choice.close()  # twice is harmless


def test_without_server_or_binaries_the_reason_is_one_line(tmp_path: Path) -> None:
    closed = _closed_port_url()
    choice = discover_postgres(explicit=None, candidates=[closed], bin_dirs=[tmp_path])
    assert choice.url is None and choice.cluster is None
    reason = choice.skip_reason
    assert reason is not None and len(reason.splitlines()) == 1
    assert reason.startswith("PostgreSQL tests skipped: no usable server at 127.0.0.1:")
    assert "Connection refused" in reason
    assert f"no initdb/pg_ctl found in {tmp_path}" in reason


def test_required_postgres_turns_the_skip_into_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    choice = discover_postgres(explicit=None, candidates=[_closed_port_url()], bin_dirs=[tmp_path])
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    assert required_failure(choice) is None
    monkeypatch.setenv(REQUIRE_ENV, "1")
    failure = required_failure(choice)
    assert failure is not None and failure.startswith(f"{REQUIRE_ENV}=1 but no usable server")


def test_an_unreachable_explicit_url_fails_rather_than_falls_back(tmp_path: Path) -> None:
    with pytest.raises(PgUnreachable, match=f"{PG_ENV} is set but .*Connection refused"):
        discover_postgres(explicit=_closed_port_url(), candidates=[], bin_dirs=[tmp_path])


@pytest.mark.postgres_only
def test_an_explicit_url_is_used_as_given(
    backend: str, pg_admin_url: URL | None, tmp_path: Path
) -> None:
    url = _session_url(pg_admin_url)
    choice = discover_postgres(explicit=url, candidates=[_closed_port_url()], bin_dirs=[tmp_path])
    assert choice.url is not None and choice.cluster is None
    assert choice.url.port == sa.make_url(url).port
    assert choice.description.startswith(f"{PG_ENV} postgresql")


@pytest.mark.postgres_only
def test_the_first_answering_candidate_wins(
    backend: str, pg_admin_url: URL | None, tmp_path: Path
) -> None:
    url = _session_url(pg_admin_url)
    choice = discover_postgres(
        explicit=None, candidates=[_closed_port_url(), url], bin_dirs=[tmp_path]
    )
    assert choice.url is not None and choice.cluster is None
    assert choice.url.port == sa.make_url(url).port
    assert choice.description.startswith("local server on 127.0.0.1:")


@pytest.mark.postgres_only
def test_a_role_that_cannot_create_databases_is_passed_over(
    backend: str, pg_admin_url: URL | None, tmp_path: Path
) -> None:
    url = _session_url(pg_admin_url)
    assert pg_admin_url is not None
    role = f"mlpred_nocreate_{uuid.uuid4().hex[:8]}"
    run_autocommit(pg_admin_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        weak = sa.make_url(url).set(username=role).render_as_string(hide_password=False)
        choice = discover_postgres(explicit=None, candidates=[weak], bin_dirs=[tmp_path])
        assert choice.url is None
        assert choice.skip_reason is not None
        assert "may not create databases" in choice.skip_reason
    finally:
        run_autocommit(pg_admin_url, f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------- a whole pytest session

_SESSION_TEST = """
from mlpred_cli.store.database import create_engine


def test_database(db_url, backend):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_empty_database(empty_db_url, backend):
    assert empty_db_url
"""


@pytest.fixture
def session_dir() -> Iterator[Path]:
    """A directory for a nested pytest session and its TMPDIR, readable by the postgres
    user (a throw-away cluster's directory is made in TMPDIR and, as root, owned by it)."""
    root = Path(tempfile.mkdtemp(prefix="mlpred-disc-"))
    root.chmod(0o755)
    (root / "tmp").mkdir(mode=0o777)
    (root / "tmp").chmod(0o777)
    (root / "test_tiny.py").write_text(_SESSION_TEST)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _run_session(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {PG_ENV, REQUIRE_ENV, BIN_ENV, DEFAULT_URL_ENV}
    }
    environment |= {
        DEFAULT_URL_ENV: _closed_port_url(),
        "TMPDIR": str(directory / "tmp"),
        "PYTHONPATH": str(REPOSITORY),
        **env,
    }
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-rs", "--rootdir", str(directory), *args, str(directory / "test_tiny.py")],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@needs_binaries
def test_a_session_without_a_server_runs_postgres_on_a_throw_away_one(session_dir: Path) -> None:
    result = _run_session(session_dir, "-v", "-rA", "-n", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PASSED test_tiny.py::test_database[postgresql]" in output
    assert "PASSED test_tiny.py::test_database[sqlite]" in output
    assert "PostgreSQL: throw-away server from " in output  # the header says which
    assert list((session_dir / "tmp").glob("mlpred-pg-*")) == []  # stopped and deleted


def test_a_session_without_server_or_binaries_skips_postgres_saying_why_once(
    session_dir: Path, tmp_path: Path
) -> None:
    result = _run_session(session_dir, "-q", **{BIN_ENV: str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed, 2 skipped" in output
    reasons = [line for line in output.splitlines() if "PostgreSQL tests skipped:" in line]
    assert len(reasons) == 1, output
    assert "no initdb/pg_ctl found in" in reasons[0]


def test_a_session_that_requires_postgres_fails_without_it(
    session_dir: Path, tmp_path: Path
) -> None:
    result = _run_session(session_dir, "-q", **{BIN_ENV: str(tmp_path), REQUIRE_ENV: "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{REQUIRE_ENV}=1 but no usable server" in output
    assert "passed" not in output


_ABANDON = """
import os
from tests.pg_server import PgCluster
cluster = PgCluster.create()
cluster.start()
print(cluster.port, cluster.root, flush=True)
os.kill(os.getpid(), 9)
"""


@needs_binaries
def test_a_cluster_left_by_a_killed_process_is_removed(session_dir: Path) -> None:
    environment = os.environ | {"TMPDIR": str(session_dir / "tmp"), "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run(
        [sys.executable, "-c", _ABANDON],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    port_text, root_text = result.stdout.split()
    port, root = int(port_text), Path(root_text)
    assert _port_open(port), result.stderr  # the server outlived the process that made it
    assert remove_abandoned_clusters(session_dir / "tmp") == [root]
    assert not _port_open(port)
    assert not root.exists()
