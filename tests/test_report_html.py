"""comparison.html opened in headless Chromium: the table shows the synthetic numbers, every image decodes,
and a screenshot is not blank. Plus the self-containment checks that need no browser."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.documented import DOCUMENTED
from cnnrepro.report.build import build_report

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
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium not installed (make test installs it)"
)

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
    table = dom[dom.index('<table class="comparison">') :]
    table = table[: table.index("</table>")]
    dom_rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    assert len(dom_rows) == len(csv_rows)
    for dom_row, row in zip(dom_rows, csv_rows, strict=True):
        assert f"<code>{row['variant']}</code>" in dom_row and f"<strong>{row['verdict']}</strong>" in dom_row
        if row["test_mean"]:
            assert f"{float(row['test_mean']) * 100:.2f}" in dom_row
        if row["difference_pp"]:
            assert f"{float(row['difference_pp']):+.2f}" in dom_row


@needs_chromium
def test_chromium_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,3000", (report / "comparison.html").as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (3000, 1400)
    ink = (pixels < 200).any(axis=2)  # text, lines, bars
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # plot colours and verdict cells, not grey text
    assert ink.mean() > 0.01
    assert saturated.sum() > 5000
    # The plots sit below the table: the lower half of the page must carry colour too.
    assert saturated[1500:].sum() > 2000
