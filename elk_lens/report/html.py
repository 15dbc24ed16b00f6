"""A self-contained HTML report: inline CSS and figures, no scripts fetched from the network."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Section", "render_page", "table_html"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1040px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
.note { color: #555; font-size: .92em; }
.good { background: #e6f4e6; } .bad { background: #fbe9e9; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .85em; }
"""


@dataclass
class Section:
    """One titled part of the report; ``html`` is trusted markup built by elk-lens."""

    title: str
    html: str
    anchor: str = field(default="")

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def table_html(rows: Sequence[dict], *, digits: int = 3, highlight=None) -> str:
    """An HTML table from dict rows (keys of the first row are the columns).

    ``highlight(column, value) -> "good" | "bad" | None`` colours individual cells.
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
            text = ("n/a" if v != v else f"{v:.{digits}f}") if isinstance(v, float) else str(v)
            classes = " ".join(
                x for x in ("num" if isinstance(v, (int, float)) else "", highlight(c, v) if highlight else None) if x
            )
            cells.append(f"<td{f' class={escape(classes)!r}' if classes else ''}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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
