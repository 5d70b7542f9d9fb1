"""One self-contained HTML page: tables, captions, and figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellbench.report.tables import Table

__all__ = ["Section", "render_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.4em 0 0.2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; }
th { background: #f0f0f0; } td:nth-child(-n+5) { text-align: left; }
p.caption { font-size: 0.8em; color: #555; margin: 0 0 1.2em; max-width: 1100px; }
img { max-width: 100%; border: 1px solid #eee; } pre { background: #f7f7f7; padding: 0.6em; font-size: 0.8em; }
"""


@dataclass(frozen=True)
class Section:
    """A heading with text, tables and figures (PNG paths)."""

    title: str
    text: str = ""
    tables: tuple[Table, ...] = ()
    figures: tuple[tuple[str, Path], ...] = ()
    pre: str = ""


def _cell(text: str, bold: bool) -> str:
    return f"<td><strong>{html.escape(text)}</strong></td>" if bold else f"<td>{html.escape(text)}</td>"


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.header())
    bold = t.bold_cells()
    body = "".join("<tr>" + "".join(_cell(v, (r, c) in bold) for c, v in enumerate(row)) + "</tr>"
                   for r, row in enumerate(t.formatted()))
    return (f"<h3>{html.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class='caption'>{html.escape(t.caption)} (CSV: tables/{html.escape(t.key)}.csv)</p>")


def _figure_html(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption class='caption'>{html.escape(caption)}</figcaption></figure>")


def render_html(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole page as a string; nothing outside it is referenced."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    toc = "".join(f"<li><a href='#s{k}'>{html.escape(s.title)}</a></li>" for k, s in enumerate(sections))
    parts.append(f"<ul>{toc}</ul>")
    for k, s in enumerate(sections):
        parts.append(f"<h2 id='s{k}'>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts.extend(_table_html(t) for t in s.tables)
        parts.extend(_figure_html(c, p) for c, p in s.figures)
        if s.pre:
            parts.append(f"<pre>{html.escape(s.pre)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
