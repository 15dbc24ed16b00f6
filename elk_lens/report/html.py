"""A self-contained HTML report: inline CSS and figures, no scripts fetched from the network."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Page", "Section", "auroc_shade", "folded", "render_page", "table_html"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1040px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; overflow-wrap: anywhere; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
.note { color: #555; font-size: .92em; }
.good { background: #e6f4e6; } .bad { background: #fbe9e9; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .85em; overflow-wrap: normal; }
.scroll { overflow-x: auto; max-width: 100%; }
.scroll td, .scroll th { overflow-wrap: normal; } td.mark { white-space: nowrap; }
svg { max-width: 100%; height: auto; }
details > summary { cursor: pointer; color: #555; margin: .6em 0; }
"""
# A wide table scrolls inside its own box (.scroll) and a figure shrinks to the page (svg max-width), so the
# page itself never scrolls sideways; the viewBox keeps a shrunk figure's shape.

_MARKS = {True: ("✓ yes", "mark good"), False: ("✗ no", "mark bad")}  # a mark and a word: readable without colour


@dataclass
class Section:
    """One titled part of the report; ``html`` is trusted markup built by elk-lens."""

    title: str
    html: str
    anchor: str = field(default="")

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass(frozen=True)
class Page:
    """What a renderer (``elk_lens.report.pages``) draws from an analysis's view: the report's title, its
    introduction (markup) and its sections."""

    title: str
    intro: str
    sections: list[Section]


def table_html(rows: Sequence[dict], *, digits: int = 3, highlight=None) -> str:
    """An HTML table from dict rows (keys of the first row are the columns), in a box that scrolls sideways.

    Floats are shown with ``digits`` decimals (NaN as n/a), booleans as a mark and a word (✓ yes / ✗ no,
    shaded good / bad). ``highlight(column, value) -> "good" | "bad" | None`` colours individual cells.
    """
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c, "")
            text, kind = _cell(v, digits)
            classes = " ".join(x for x in (kind, highlight(c, v) if highlight else None) if x)
            cells.append(f"<td{f' class={escape(classes)!r}' if classes else ''}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def auroc_shade(value: object, *, bad: float = 0.1, good: float = 0.9) -> str | None:
    """A ``table_html`` highlight class for an AUROC cell: ``"good"`` at or above ``good``, ``"bad"`` at or
    below ``bad`` (0.1: reads the opposite of truth; 0.6: near chance), nothing for NaN or a non-float."""
    if not isinstance(value, float) or value != value:
        return None
    return "good" if value >= good else "bad" if value <= bad else None


def _cell(v: object, digits: int) -> tuple[str, str]:
    """A cell's text and class: bool before int, since ``True`` is an ``int`` too."""
    if isinstance(v, bool):
        return _MARKS[v]
    if isinstance(v, float):
        return ("n/a" if v != v else f"{v:.{digits}f}"), "num"
    return str(v), "num" if isinstance(v, int) else ""


def folded(summary: str, html: str) -> str:
    """``html`` (trusted markup) folded away under a one-line ``summary`` (text, escaped here) that opens it."""
    return f"<details><summary>{escape(summary)}</summary>{html}</details>"


def render_page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The page: ``title`` and the section titles are text (escaped here); ``intro`` and each section's
    ``html`` are markup built by elk-lens, which escapes every string it puts in them."""
    toc = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in sections)
    parts = [f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.html}</section>' for s in sections]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{intro}<ul>{toc}</ul>{''.join(parts)}"
        f"</body></html>"
    )
