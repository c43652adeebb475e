"""comparison.html opened in headless Chromium: the table shows the synthetic numbers, every image decodes,
the page fits a 1280 px screen with the headline (verdicts and partial seeds) on the first screen, and a
screenshot is not blank. Plus the self-containment checks that need no browser."""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.report.build import build_report
from cnnrepro.variants.documented import DOCUMENTED

from .helpers_report import ALL_VARIANTS, settings, write_case_grid, write_clean_summary

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium_installed() -> None:
    """Skip without Chromium on a person's machine; under CI (CI=true) fail instead, so a CI run can never
    pass with the browser checks silently skipped."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI={os.environ['CI']} but {CHROMIUM} is missing: `make system-deps` installs it under CI")
    pytest.skip("chromium not installed (make system-deps installs it)")


needs_chromium = pytest.mark.usefixtures("chromium_installed")

# Appended to a copy of the report, never to the product: after load, list every image's decoded width.
# The control image is deliberately broken, so a probe that could not see a failed decode fails the test.
PROBE = """
<img alt="broken-control" src="data:image/png;base64,AAAA">
<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "img-probe";
  out.textContent = JSON.stringify(Array.from(document.images).map(i => [i.alt, i.naturalWidth]));
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html")
    write_case_grid(root / "runs", {v: f.documented for v, f in DOCUMENTED.items()})
    st = settings([v for group in ALL_VARIANTS.values() for v in group])
    build_report(root / "runs", write_clean_summary(root / "summary.json"), root / "reports", st)
    return root / "reports"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


def test_html_is_self_contained(report: Path) -> None:
    html = (report / "comparison.html").read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(sources) == len(json.loads((report / "comparison.json").read_text())["plots"])
    for data in sources:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_chromium_renders_the_rows_and_decodes_every_image(report: Path, tmp_path: Path) -> None:
    page = tmp_path / "probe.html"
    page.write_text((report / "comparison.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout

    probe = re.search(r'<pre id="img-probe">(.*?)</pre>', dom, re.S)
    assert probe, "the probe script did not run"
    widths = dict(json.loads(probe.group(1).replace("&quot;", '"')))
    assert widths.pop("broken-control") == 0
    assert widths and all(w > 100 for w in widths.values()), widths

    with (report / "comparison.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))

    def body_rows(css: str) -> list[str]:
        table = dom[dom.index(f'<table class="{css}">') :]
        return re.findall(r"<tr>(.*?)</tr>", table[: table.index("</table>")], re.S)[1:]

    headline, details = body_rows("headline"), body_rows("details")
    assert len(headline) == len(details) == len(csv_rows)
    for glance, detail, row in zip(headline, details, csv_rows, strict=True):
        assert f"<code>{row['variant']}</code>" in glance and f"<strong>{row['verdict']}</strong>" in glance
        assert f"<code>{row['variant']}</code>" in detail
        if row["test_mean"]:
            assert f"{float(row['test_mean']) * 100:.2f}" in detail
        if row["difference_pp"]:
            assert f"{float(row['difference_pp']):+.2f}" in detail


# After load: the page's width against the window's, every table wrapper's own overflow, and where the headline's
# verdict cells end. A 2000 px control element is measured first, so a probe blind to overflow fails the test.
LAYOUT_PROBE = """
<script>
window.addEventListener("load", () => {
  const de = document.documentElement;
  const wide = document.createElement("div");
  wide.style.cssText = "width: 2000px; height: 10px";
  document.body.appendChild(wide);
  const control = de.scrollWidth;
  wide.remove();
  const tables = Array.from(document.querySelectorAll("div.scroll")).map(
    d => [d.firstElementChild.className, d.scrollWidth, d.clientWidth]);
  const verdicts = Array.from(document.querySelectorAll("table.headline td.verdict")).map(td => {
    const box = td.getBoundingClientRect();
    return [td.textContent, Math.round(box.right), Math.round(box.bottom + window.scrollY)];
  });
  const out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({control, width: de.scrollWidth, window: window.innerWidth, tables, verdicts});
  document.body.appendChild(out);
});
</script>
"""
SCREEN = (1280, 1000)


@needs_chromium
def test_page_fits_a_1280px_screen_with_the_headline_first(report: Path, tmp_path: Path) -> None:
    page = tmp_path / "layout.html"
    page.write_text((report / "comparison.html").read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    size = f"--window-size={SCREEN[0]},{SCREEN[1]}"
    dom = chromium(tmp_path, size, "--dump-dom", page.as_uri()).stdout
    probe = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert probe, "the layout probe did not run"
    layout = json.loads(html.unescape(probe.group(1)))
    assert layout["window"] == SCREEN[0]
    assert layout["control"] >= 2000  # the probe sees overflow when there is some
    assert layout["width"] <= SCREEN[0], f"horizontal scrollbar: page is {layout['width']} px wide"
    overflowing = [t for t in layout["tables"] if t[1] > t[2]]
    assert not overflowing, f"tables that scroll sideways (class, content px, box px): {overflowing}"
    # Every verdict, with its partial-seeds note, ends inside the window, and the headline sits on the first screen.
    verdicts = layout["verdicts"]
    with (report / "comparison.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(verdicts) == len(rows)
    assert all(right <= SCREEN[0] and bottom <= SCREEN[1] for _, right, bottom in verdicts), verdicts
    partial = [text for text, _, _ in verdicts if "2 of 3 seeds" in text]
    expected_partial = [r for r in rows if len(r["seeds_completed"].split()) == 2]
    assert partial and len(partial) == len(expected_partial)


@needs_chromium
def test_chromium_screenshot_at_1280px_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,5000", (report / "comparison.html").as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (5000, 1280)
    ink = (pixels < 200).any(axis=2)  # text, lines, bars
    tinted = (pixels.max(axis=2) - pixels.min(axis=2)) > 15  # the verdict cells' pale colours
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # plot colours
    assert ink.mean() > 0.01
    assert tinted[:1000].sum() > 20_000  # the coloured verdict column on the first screen
    assert saturated[1000:].sum() > 5000  # the plots further down
