"""The inline SVG line chart: lines, gaps at NaN, noise bands and vertical marks."""

import re

import pytest

from elk_lens.report.svg import line_chart


def test_nan_breaks_the_line_into_segments():
    svg = line_chart({"a": [0.1, 0.2, float("nan"), 0.4, 0.5]}, list("vwxyz"), title="t", y_label="y")
    assert len(re.findall(r"<polyline", svg)) == 2
    assert len(re.findall(r"<circle", svg)) == 4


def test_bands_are_shaded_and_marks_are_drawn_where_their_label_is():
    svg = line_chart(
        {"a": [0.2, 0.8, 0.9]},
        ["small", "0", "1"],
        title="t",
        y_label="y",
        bands={"a": (0.9, 1.0)},
        marks={"0": "grown here"},
    )
    assert 'fill-opacity="0.15"' in svg
    label_x = re.search(r'<text x="([\d.]+)" y="\d+" font-size="10" text-anchor="middle">0</text>', svg).group(1)
    assert re.search(rf'<line x1="{label_x}" x2="{label_x}"[^>]*stroke="#c00"', svg)
    assert ">grown here</text>" in svg


def test_a_mark_off_the_axis_is_an_error():
    with pytest.raises(ValueError, match=r"marks at \['7'\] are not x labels"):
        line_chart({"a": [0.1, 0.2]}, ["0", "1"], title="t", y_label="y", marks={"7": "?"})


def test_heatmap_colours_by_sign_and_scale():
    from elk_lens.report.svg import heatmap

    svg = heatmap([[1.0, -0.5], [0.0, float("nan")]], ["L0", "L1"], ["H0", "H1"], title="scores")
    assert 'fill="rgb(255,0,0)"' in svg  # the largest |value| is full red
    assert 'fill="rgb(128,128,255)"' in svg  # -0.5: half-way blue (255 * (1 - 0.5) rounds to 128)
    assert 'fill="rgb(255,255,255)"' in svg and 'fill="#ddd"' in svg  # zero white, NaN grey
    with pytest.raises(ValueError, match="values must be 2 rows of 2"):
        heatmap([[1.0]], ["L0", "L1"], ["H0", "H1"], title="x")


def test_labels_are_text_in_elements_and_attributes():
    from elk_lens.report.svg import heatmap

    hostile = ("</svg><script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>")
    svgs = (
        line_chart(
            {hostile[0]: [0.1, 0.2]},
            list(hostile),
            title=hostile[1],
            y_label=hostile[0],
            marks={hostile[0]: hostile[1]},
        ),
        heatmap([[0.1, 0.2]], [hostile[0]], list(hostile), title=hostile[1]),
    )
    for svg in svgs:
        assert "<script" not in svg and "<img" not in svg and svg.count("</svg>") == 1
        assert 'aria-label="&quot;&#x27;&gt;&lt;img src=x onerror=alert(1)&gt;"' in svg
