"""The HTML report (``report.html.render_html``) from synthetic content: structure, no
external resources or scripts, determinism, both image formats, nulls and empty windows."""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from PIL import Image as PILImage

from mlpred_cli.errors import InputError
from mlpred_cli.report import formatting
from mlpred_cli.report.html import SECTION_IDS, render_html
from tests.browser_support import launch_args, require_chromium, require_playwright
from tests.report_content_sample import empty_content, sample_content

VOID_ELEMENTS = {"meta", "br", "img", "hr", "input", "link", "col", "wbr", "source"}


class ReportParser(HTMLParser):
    """Collects section ids, figures and their captions, svg attributes, element ids, and
    whether every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []
        self.figures: list[dict[str, Any]] = []
        self.svgs: list[dict[str, str | None]] = []
        self.ids: list[str] = []
        self.text_by_section: dict[str, list[str]] = {}
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        if tag == "section":
            self._section = str(attributes.get("id"))
            self.sections.append(self._section)
        if tag == "figure":
            self.figures.append({"caption": None, "images": 0})
        if tag in ("svg", "img") and "figure" in self.stack:
            self.figures[-1]["images"] += 1
        if tag == "svg":
            self.svgs.append(attributes)
        if tag == "figcaption":
            self.figures[-1]["caption"] = ""
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "figcaption":
            self.figures[-1]["caption"] += data
        if self._section is not None:
            self.text_by_section.setdefault(self._section, []).append(data)

    def section_text(self, section: str) -> str:
        return " ".join(" ".join(self.text_by_section.get(section, [])).split())


def parse(document: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(document)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def svg_report() -> str:
    return render_html(sample_content(30, 10))


@pytest.fixture(scope="module")
def png_report() -> str:
    return render_html(sample_content(30, 10, images="png"))


@pytest.mark.parametrize("images", ["svg", "png"])
def test_sections_in_order_and_tags_balanced(images: str, svg_report: str, png_report: str) -> None:
    parser = parse(svg_report if images == "svg" else png_report)
    assert parser.sections == list(SECTION_IDS)
    assert parser.sections[:3] == ["header", "status", "accuracy"]
    assert parser.errors == []
    assert parser.stack == []
    # one h2 per section
    assert svg_report.count("<h2>") >= len(SECTION_IDS)


@pytest.mark.parametrize("images", ["svg", "png"])
def test_no_script_and_nothing_outside_the_document(
    images: str, svg_report: str, png_report: str
) -> None:
    document = svg_report if images == "svg" else png_report
    lowered = document.lower()
    for forbidden in ("http://", "https://", "<script", 'src="//', "@import", "<link", "onload="):
        assert forbidden not in lowered, forbidden
    for match in re.finditer(r"url\(\s*['\"]?([^'\")\s]*)", lowered):
        assert match.group(1).startswith(("#", "data:")), match.group(0)
    for match in re.finditer(r"(?:src|href)=\"([^\"]*)\"", lowered):
        assert match.group(1).startswith(("#", "data:")), match.group(0)


def test_same_content_gives_identical_bytes() -> None:
    for images in ("svg", "png"):
        first = render_html(sample_content(20, 5, seed=3, images=images))
        second = render_html(sample_content(20, 5, seed=3, images=images))
        assert first.encode() == second.encode()
    assert render_html(sample_content(20, 5, seed=3)) != render_html(sample_content(20, 5, seed=4))


def test_identical_bytes_across_processes() -> None:
    """Chart ids come from a fixed salt, not from hash randomization or object addresses."""
    script = (
        "import hashlib, sys\n"
        "from tests.report_content_sample import sample_content\n"
        "from mlpred_cli.report.html import render_html\n"
        "sys.stdout.write(hashlib.sha256(render_html(sample_content(8, 3)).encode()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2"):
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=environment,
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
            timeout=120,
        )
        digests.add(result.stdout)
    digests.add(hashlib.sha256(render_html(sample_content(8, 3)).encode()).hexdigest())
    assert len(digests) == 1


def test_svg_charts_are_inline_accessible_and_ids_unique(svg_report: str) -> None:
    parser = parse(svg_report)
    assert len(parser.svgs) >= 9
    for attributes in parser.svgs:
        assert attributes.get("role") == "img"
        assert attributes.get("aria-label")
        assert "xmlns" not in attributes
    assert "<?xml" not in svg_report
    assert "<!DOCTYPE svg" not in svg_report
    assert "<metadata>" not in svg_report
    assert "data:image/png" not in svg_report
    duplicated = {name for name in parser.ids if parser.ids.count(name) > 1}
    assert duplicated == set()


def test_png_mode_has_images_and_no_svg(png_report: str) -> None:
    parser = parse(png_report)
    assert "<svg" not in png_report
    images = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', png_report
    )
    assert len(images) == sum(figure["images"] for figure in parser.figures) >= 9
    assert all(len(data) > 1000 for data, _ in images)


def test_every_figure_has_a_caption_with_its_key_figure(svg_report: str) -> None:
    parser = parse(svg_report)
    assert len(parser.figures) >= 9
    for figure in parser.figures:
        assert figure["images"] == 1
        assert figure["caption"] and figure["caption"].strip()
    content = sample_content(30, 10)
    # the accuracy caption names the worst day, found here from the daily rows themselves
    days = [
        row for row in content["daily"] if row["horizon"] == "1h" and row["accuracy"] is not None
    ]
    lowest = min(days, key=lambda row: row["accuracy"])
    captions = " ".join(figure["caption"] for figure in parser.figures)
    assert f"lowest day {lowest['day']} at {lowest['accuracy'] * 100:.1f} %" in captions
    assert "before costs" in captions


def test_report_size_stays_small(svg_report: str, png_report: str) -> None:
    sizes = {"svg": len(svg_report.encode()), "png": len(png_report.encode())}
    print(f"30-day 10-symbol report: {sizes['svg']:,} bytes (svg), {sizes['png']:,} bytes (png)")
    assert all(size < 1_000_000 for size in sizes.values()), sizes


def test_status_cards_carry_verdict_colour_and_words() -> None:
    content = sample_content(30, 10)
    content["status"][0]["verdict"] = "below"
    content["status"][1]["verdict"] = "unknown"
    document = render_html(content)
    status = document[
        document.index('<section id="status">') : document.index('<section id="accuracy">')
    ]
    assert status.count('class="card verdict-') == len(content["status"])
    assert 'class="card verdict-below"' in status and "below base rate" in status
    assert 'class="card verdict-unknown"' in status and "not enough data" in status


def test_empty_window_renders_a_short_report() -> None:
    document = render_html(empty_content())
    parser = parse(document)
    assert parser.errors == [] and parser.stack == []
    assert parser.sections[0] == "header"
    assert "There are no predictions in the window" in parser.section_text("status")
    assert parser.figures == []
    # maturity and freshness still show, as unknowns
    assert "Matured share" in document
    assert "n/a" in parser.section_text("header")
    assert len(document.encode()) < 30_000


def test_nulls_render_as_not_available() -> None:
    content = sample_content(30, 10)
    content["performance"]["inference_time_ms_p99"] = None
    content["horizons"][2]["pearson_ic"] = None
    parser = parse(render_html(content))
    assert "p99 n/a" in parser.section_text("input-health")
    ic_text = parser.section_text("ic")
    assert re.search(r"4h [+-]\d\.\d{3} n/a", ic_text), ic_text


def _blank_figures(value: Any) -> Any:
    """Every float of ``value`` replaced with None, recursively."""
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        return {key: _blank_figures(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_blank_figures(item) for item in value]
    return value


@pytest.mark.parametrize("images", ["svg", "png"])
def test_content_with_every_figure_unknown_still_renders(images: str) -> None:
    content = _blank_figures(sample_content(10, 3, images=images))
    document = render_html(content)
    parser = parse(document)
    assert parser.sections == list(SECTION_IDS)
    assert parser.errors == []
    assert document.count("n/a") > 50
    for figure in parser.figures:
        assert figure["caption"].strip()


def test_empty_lists_say_so_in_one_sentence() -> None:
    content = sample_content(30, 10, versions=1, monitoring=False)
    for key in ("return_quintiles", "return_by_confidence", "symbol_table", "signals"):
        content[key] = []
    content["signal_economics"] = {**content["signal_economics"], "signals": [], "cumulative": []}
    parser = parse(render_html(content))
    returns = parser.section_text("returns")
    assert "No predicted return with an outcome" in returns
    assert "No LONG or SHORT signal with an outcome to group" in returns
    assert "No symbol has a prediction in the window." in parser.section_text("symbols")
    assert "No signal recorded in the window." in parser.section_text("signals")
    assert "one model version, v1" in parser.section_text("versions")
    assert "mlpred check was not run" in parser.section_text("monitoring")
    assert len(parser.figures) == 6  # accuracy, 3 IC, reliability, confidence


def test_monitoring_error_and_escaping() -> None:
    content = sample_content(30, 10)
    monitoring = copy.deepcopy(content["monitoring"])
    monitoring["error"] = "database <unreachable> & retried"
    content["monitoring"] = monitoring
    document = render_html(content)
    section = parse(document).section_text("monitoring")
    assert "mlpred check failed: database <unreachable> & retried" in section
    assert "database &lt;unreachable&gt; &amp; retried" in document
    # OK results are left out of the table, the others are listed worst first as given
    assert "no NaN rows" not in section
    assert "no candles for SYM09USDT" in section


def test_symbol_table_marks_best_worst_and_colours_cells() -> None:
    content = sample_content(30, 10)
    document = render_html(content)
    symbols = document[
        document.index('<section id="symbols">') : document.index('<section id="versions">')
    ]
    assert symbols.count('class="badge best"') == 1
    assert symbols.count('class="badge worst"') == 1
    base_rate = {row["horizon"]: row["base_rate"] for row in content["horizons"]}
    expected_above = sum(
        1
        for row in content["symbol_table"]
        for item in row["horizons"]
        if item["accuracy_low"] is not None and item["accuracy_low"] > base_rate[item["horizon"]]
    )
    assert symbols.count('class="cell-above"') == expected_above


def test_formatting_helpers() -> None:
    assert formatting.percent(0.5421) == "54.2 %"
    assert formatting.percent(None) == "n/a"
    assert formatting.percent(float("nan")) == "n/a"
    assert formatting.interval(0.531, 0.553) == "53.1\N{EN DASH}55.3 %"
    assert formatting.interval(None, 0.5) == "n/a"
    assert formatting.points(0.013) == "+1.3 pp"
    assert formatting.points(-0.0213) == "-2.1 pp"
    assert formatting.points(-0.00001) == "+0.0 pp"
    assert formatting.return_percent(0.0012) == "+0.12 %"
    assert formatting.basis_points(-0.0012) == "-12.0 bp"
    assert formatting.magnitude(0.0015) == "0.15 %"
    assert formatting.count(1234567) == "1,234,567"
    assert formatting.count(True) == "n/a"
    assert formatting.coefficient(0.0342) == "+0.034"
    assert formatting.t_statistic(-2.314) == "t = -2.31"
    assert formatting.p_value(0.0004) == "p < 0.001"
    assert formatting.moment("2026-12-01T06:00:00+01:00") == "2026-12-01 05:00 UTC"
    assert formatting.moment("2026-11-03") == "2026-11-03"
    assert formatting.age(45) == "45 s"
    assert formatting.age(3 * 3600) == "3.0 h"
    assert formatting.age(3 * 86400) == "3.0 d"


def test_content_missing_a_key_is_an_input_error() -> None:
    content = sample_content(10, 3)
    del content["horizons"][0]["base_rate"]
    with pytest.raises(InputError, match="base_rate"):
        render_html(content)


#: The report's content column at a 1000 px wide window (60rem body less its padding).
COLUMN_PX = 920


def test_png_charts_are_drawn_for_hidpi_at_their_css_size(png_report: str) -> None:
    """Each <img> declares the CSS size it is shown at, and its bitmap has at least twice
    those pixels across, in the same proportions, so a HiDPI screen does not upscale it."""
    images = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]+" '
        r'width="(\d+)" height="(\d+)">',
        png_report,
    )
    assert len(images) >= 9
    for data, width, height in images:
        with PILImage.open(io.BytesIO(base64.b64decode(data))) as bitmap:
            pixels_wide, pixels_high = bitmap.size
        assert int(width) >= COLUMN_PX
        assert pixels_wide >= 2 * int(width)
        assert abs(pixels_high / pixels_wide - int(height) / int(width)) < 0.01


def _status_cards(document: str) -> dict[str, str]:
    """Each status card's text, by horizon."""
    status = document[
        document.index('<section id="status">') : document.index('<section id="accuracy">')
    ]
    cards = re.findall(r'<div class="card verdict-[a-z]+">(.*?)</div>', status, re.DOTALL)
    texts = [" ".join(re.sub(r"<[^>]+>", " ", card).split()) for card in cards]
    return {text.split()[0]: text for text in texts}


def test_status_card_without_a_previous_period_says_so() -> None:
    content = sample_content(30, 10)
    by_horizon = {row["horizon"]: row for row in content["status"]}
    for horizon, previous_n in (("15m", 0), ("12h", None)):
        by_horizon[horizon].update(
            previous_n=previous_n,
            previous_accuracy=None,
            accuracy_change=None,
            previous_daily_ic_mean=None,
            ic_change=None,
        )
    cards = _status_cards(render_html(content))
    for horizon in ("15m", "12h"):
        assert "no predictions in the previous period" in cards[horizon].lower()
        assert "was n/a" not in cards[horizon]
    # a horizon with a previous period still compares against it
    previous = by_horizon["1h"]
    assert f"n = {previous['previous_n']:,}" in cards["1h"]
    assert f"was {previous['previous_accuracy'] * 100:.1f} %" in cards["1h"]
    assert "no predictions in the previous period" not in cards["1h"].lower()


def test_model_version_note_explains_a_missing_comparison() -> None:
    content = sample_content(30, 10, versions=3)
    note = content["model_versions"]["note"]
    assert note and content["model_versions"]["comparison"] is None
    assert note in parse(render_html(content)).section_text("versions")
    single = sample_content(30, 10, versions=1)
    single["model_versions"]["note"] = "one model version: nothing to compare"
    versions_text = parse(render_html(single)).section_text("versions")
    assert "one model version: nothing to compare" in versions_text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("images", ["svg", "png"])
def test_charts_fill_the_column_and_nothing_scrolls_sideways(
    images: str, svg_report: str, png_report: str, tmp_path: Path
) -> None:
    """In Chromium, every chart is as wide as the content column at 1000 px and the page
    has no horizontal scroll at 400 px (wide tables scroll inside their own box)."""
    sync_api = require_playwright()
    executable = require_chromium()
    path = tmp_path / f"report-{images}.html"
    path.write_text(svg_report if images == "svg" else png_report, encoding="utf-8")
    measure = """() => ({
        page: document.scrollingElement.scrollWidth,
        column: document.querySelector('section').getBoundingClientRect().width,
        charts: Array.from(document.querySelectorAll('figure svg, figure img'))
            .map(chart => chart.getBoundingClientRect().width),
    })"""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=launch_args(), headless=True
        )
        try:
            for window in (1000, 400):
                page = browser.new_page(viewport={"width": window, "height": 900})
                page.goto(path.resolve().as_uri(), wait_until="load")
                sizes = page.evaluate(measure)
                page.close()
                assert sizes["page"] <= window, (window, sizes["page"])
                assert len(sizes["charts"]) >= 9
                for width in sizes["charts"]:
                    assert abs(width - sizes["column"]) < 1, (window, width, sizes["column"])
                if window == 1000:
                    assert abs(sizes["column"] - COLUMN_PX) < 1
        finally:
            browser.close()


def test_window_length_shows_in_days_to_a_tenth() -> None:
    content = sample_content(10, 3)
    content["report"]["window"]["days"] = 6.875  # a --since/--until window
    assert "(6.9 days)" in parse(render_html(content)).section_text("header")
    assert "(10 days)" in parse(render_html(sample_content(10, 3))).section_text("header")
    assert formatting.days(1.0) == "1 day"
    assert formatting.days(29.96) == "30 days"
    assert formatting.days(None) == "n/a"


def _mix_phrase(mix: dict[str, int]) -> str:
    total = sum(mix.values())
    shares = ", ".join(f"{horizon}: {n / total * 100:.0f} %" for horizon, n in mix.items())
    return f"at each signal's primary horizon ({shares})"


def test_signal_returns_name_each_horizon_of_a_mix(svg_report: str) -> None:
    """Signals followed at several primary horizons are never described as 'at 1h'."""
    mix = sample_content(30, 10)["signal_economics"]["horizon_mix"]
    assert len(mix) > 1
    phrase = _mix_phrase(mix)
    parser = parse(svg_report)
    signals = parser.section_text("signals")
    cumulative = next(f["caption"] for f in parser.figures if "LONG/SHORT" in f["caption"])
    for text in (signals, cumulative, parser.section_text("definitions")):
        assert phrase in text
        assert "at 1h" not in text
    # the chart's own title says it too (its text is SVG markup, entity-escaped)
    chart = svg_report[svg_report.index('aria-label="Cumulative return') :]
    assert phrase in html.unescape(chart[: chart.index("</svg>")])


def test_signal_returns_at_a_single_horizon_say_so() -> None:
    content = sample_content(30, 10)
    economics = content["signal_economics"]
    economics["horizon_mix"] = {"4h": sum(economics["horizon_mix"].values())}
    document = render_html(content)
    parser = parse(document)
    cumulative = next(f["caption"] for f in parser.figures if "LONG/SHORT" in f["caption"])
    for text in (parser.section_text("signals"), cumulative, parser.section_text("definitions")):
        assert "at 4h" in text
        assert "each signal's primary horizon" not in text
    assert "following the signals at 4h, before costs" in document


def test_symbol_ic_falls_back_to_the_mean_daily_ic_and_marks_it() -> None:
    content = sample_content(30, 10)
    cells = [item for row in content["symbol_table"] for item in row["horizons"]]
    daily_only = [c for c in cells if c["ic"] is None and c["daily_ic_mean"] is not None]
    neither = [c for c in cells if c["ic"] is None and c["daily_ic_mean"] is None]
    assert daily_only and neither
    document = render_html(content)
    symbols = document[
        document.index('<section id="symbols">') : document.index('<section id="versions">')
    ]
    markers = re.findall(
        r'([+-]\d\.\d{3})<span class="marker" title="mean daily IC">d</span>', symbols
    )
    assert markers == [formatting.coefficient(c["daily_ic_mean"]) for c in daily_only]
    # a pooled IC, where present, is what the cell shows
    pooled = next(c for c in cells if c["ic"] is not None)
    assert f">{formatting.coefficient(pooled['ic'])}</td>" in symbols
    definitions = parse(document).section_text("definitions")
    assert "pooled rank IC" in definitions and "mean daily IC, marked d" in definitions


def test_model_comparison_names_its_paired_period_and_difference() -> None:
    content = sample_content(30, 10)
    comparison = content["model_versions"]["comparison"]
    parser = parse(render_html(content))
    versions = parser.section_text("versions")
    since, until = comparison["since"][:10], comparison["until"][:10]
    assert f"paired test over {since} \N{EN DASH} {until}, the window's last 7 days" in versions
    assert "B \N{MINUS SIGN} A (paired)" in versions
    definitions = parser.section_text("definitions")
    assert "B \N{MINUS SIGN} A (paired) In the model-version comparison" in definitions
    # a short window's comparison covers all of it
    short = sample_content(5, 3)
    window = short["report"]["window"]
    assert short["model_versions"]["comparison"]["since"] == window["since"]
    assert "the whole window" in parse(render_html(short)).section_text("versions")


def test_monitoring_names_its_period_and_hides_alerts_of_a_past_window() -> None:
    content = sample_content(30, 10)
    since, until = (
        content["monitoring"]["window"]["since"],
        content["monitoring"]["window"]["until"],
    )
    alert = content["monitoring"]["open_alerts"][0]["summary"]
    shown = parse(render_html(content)).section_text("monitoring")
    assert f"mlpred check ran over {since[:10]} \N{EN DASH} {until[:10]}" in shown
    assert alert in shown
    content["monitoring"].update(alerts_shown=False, open_alerts=[])
    stale = parse(render_html(content)).section_text("monitoring")
    assert "Open alerts are shown only for a window that ends at the report time." in stale
    assert "No open alerts" not in stale


def test_empty_daily_ic_states_the_rule_for_a_daily_ic() -> None:
    content = sample_content(10, 3)
    for row in content["daily"]:
        row["ic_mean"] = None
    text = parse(render_html(content)).section_text("ic")
    assert "at least 3 predicted/actual return pairs, neither side constant" in text
    assert "two symbols" not in text


def test_charts_ignore_the_users_matplotlib_settings() -> None:
    """A matplotlibrc (or a caller's rcParams) does not change a byte of the report."""
    content = sample_content(8, 3)
    expected = {
        images: render_html({**content, "report": {**content["report"], "images": images}})
        for images in ("svg", "png")
    }
    unusual = {
        "lines.linewidth": 7.0,
        "axes.formatter.use_locale": True,
        "axes.facecolor": "#ffe0e0",
        "xtick.direction": "inout",
        "font.size": 17.0,
        "axes.prop_cycle": matplotlib.cycler(color=["#ff00ff"]),
        "figure.dpi": 33.0,
    }
    saved = {key: matplotlib.rcParams[key] for key in unusual}
    try:
        matplotlib.rcParams.update(unusual)
        for images, document in expected.items():
            assert (
                render_html({**content, "report": {**content["report"], "images": images}})
                == document
            )
        # and the user's settings are theirs again afterwards
        assert matplotlib.rcParams["lines.linewidth"] == 7.0
        assert matplotlib.rcParams["axes.facecolor"] == "#ffe0e0"
    finally:
        matplotlib.rcParams.update(saved)
