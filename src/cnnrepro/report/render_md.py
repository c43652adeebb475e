"""Render the report document as GitHub-flavoured Markdown; images are referenced relatively."""

from __future__ import annotations

from urllib.parse import quote

from cnnrepro.report.blocks import Bullets, Code, Document, Heading, Image, Paragraph, Table


def _cell(text: str) -> str:
    # A pipe would split the cell; a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_cell(h) for h in table.headers) + " |",
        "|" + "|".join("---" for _ in table.headers) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c.text) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Image):
            caption = f"\n\n*{block.caption}*" if block.caption else ""
            parts.append(f"![{block.title}]({quote(block.path)}){caption}")
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
    return "\n\n".join(parts) + "\n"
