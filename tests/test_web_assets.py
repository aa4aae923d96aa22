"""The dashboard's assets: the vendored files match their manifest, and nothing a page or
the dashboard's own CSS / JS loads comes from outside the server (a strict CSP is sent)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from mlpred_cli.web.app import STATIC_DIR, create_app
from tests.web_support import BEARER, TOKEN, read_only

VENDOR = STATIC_DIR / "vendor"
PAGES = ("/", "/timeseries", "/calibration", "/symbols", "/symbols/BTCUSDT", "/versions", "/feed")
OWN_ASSETS = ("dashboard.css", "dashboard.js")

#: A URL that leaves the server: http(s)://... or protocol-relative //host.
_REMOTE = r"""\s*["']?\s*(?:https?:)?//"""
REMOTE_REFERENCES = [
    re.compile(rf"""\b(?:src|href|action|srcset|poster|data)\s*={_REMOTE}""", re.IGNORECASE),
    re.compile(rf"""url\({_REMOTE}""", re.IGNORECASE),
    re.compile(rf"""@import\s*(?:url\()?{_REMOTE}""", re.IGNORECASE),
]
#: In JavaScript: a string literal that is a remote URL (fetch, EventSource, import, src).
JS_REMOTE = re.compile(r"""["'`]\s*(?:https?:)?//[\w.-]""")


def _remote_references(text: str) -> list[str]:
    return [match.group(0) for pattern in REMOTE_REFERENCES for match in pattern.finditer(text)]


def test_the_patterns_catch_remote_references() -> None:
    samples = [
        '<script src="https://cdn.example/x.js">',
        "<link href='//cdn.example/x.css'>",
        "a { background: url( http://x/y.png) }",
        '@import "https://fonts.example/f.css";',
        "@import url(//fonts.example/f.css);",
    ]
    assert all(_remote_references(sample) for sample in samples)
    assert JS_REMOTE.search("new EventSource('https://evil.example/events')")
    assert not _remote_references('<script src="/static/dashboard.js?v=1"></script>')
    assert not JS_REMOTE.search("const x = a // comment")


def _manifest_files() -> list[dict[str, str]]:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    return [entry for package in manifest["packages"] for entry in package["files"]]


def test_every_vendored_file_matches_the_manifest() -> None:
    files = _manifest_files()
    assert {entry["path"] for entry in files} >= {"uPlot.iife.min.js", "uPlot.min.css"}
    for entry in files:
        path = VENDOR / entry["path"]
        assert path.is_file(), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path
    listed = {entry["path"] for entry in files} | {"manifest.json"}
    assert {p.name for p in VENDOR.iterdir()} == listed  # nothing unlisted was added


@pytest.mark.parametrize("name", [*OWN_ASSETS, "vendor/uPlot.min.css"])
def test_own_assets_and_css_reference_nothing_remote(name: str) -> None:
    text = (STATIC_DIR / name).read_text()
    assert _remote_references(text) == []
    if name.endswith(".js"):
        assert JS_REMOTE.findall(text) == []


@pytest.fixture
def pages(db_url: str) -> Iterator[dict[str, str]]:
    """Every page as the server renders it (with filters set, to exercise the template)."""
    engine = read_only(db_url)
    try:
        with TestClient(create_app(engine, token=TOKEN)) as client:
            rendered = {}
            for path in PAGES:
                for query in ("", "?symbol=ETHUSDT&model_version=v1&horizon=4h&days=30"):
                    response = client.get(path + query, headers=BEARER)
                    assert response.status_code == 200, path
                    rendered[path + query] = response.text
            error = client.get("/?days=0", headers=BEARER)
            assert error.status_code == 400
            rendered["error"] = error.text
            yield rendered
    finally:
        engine.dispose()


def test_pages_load_only_local_assets(pages: dict[str, str]) -> None:
    for path, html in pages.items():
        assert _remote_references(html) == [], path
        assert "http://" not in html and "https://" not in html, path


def test_pages_run_only_static_scripts_and_no_inline_code(pages: dict[str, str]) -> None:
    for path, html in pages.items():
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL | re.IGNORECASE)
        if path != "error":
            sources = [re.search(r'src="([^"]+)"', attrs) for attrs, _ in scripts]
            assert [urlsplit(found.group(1)).path if found else None for found in sources] == [
                "/static/vendor/uPlot.iife.min.js",
                "/static/dashboard.js",
            ], path
        assert all(body.strip() == "" for _, body in scripts), path
        assert not re.search(r"<style\b", html, re.IGNORECASE), path
        assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), path
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), path
        assert not re.search(r"javascript:", html, re.IGNORECASE), path
        for href in re.findall(r'<link\b[^>]*\bhref="([^"]+)"', html):
            assert href.startswith("/static/") or href == "data:,", (path, href)


def test_asset_urls_carry_the_files_hash_and_are_served(db_url: str) -> None:
    engine = read_only(db_url)
    try:
        client = TestClient(create_app(engine, token=TOKEN))
        html = client.get("/", headers=BEARER).text
        urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert len(urls) == 4  # uPlot's CSS and JS, the dashboard's CSS and JS
        for url in urls:
            parts = urlsplit(url)
            name = parts.path.removeprefix("/static/")
            content = (STATIC_DIR / name).read_bytes()
            assert parts.query == "v=" + hashlib.sha256(content).hexdigest()[:12], url
            served = client.get(url)  # no token needed
            assert served.status_code == 200 and served.content == content, url
            kind = served.headers["content-type"]
            assert ("css" in kind) if name.endswith(".css") else ("javascript" in kind), url
    finally:
        engine.dispose()


def test_the_vendored_banner_is_the_only_url_in_uplot() -> None:
    text = (VENDOR / "uPlot.iife.min.js").read_text()
    found = set(re.findall(r"https?://[^\s\"')*]+", text))
    assert found <= {"https://github.com/leeoniya/uPlot"}, found
    assert JS_REMOTE.findall(text) == []
