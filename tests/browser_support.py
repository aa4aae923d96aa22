"""Headless Chromium for the browser tests: the binary on PATH (Debian's ``chromium``), the
launch arguments a container needs, and skip-or-fail when the browser or Playwright is missing.

Locally a missing browser skips the test with the install command; under CI (``CI=true``) it
fails, so a runner without Chromium cannot pass by skipping everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

#: Names Chromium's binary goes by in distribution packages.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "apt-get install -y chromium"


def in_ci() -> bool:
    """True when the CI runner's ``CI=true`` is set: missing tools fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(message)


def find_chromium() -> str | None:
    """The path of the Chromium binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium binary's path; skips the test when there is none (fails under CI)."""
    path = find_chromium()
    if path is None:
        _unavailable(f"Chromium not found on PATH: {INSTALL_HINT}")
    assert path is not None  # _unavailable raised otherwise
    return path


def require_playwright() -> ModuleType:
    """``playwright.sync_api``; skips the test when Playwright is not installed (fails
    under CI)."""
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        _unavailable("Playwright for Python is not installed: pip install playwright")
        raise  # unreachable: _unavailable raised
    return sync_api


def launch_args() -> list[str]:
    """Chromium's command-line arguments: its sandbox cannot start as root in a container,
    so ``--no-sandbox`` then, and only then."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """One headless Chromium (Playwright's ``Browser``), closed after the block; skips (or
    fails under CI) without Playwright or the browser."""
    sync_api = require_playwright()
    executable = require_chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=launch_args(), headless=True
        )
        try:
            yield launched
        finally:
            launched.close()
