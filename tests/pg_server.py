"""Test-owned PostgreSQL clusters: the session's throw-away server when no other is to be
had (tests/pg_discovery.py), and ``pg_cluster`` for tests that stop, freeze or restart the
server (the session's own server is never stopped or frozen).

A ``PgCluster`` runs ``initdb`` and ``pg_ctl`` from the installed server binaries
(``/usr/lib/postgresql/<version>/bin``, or only the directory in ``MLPRED_TEST_PG_BIN`` when
that is set) in a fresh temporary directory, listening on 127.0.0.1 on a free port and on a
Unix socket in that directory only, with trust authentication. ``initdb`` refuses to run as
root, so as root the cluster belongs to the ``postgres`` user (``runuser -u postgres --``).
Each directory records the process that made it, so that ``remove_abandoned_clusters`` can
stop and delete a cluster whose process was killed before it could. Without the binaries
(or, as root, without a ``postgres`` user) the tests that need a cluster are skipped, saying
why.

The bench (``bench/bench_durability.py``) uses ``PgCluster`` directly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from mlpred_cli.store.database import create_engine, normalize_url, run_autocommit
from mlpred_cli.store.migrations import upgrade_to_head

BIN_ENV = "MLPRED_TEST_PG_BIN"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
_NEEDED = ("initdb", "pg_ctl", "postgres")
_SERVER_USER = "postgres"
_ROOT_PREFIX = "mlpred-pg-"
#: In a cluster's directory: the pid of the process that made it, and the binaries' directory.
_OWNER_FILE = "owner"


def binary_directories() -> list[Path]:
    """Where to look for the server binaries: ``MLPRED_TEST_PG_BIN`` alone when set, else
    ``/usr/lib/postgresql/<version>/bin``, newest version first."""
    explicit = os.environ.get(BIN_ENV, "").strip()
    if explicit:
        return [Path(explicit)]
    return sorted(
        Path("/").glob(BIN_GLOB.lstrip("/")),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)],
        reverse=True,
    )


def find_server_binaries(directories: Sequence[Path] | None = None) -> Path | None:
    """The first of ``directories`` (default ``binary_directories()``) holding initdb,
    pg_ctl and postgres, or None."""
    for directory in binary_directories() if directories is None else directories:
        if all((directory / name).is_file() for name in _NEEDED):
            return directory
    return None


def unavailable_reason(directories: Sequence[Path] | None = None) -> str | None:
    """Why a test-owned cluster cannot be made here, or None when it can."""
    if find_server_binaries(directories) is None:
        where = (
            ", ".join(str(path) for path in directories)
            if directories is not None
            else os.environ.get(BIN_ENV, "").strip() or BIN_GLOB
        )
        return (
            f"no initdb/pg_ctl found in {where or 'no directory'} ({BIN_ENV} names their directory)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SERVER_USER)
        except KeyError:
            return "running as root and there is no 'postgres' user to own a test cluster"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (initdb refuses to run as root)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_clusters(directory: Path | None = None) -> list[Path]:
    """Stop and delete the test clusters in ``directory`` (default: the temporary
    directory) whose owning process is gone (a test process killed before it could stop
    its server); returns their directories. Clusters of live processes are left alone."""
    removed = []
    for root in Path(directory or tempfile.gettempdir()).glob(f"{_ROOT_PREFIX}*"):
        try:
            pid_text, bin_dir = (root / _OWNER_FILE).read_text().split("\n")[:2]
        except (OSError, ValueError):
            continue  # not ours to judge: no owner recorded
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        PgCluster(Path(bin_dir), root, 0).destroy()
        removed.append(root)
    return removed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgCluster:
    """One test-owned cluster: start, stop, freeze (SIGSTOP), thaw (SIGCONT), databases."""

    def __init__(self, bin_dir: Path, root: Path, port: int, max_connections: int = 60) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self.max_connections = max_connections
        self.data_dir = root / "data"
        self.socket_dir = root / "socket"
        self.log_file = root / "server.log"
        self.frozen = False
        self._template: str | None = None

    # ------------------------------------------------------------ life cycle

    @classmethod
    def create(cls, bin_dir: Path | None = None, *, max_connections: int = 60) -> PgCluster:
        """initdb a new cluster in a fresh temporary directory (not started yet); the
        directory is removed again if initdb fails."""
        binaries = bin_dir or find_server_binaries()
        if binaries is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL server binaries")
        root = Path(tempfile.mkdtemp(prefix=_ROOT_PREFIX))
        cluster = cls(binaries, root, free_port(), max_connections)
        try:
            (root / _OWNER_FILE).write_text(f"{os.getpid()}\n{binaries}\n")
            cluster.socket_dir.mkdir()
            if os.geteuid() == 0:
                account = pwd.getpwnam(_SERVER_USER)
                for path in (root, cluster.socket_dir):
                    os.chown(path, account.pw_uid, account.pw_gid)
            cluster._run(
                "initdb", "-D", str(cluster.data_dir), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            return ["runuser", "-u", _SERVER_USER, "--", *command]
        return command

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.log_tail()}"
            )
        return result

    def start(self, *, attempts: int = 1) -> None:
        """Start the server and wait until it accepts connections. With ``attempts`` > 1 a
        start that fails (another process took the port meanwhile, say) is tried again on
        a new free port."""
        for attempt in range(attempts):
            options = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=on "
                f"-c max_connections={self.max_connections} -c shared_buffers=32MB"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                    "-t", "60", "-o", options, "start",
                )  # fmt: skip
                return
            except RuntimeError:
                if attempt + 1 >= attempts:
                    raise
                self.port = free_port()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate, as ``pg_ctl -m``)."""
        self.thaw()
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        """True when the postmaster is alive (frozen or not)."""
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def ensure_running(self) -> None:
        """Thaw and start the server if a test left it frozen or stopped."""
        self.thaw()
        if not self.is_running():
            self.start()

    def destroy(self) -> None:
        """Stop the server at once and delete its directory."""
        with contextlib.suppress(Exception):
            self.thaw()
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ freezing

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, or None when it is not running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        return int(first) if first.strip().isdigit() else None

    def server_pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the whole server: it keeps its sockets (the kernel still accepts TCP
        connections into the backlog) and answers nothing, like a hung host."""
        pids = self.server_pids()
        if not pids:
            raise RuntimeError("the test cluster is not running")
        self.frozen = True
        for pid in pids:  # postmaster first: it starts no new backend meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what ``freeze`` stopped."""
        if not self.frozen:
            return
        for pid in reversed(self.server_pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    # ------------------------------------------------------------ databases

    def _admin(self) -> URL:
        return normalize_url(self.url())

    def url(self, database: str = "postgres") -> str:
        """URL of a database of this cluster (TCP, trust authentication)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database (migrated to head unless ``migrated=False``); returns its URL."""
        name = f"mlpred_fault_{uuid.uuid4().hex[:12]}"
        clause = ""
        if migrated:
            if self._template is None:
                template = f"mlpred_fault_tpl_{uuid.uuid4().hex[:8]}"
                run_autocommit(self._admin(), f'CREATE DATABASE "{template}"')
                engine = create_engine(self.url(template))
                upgrade_to_head(engine)
                engine.dispose()
                self._template = template
            clause = f' TEMPLATE "{self._template}"'
        run_autocommit(self._admin(), f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database`` (best effort)."""
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            run_autocommit(
                normalize_url(self.url()), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_accepting(self, timeout: float = 30.0) -> None:
        """Wait until a TCP connection to the server succeeds and it answers a query."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                run_autocommit(self._admin(), "SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A started test-owned cluster for the session; skipped (with the reason) when the
    server binaries are missing."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
