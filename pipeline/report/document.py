"""The report as data: sections of paragraphs, tables, figures and lists, rendered twice.

:mod:`pipeline.report.sections` decides what the report says; the two
renderers here decide only how: :func:`to_html` (one self-contained page,
images inlined, the stylesheet ``report.css`` shipped as package data) and
:func:`to_markdown` (images linked by relative path). Text may carry the two
inline Markdown marks the stages' notes use, ``**bold**`` and ``code``
between backticks.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence, Union


@dataclass
class Paragraph:
    text: str
    note: bool = False  # smaller, muted


@dataclass
class Callout:
    text: str
    good: bool = True


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    text_columns: Sequence[int] = (0,)  # left-aligned; the others are numbers
    best: Sequence[Sequence[bool]] = ()  # per cell: the column's best value (bold)
    highlight_rows: Sequence[bool] = ()  # per row: our method's row


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Figures:
    """Figures side by side."""

    items: Sequence[Figure]


@dataclass
class Definitions:
    items: Sequence[tuple[str, str]]


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Heading:
    text: str


Block = Union[Paragraph, Callout, Table, Figure, Figures, Definitions, Code, Heading]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    lead: str
    sections: list[Section]


# ----------------------------------------------------------------------------- HTML


def inline_html(text: str) -> str:
    """Escape, then render **bold** and `code`."""
    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _html_table(t: Table) -> str:
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>"]
    for r, row in enumerate(t.rows):
        ours = ' class="ours"' if r < len(t.highlight_rows) and t.highlight_rows[r] else ""
        cells = []
        for c, value in enumerate(row):
            classes = [] if c in t.text_columns else ["num"]
            if t.best and t.best[r][c]:
                classes.append("best")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{inline_html(value)}</td>")
        lines.append(f"<tr{ours}>" + "".join(cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


def _html_figure(f: Figure) -> str:
    data = base64.b64encode(Path(f.path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.caption)}">'
            f"<figcaption>{inline_html(f.caption)}</figcaption></figure>")


def _html_block(b: Block) -> str:
    if isinstance(b, Paragraph):
        return f'<p class="note">{inline_html(b.text)}</p>' if b.note else f"<p>{inline_html(b.text)}</p>"
    if isinstance(b, Callout):
        return f'<div class="callout{"" if b.good else " bad"}">{inline_html(b.text)}</div>'
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Figure):
        return _html_figure(b)
    if isinstance(b, Figures):
        return '<div class="curves">' + "".join(_html_figure(f) for f in b.items) + "</div>"
    if isinstance(b, Definitions):
        return ('<dl class="kv">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{inline_html(v)}</dd>" for k, v in b.items)
                + "</dl>")
    if isinstance(b, Code):
        return f"<pre>{html.escape(b.text)}</pre>"
    return f"<h3>{inline_html(b.text)}</h3>"


def to_html(doc: Document) -> str:
    css = resources.files("pipeline.report").joinpath("report.css").read_text(encoding="utf-8")
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in doc.sections)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(doc.title)}</title><style>{css}</style></head><body>",
             f"<h1>{inline_html(doc.title)}</h1>", f'<p class="lead">{inline_html(doc.lead)}</p>', f"<nav>{nav}</nav>"]
    for s in doc.sections:
        parts.append(f'<h2 id="{s.id}">{html.escape(s.title)}</h2>')
        parts += [_html_block(b) for b in s.blocks]
    return "\n".join(parts + ["</body></html>"]) + "\n"


# ----------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    align = ["---" if c in t.text_columns else "---:" for c in range(len(t.header))]
    lines = ["| " + " | ".join(map(_md_cell, t.header)) + " |", "|" + "|".join(align) + "|"]
    for r, row in enumerate(t.rows):
        cells = [f"**{_md_cell(v)}**" if t.best and t.best[r][c] else _md_cell(v) for c, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_block(b: Block, rel) -> list[str]:
    if isinstance(b, (Paragraph, Callout)):
        return [b.text]
    if isinstance(b, Table):
        return _md_table(b)
    if isinstance(b, Figure):
        return [f"![{b.caption}]({rel(b.path)})"]
    if isinstance(b, Figures):
        return [" ".join(f"![{f.caption}]({rel(f.path)})" for f in b.items)]
    if isinstance(b, Definitions):
        return [f"- {k}: {v}" for k, v in b.items]
    if isinstance(b, Code):
        return [f"```{b.language}", b.text.rstrip(), "```"]
    return [f"### {b.text}"]


def to_markdown(doc: Document, out_dir: str | os.PathLike) -> str:
    """The same document in Markdown; figures linked relative to ``out_dir`` (where the file goes)."""
    def rel(p: Path) -> str:
        return os.path.relpath(p, out_dir)

    lines = [f"# {doc.title}", "", doc.lead, ""]
    for s in doc.sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            lines += _md_block(b, rel) + [""]
    return "\n".join(lines)
