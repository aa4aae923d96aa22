"""Writing the report: one file, or a dated file plus ``latest.html`` in a folder (for
cron), and the JSON sidecar. Every write is atomic (a temporary file in the same folder,
flushed to disk, then renamed over the target), so a reader or a mail job never sees half
a report, and a failed run leaves the previous ``latest.html`` in place.

New files are private (mode 0600, like the database: a report holds trading figures); a
file being replaced keeps its mode, so a ``chmod`` to share ``latest.html`` survives.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from mlpred_cli.capture.journal import fsync_directory
from mlpred_cli.errors import InputError

#: Mode of a new report file.
REPORT_FILE_MODE = 0o600

#: The file ``--out-dir`` keeps pointing at the newest report.
LATEST_NAME = "latest.html"


def dated_name(day: date) -> str:
    """``mlpred-report-YYYY-MM-DD.html``."""
    return f"mlpred-report-{day.isoformat()}.html"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; ``InputError`` naming the path when it
    cannot be written."""
    folder = path.parent
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = REPORT_FILE_MODE
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror}") from None
    temporary: Path | None = None
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        temporary = Path(name)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.chmod(mode)
        temporary.replace(path)
        temporary = None
        fsync_directory(folder)  # the rename is durable once the folder entry is on disk
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()


@dataclass
class WrittenReport:
    """The files one run wrote (``html`` first) and the HTML's size in bytes."""

    paths: list[Path] = field(default_factory=list)
    size: int = 0


def _folder(path: Path, *, create: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise InputError(f"--out-dir {path} is a file, not a folder")
    if create and not path.exists():
        try:
            path.mkdir(parents=True, mode=0o700)
        except OSError as error:
            raise InputError(f"cannot create {path}: {error.strerror}") from None
    return path


def check_targets(out: Path | None, out_dir: Path | None, sidecar: Path | None) -> None:
    """``InputError`` before any work when the options cannot be written as asked."""
    if out is not None and out_dir is not None:
        raise InputError("give --out or --out-dir, not both")
    if out is not None and str(out) != "-":
        if out.is_dir():
            raise InputError(f"--out {out} is a folder: use --out-dir for a folder")
        if not out.parent.is_dir():
            raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if out_dir is not None:
        _folder(out_dir, create=False)
    if sidecar is not None:
        into_out_dir = out_dir is not None and sidecar.parent.resolve() == out_dir.resolve()
        if not sidecar.parent.is_dir() and not into_out_dir:  # --out-dir is created
            raise InputError(f"--json {sidecar}: folder {sidecar.parent} does not exist")
        html_names = [out] if out is not None else []
        if out_dir is not None:
            html_names.append(out_dir / LATEST_NAME)
        if any(name.resolve() == sidecar.resolve() for name in html_names if str(name) != "-"):
            raise InputError(f"--json {sidecar} would overwrite the HTML report")


def write_report(
    html: str,
    *,
    day: date,
    out: Path | None = None,
    out_dir: Path | None = None,
    sidecar: Path | None = None,
    sidecar_text: str | None = None,
) -> WrittenReport:
    """Write ``html`` to ``out``, or to ``out_dir/mlpred-report-<day>.html`` and
    ``out_dir/latest.html`` (the folder is created if missing), or to
    ``./mlpred-report-<day>.html`` when neither is given; and ``sidecar_text`` to
    ``sidecar``. Returns what was written."""
    check_targets(out, out_dir, sidecar)
    data = html.encode("utf-8")
    written = WrittenReport(size=len(data))
    if out_dir is not None:
        folder = _folder(out_dir, create=True)
        targets = [folder / dated_name(day), folder / LATEST_NAME]
    else:
        targets = [out if out is not None else Path(dated_name(day))]
    for target in targets:
        write_atomically(target, data)
        written.paths.append(target)
    if sidecar is not None and sidecar_text is not None:
        write_atomically(sidecar, sidecar_text.encode("utf-8"))
        written.paths.append(sidecar)
    return written
