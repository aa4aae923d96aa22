"""Start-up cost of the ``mlpred`` command against a minimal Typer app, in the same run.

Each command runs as a fresh process ``--runs`` times; the figures are the median wall time
and the median peak RSS (from ``wait4``), with ratios against the baseline: a two-command
Typer app printing its ``--help``. The issue's target: ``mlpred --version`` and
``mlpred --help`` within 1.5x of the baseline.

    python bench/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE_APP = '''
import typer

app = typer.Typer(add_completion=False)


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


@app.command()
def bye() -> None:
    """Say goodbye."""
    typer.echo("bye")


if __name__ == "__main__":
    app()
'''


def measure(command: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MB) of ``runs`` fresh processes."""
    seconds: list[float] = []
    peaks: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        seconds.append(time.perf_counter() - started)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            error = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"{' '.join(command)} failed: {error.strip()}")
        peaks.append(usage.ru_maxrss / 1024)  # kilobytes on Linux
    return statistics.median(seconds), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        app = Path(scratch) / "baseline_app.py"
        app.write_text(BASELINE_APP)
        mlpred = [sys.executable, "-m", "mlpred_cli"]
        commands = {
            "baseline: minimal Typer app --help": [sys.executable, str(app), "--help"],
            "mlpred --version": [*mlpred, "--version"],
            "mlpred --help": [*mlpred, "--help"],
        }
        for _ in range(2):  # warm the file cache and the bytecode
            for command in commands.values():
                measure(command, 1)
        results = {label: measure(command, args.runs) for label, command in commands.items()}
    base_s, base_mb = next(iter(results.values()))
    print(f"{'command':40} {'median s':>9} {'x base':>7} {'peak MB':>8} {'x base':>7}")
    for label, (wall, peak) in results.items():
        print(f"{label:40} {wall:9.3f} {wall / base_s:7.2f} {peak:8.1f} {peak / base_mb:7.2f}")


if __name__ == "__main__":
    main()
