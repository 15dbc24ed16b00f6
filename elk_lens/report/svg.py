"""Inline SVG line charts and heatmaps: self-contained figures for the HTML report, with no plotting dependency.

The report's CSS scales every figure down to the page width (``max-width: 100%``); the ``viewBox`` keeps its shape.
"""

from html import escape

__all__ = ["heatmap", "line_chart"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def line_chart(
    series: dict[str, list[float]],
    x_labels: list[str],
    *,
    title: str,
    y_label: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    dashed: frozenset[str] = frozenset(),
    reference: float | None = 0.5,
    bands: dict[str, tuple[float, float]] | None = None,
    marks: dict[str, str] | None = None,
    width: int = 720,
    height: int = 360,
) -> str:
    """One line per series over categorical x positions; NaN values leave a gap.

    ``bands`` maps a series name to a ``(low, high)`` range shaded in that series' colour across the
    plot (e.g. a noise floor: values inside it are indistinguishable from resampling noise).
    ``marks`` maps x labels to a note drawn as a vertical line there (e.g. ``{"0": "grown"}``).
    """
    left, right, top, bottom = 56, 210, 34, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    y0, y1 = y_range
    n = len(x_labels)

    def px(i: int) -> float:
        return left + (plot_w * i / max(n - 1, 1))

    def py(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, y0), y1) - y0) / (y1 - y0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for k in range(6):
        v = y0 + (y1 - y0) * k / 5
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.1f}</text>')
    if reference is not None:
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(reference):.1f}" y2="{py(reference):.1f}" '
            f'stroke="#555" stroke-dasharray="2,3"/>'
        )
    unknown = sorted(set(marks or {}) - set(x_labels))
    if unknown:
        raise ValueError(f"marks at {unknown} are not x labels of this chart")
    for label, note in (marks or {}).items():
        x = px(x_labels.index(label))
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#c00" stroke-dasharray="4,3"/>'
        )
        out.append(f'<text x="{x + 3:.1f}" y="{top + 12}" font-size="10" fill="#c00">{escape(note)}</text>')
    for i, label in enumerate(x_labels):
        out.append(
            f'<text x="{px(i):.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" font-size="12" transform="rotate(-90 14 {top + plot_h / 2:.0f})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for k, (name, values) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        if bands and name in bands:
            lo, hi = sorted(bands[name])
            out.append(
                f'<rect x="{left}" y="{py(hi):.1f}" width="{plot_w}" height="{max(py(lo) - py(hi), 1):.1f}" '
                f'fill="{color}" fill-opacity="0.15"/>'
            )
        dash = ' stroke-dasharray="6,4"' if name in dashed else ""
        segments, current = [], []
        for i, v in enumerate(values):
            if v != v:  # NaN: break the line
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{px(i):.1f},{py(v):.1f}")
        if current:
            segments.append(current)
        for seg in segments:
            out.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for point in seg:
                x, y = point.split(",")
                out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>')
        ly = top + 14 + 18 * k
        out.append(
            f'<line x1="{width - right + 12}" x2="{width - right + 36}" y1="{ly}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{width - right + 42}" y="{ly + 4}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def heatmap(
    values: list[list[float]],
    row_labels: list[str],
    col_labels: list[str],
    *,
    title: str,
    cell: int = 34,
    center: float = 0.0,
    value_range: tuple[float, float] | None = None,
    col_groups: list[tuple[str, int]] | None = None,
    axis_labels: tuple[str, str] = ("", ""),
    scale_label: str = "",
) -> str:
    """A signed heatmap (blue below ``center``, red above, white at it; NaN grey) with a labelled colour scale.

    Args:
        values: one list per row, one value per column.
        row_labels: the rows' names, drawn at the left.
        col_labels: the columns' names, drawn below (slanted when longer than a cell is wide).
        title: drawn at the top and given as the figure's accessible name.
        cell: side of a cell in px. Cells of at least 24 px show their value; every cell has it as a tooltip.
        center: the white value, e.g. 0.5 (chance) for AUROC.
        value_range: a fixed scale ``(low, high)``, so that figures compare by colour (e.g. ``(0, 1)`` for
            AUROC); values outside it take the end colour. Default: scaled to the largest |value - center|.
        col_groups: ``(label, number of columns)`` spans, in order, covering every column: the label is
            drawn above its columns and a gap separates the groups (e.g. evaluation subsets × sites).
        axis_labels: what the rows and the columns are, drawn beside the row labels and below the columns.
        scale_label: what the colour measures, drawn above the colour scale (e.g. ``"AUROC"``).

    Used for component scores, layer × head, or AUROC with ``center=0.5``.
    """
    if len(values) != len(row_labels) or any(len(r) != len(col_labels) for r in values):
        raise ValueError(
            f"values must be {len(row_labels)} rows of {len(col_labels)}; got rows of {[len(r) for r in values]}"
        )
    groups = col_groups or [("", len(col_labels))]
    if sum(n for _, n in groups) != len(col_labels) or any(n < 1 for _, n in groups):
        raise ValueError(
            f"col_groups must span the {len(col_labels)} columns, each at least one; got {[n for _, n in groups]}"
        )
    if value_range is None:
        scale = max((abs(v - center) for r in values for v in r if v == v), default=0.0) or 1.0
        low, high = center - scale, center + scale
    else:
        low, high = value_range
        if not low <= center <= high or low == high:
            raise ValueError(f"value_range {value_range} must be an interval around center {center}")
        scale = max(high - center, center - low)
    row_title, col_title = axis_labels
    gap = cell // 2 if col_groups else 0
    col_x, x = [], 0
    for k, (_, n) in enumerate(groups):
        col_x += [x + gap * k + cell * j for j in range(n)]
        x += cell * n
    # margins fit the labels (~6.5 px per character at font size 11); long column labels are slanted
    left = max(70, round(6.5 * max(map(len, row_labels), default=0)) + 12) + (18 if row_title else 0)
    top = 34 + (16 if col_groups else 0)
    slant = max(map(len, col_labels), default=0) * 6.5 > cell
    bottom = (round(4.6 * max(map(len, col_labels), default=0)) + 24 if slant else 30) + (18 if col_title else 0)
    grid_w, grid_h = (col_x[-1] + cell if col_x else 0), cell * len(row_labels)
    legend_x = left + grid_w + 24
    width, height = legend_x + 64, top + max(grid_h, 120) + bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if row_title:
        mid = top + grid_h / 2
        out.append(
            f'<text x="14" y="{mid:.0f}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 14 {mid:.0f})">{escape(row_title)}</text>'
        )
    start = 0
    for label, n in groups if col_groups else []:
        x0 = left + col_x[start]
        out.append(
            f'<text x="{x0 + cell * n / 2:.0f}" y="{top - 6}" font-size="10" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
        start += n
    for i, (label, row) in enumerate(zip(row_labels, values, strict=True)):
        y = top + cell * i
        out.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" font-size="11" text-anchor="end">{escape(label)}</text>'
        )
        for j, v in enumerate(row):
            x = left + col_x[j]
            tip = escape(f"{label} · {col_labels[j]}: {'n/a' if v != v else f'{v:.4g}'}")
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_fill(v, center, scale)}" '
                f'stroke="#fff"><title>{tip}</title></rect>'
            )
            if cell >= 24 and v == v:
                ink = "#fff" if abs(v - center) / scale > 0.6 else "#000"  # readable on a dark cell
                out.append(
                    f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" font-size="9" fill="{ink}" '
                    f'text-anchor="middle">{v:.2g}</text>'
                )
    for j, label in enumerate(col_labels):
        x, y = left + col_x[j] + cell / 2, top + grid_h + 14
        placed = f'text-anchor="end" transform="rotate(-45 {x:.0f} {y})"' if slant else 'text-anchor="middle"'
        out.append(f'<text x="{x:.0f}" y="{y}" font-size="11" {placed}>{escape(label)}</text>')
    if col_title:
        out.append(
            f'<text x="{left + grid_w / 2:.0f}" y="{height - 6}" font-size="11" text-anchor="middle">'
            f"{escape(col_title)}</text>"
        )
    out += _colour_scale(legend_x, top, low, high, center, scale, scale_label)
    out.append("</svg>")
    return "\n".join(out)


def _fill(v: float, center: float, scale: float) -> str:
    if v != v:
        return "#ddd"
    shade = round(255 * (1 - min(abs(v - center) / scale, 1.0)))
    return f"rgb(255,{shade},{shade})" if v > center else f"rgb({shade},{shade},255)"


def _colour_scale(x: int, top: int, low: float, high: float, center: float, scale: float, label: str) -> list[str]:
    """A vertical bar of the heatmap's colours, ``high`` at the top, with ``high``, ``center`` and ``low`` marked."""
    steps, bar_h = 24, 120
    step_h = bar_h / steps
    out = [f'<text x="{x}" y="{top - 6}" font-size="10">{escape(label)}</text>'] if label else []
    for k in range(steps):
        v = high - (high - low) * (k + 0.5) / steps
        out.append(
            f'<rect x="{x}" y="{top + k * step_h:.1f}" width="12" height="{step_h + 0.5:.1f}" '
            f'fill="{_fill(v, center, scale)}"/>'
        )
    out.append(f'<rect x="{x}" y="{top}" width="12" height="{bar_h}" fill="none" stroke="#999"/>')
    for v in (high, center, low):
        y = top + bar_h * (high - v) / (high - low)
        out.append(f'<line x1="{x + 12}" x2="{x + 16}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555"/>')
        out.append(f'<text x="{x + 18}" y="{y + 4:.1f}" font-size="10">{v:.3g}</text>')
    return out
