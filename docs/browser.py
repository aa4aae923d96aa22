"""Headless Chromium for the docs' screenshot scripts: Debian's binary on PATH, launched by
Playwright for Python (``--no-sandbox`` only as root, where its sandbox cannot start)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def chromium() -> Iterator[Any]:
    """Playwright's ``Browser``, closed after the block; exits with the install command
    when Chromium is not on PATH."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        sys.exit("Chromium not found on PATH: apt-get install -y chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()
