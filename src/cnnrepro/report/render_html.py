"""Render the report document as one self-contained HTML file: inline CSS, images as base64 data URIs.

No scripts and no external resources, so the file opens the same offline, attached to a mail or archived.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.report.blocks import Bullets, Code, Document, Heading, Image, Paragraph, Table

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 20px 24px 64px; max-width: 1400px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 10px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e3e8; }
h3 { font-size: 16px; margin: 22px 0 8px; }
p, li { max-width: 1100px; }
code { font: 12px/1.3 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f3f3f6; padding: 1px 4px;
       border-radius: 3px; overflow-wrap: anywhere; }  /* hashes and run ids may break anywhere */
pre { background: #f3f3f6; padding: 10px 14px; border-radius: 6px; overflow-x: auto; white-space: pre-wrap;
      overflow-wrap: anywhere; }
pre code { background: none; padding: 0; }
.scroll { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d8d8de; padding: 4px 7px; text-align: left; vertical-align: top; }
td { overflow-wrap: break-word; }
th { background: #f0f0f4; font-weight: 600; }
tr:nth-child(even) td { background: #fafafc; }
td.nowrap, td.nowrap code { white-space: nowrap; overflow-wrap: normal; }
td.num { text-align: right; white-space: nowrap; }
table.headline { width: 100%; }
table.headline td.verdict { white-space: nowrap; }
table.headline td.why { min-width: 320px; }
table.details { width: 100%; font-size: 12px; }
td.verdict-reproduced { background: #dff3e1 !important; }
td.verdict-above { background: #dceafb !important; }
td.verdict-below { background: #fbe0dc !important; }
td.verdict-inconclusive { background: #fdf0d0 !important; }
td.verdict-not-comparable { background: #ece4f6 !important; }
td.verdict-not-run, td.verdict-missing { background: #eeeeee !important; color: #444; }
td.verdict-failed { background: #f9d3cf !important; }
td.verdict-no-documented-figure { background: #fff6d6 !important; }
figure { margin: 14px 0 26px; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
.gallery figure { flex: 0 1 calc(50% - 12px); min-width: 420px; margin: 10px 0 18px; }
.gallery figure.wide { flex-basis: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e8; }
figcaption { font-size: 13px; color: #555; margin-top: 4px; max-width: 1100px; }
"""

_MARKS = [(re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"`(.+?)`"), r"<code>\1</code>")]


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in _MARKS:
        out = pattern.sub(replacement, out)
    return out


def data_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CnnreproError(f"{path}: cannot embed image ({exc.strerror})") from None
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _table(table: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{c.css}">{_inline(c.text)}</td>' if c.css else f"<td>{_inline(c.text)}</td>" for c in row
        )
        + "</tr>"
        for row in table.rows
    )
    css = f' class="{table.css}"' if table.css else ""
    return f'<div class="scroll"><table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


WIDE_PX = 1200  # wider than a half-page gallery column shows readably (e.g. a 16-channel activation grid)


def _is_wide(path: Path) -> bool:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as img:  # reads the header only
            return img.size[0] > WIDE_PX
    except OSError:
        return False


def _gallery(figures: list[str]) -> str:
    """Consecutive figures side by side where the window is wide enough; a lone figure keeps its full width."""
    if len(figures) < 2:
        return "".join(figures)
    return '<div class="gallery">' + "".join(figures) + "</div>"


def render_html(doc: Document, base_dir: Path) -> str:
    """HTML for `doc`; image paths are read relative to base_dir and embedded."""
    parts = [f"<h1>{_inline(doc.title)}</h1>"]
    gallery: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Image):
            caption = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
            alt = html.escape(block.title)
            css = ' class="wide"' if _is_wide(base_dir / block.path) else ""
            gallery.append(f'<figure{css}><img src="{data_uri(base_dir / block.path)}" alt="{alt}">{caption}</figure>')
            continue
        parts.append(_gallery(gallery))
        gallery = []
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Code):
            parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    parts.append(_gallery(gallery))
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
