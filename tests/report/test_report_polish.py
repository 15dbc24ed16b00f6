"""The report a researcher reads: heatmaps on a fixed, labelled scale; booleans as marks; no sideways
scrolling; and ``elk-lens run`` saying what it is doing when stderr is a log file, not a terminal."""

import logging
import re
from types import SimpleNamespace

import pytest
from browser import load, needs_browser

from elk_lens._progress import LineProgress, progress_bar
from elk_lens.analyses import ANALYSES
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.spec import AnalysisSpec
from elk_lens.cli import main
from elk_lens.report.html import Page, Section, folded, render_page, table_html
from elk_lens.report.pages import RENDERERS
from elk_lens.report.svg import heatmap

SCRIPT = "<script>alert(1)</script>"


def _cells(svg: str) -> dict[str, str]:
    """Each cell's fill, by its tooltip (row · column: value)."""
    found = re.findall(r'<rect [^>]*fill="([^"]+)" stroke="#fff"><title>([^<]*)</title>', svg)
    return {tip: fill for fill, tip in found}


def test_a_fixed_scale_colours_a_value_alike_in_every_figure():
    fixed = dict(center=0.5, value_range=(0.0, 1.0))
    alone = _cells(heatmap([[0.75]], ["r"], ["c"], title="t", **fixed))
    beside = _cells(heatmap([[0.75, 0.55]], ["r"], ["c", "d"], title="t", **fixed))
    assert alone["r · c: 0.75"] == beside["r · c: 0.75"] == "rgb(255,128,128)"  # half-way to 1.0, whatever else
    relative = _cells(heatmap([[0.75, 0.55]], ["r"], ["c", "d"], title="t", center=0.5))
    assert relative["r · c: 0.75"] == "rgb(255,0,0)"  # the default scale: the largest deviation is full red
    clipped = _cells(heatmap([[1.5, float("nan")]], ["r"], ["c", "d"], title="t", **fixed))
    assert clipped == {"r · c: 1.5": "rgb(255,0,0)", "r · d: n/a": "#ddd"}
    with pytest.raises(ValueError, match=r"value_range \(0.6, 1.0\) must be an interval around center 0.5"):
        heatmap([[0.7]], ["r"], ["c"], title="t", center=0.5, value_range=(0.6, 1.0))


def test_the_scale_groups_and_axes_are_labelled():
    svg = heatmap(
        [[0.1, 0.9, 0.5]],
        ["A · lda"],
        ["0", "1", "0"],
        title="t",
        center=0.5,
        value_range=(0.0, 1.0),
        col_groups=[("AE", 2), ("BH", 1)],
        axis_labels=("trained on", "evaluated on"),
        scale_label="AUROC",
        cell=16,
    )
    assert len(_cells(svg)) == 3
    for text in ("AUROC", "AE", "BH", "trained on", "evaluated on", "1", "0.5", "0"):
        assert re.search(rf">{re.escape(text)}</text>", svg), text
    assert not re.search(r'font-size="9"[^>]*>0\.1</text>', svg)  # 16 px cells: the value is in the tooltip only
    xs = [float(x) for x in re.findall(r'<rect x="([\d.]+)" y="\d+" width="16"', svg)]
    assert xs[1] - xs[0] == 16 and xs[2] - xs[1] == 16 + 8  # a gap between the groups
    with pytest.raises(ValueError, match=r"col_groups must span the 3 columns"):
        heatmap([[0.1, 0.9, 0.5]], ["r"], ["a", "b", "c"], title="t", col_groups=[("AE", 2)])


def test_every_label_of_a_heatmap_is_escaped():
    svg = heatmap(
        [[0.2]],
        [SCRIPT],
        [SCRIPT],
        title=SCRIPT,
        center=0.5,
        value_range=(0.0, 1.0),
        col_groups=[(SCRIPT, 1)],
        axis_labels=(SCRIPT, SCRIPT),
        scale_label=SCRIPT,
    )
    assert "<script" not in svg and svg.count("&lt;script&gt;") >= 7 and svg.count("</svg>") == 1


def test_booleans_are_marks_with_words_not_true_and_false():
    html = table_html([{"target": "PGR ≥ 0.75", "met": True, "n": 3}, {"target": "anomaly", "met": False, "n": 0}])
    assert "True" not in html and "False" not in html
    assert "<td class='mark good'>✓ yes</td>" in html and "<td class='mark bad'>✗ no</td>" in html
    assert "<td class='num'>3</td>" in html  # an int is still a number


def test_wide_tables_scroll_in_their_own_box_and_figures_shrink():
    html = table_html([{"a": 1.0}])
    assert html.startswith("<div class='scroll'><table>") and html.endswith("</table></div>")
    page = render_page("t", "", [Section("s", html)])
    assert re.search(r"\.scroll \{ overflow-x: auto;", page) and "svg { max-width: 100%; height: auto; }" in page


def test_a_folded_table_opens_under_an_escaped_summary():
    html = folded(SCRIPT, table_html([{"a": 1}]))
    assert html.startswith("<details><summary>&lt;script&gt;") and "<table>" in html and "<script" not in html


@needs_browser
def test_the_page_never_scrolls_sideways(tmp_path):
    wide = table_html([{f"column {i}": "a long cell value" for i in range(40)}])
    figure = heatmap(
        [[0.5] * 80], ["row"], [f"c{i}" for i in range(80)], title="wide", value_range=(0.0, 1.0), center=0.5
    )
    probe = (
        "<script>window.addEventListener('load', () => { const d = document.documentElement; "
        "document.title = d.scrollWidth + ' ' + d.clientWidth + ' ' + "
        "document.querySelector('svg').getBoundingClientRect().width; });</script>"
    )
    page = tmp_path / "wide.html"
    page.write_text(render_page("wide", "", [Section("a", wide + figure + probe)]))
    dom, _ = load(page)
    scroll_width, client_width, svg_width = map(float, re.search(r"<title>([\d. ]+)</title>", dom).group(1).split())
    assert scroll_width <= client_width and svg_width <= client_width


def test_line_progress_says_every_tenth_and_the_end(caplog):
    with caplog.at_level(logging.INFO, logger="elk_lens.progress"):
        bar = LineProgress(100, "fine-tune")
        for _ in range(100):
            bar.update(1)
        bar.set_postfix(loss="0.123")
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [f"fine-tune: {p}% {p}/100 it" for p in range(10, 100, 10)] + [
        "fine-tune: done 100/100 it"
    ]
    assert lines[-1].endswith(", loss=0.123")


def test_progress_bar_is_lines_only_without_a_terminal_and_by_default():
    assert isinstance(progress_bar(5, "x"), LineProgress)  # pytest's stderr is no terminal
    for forced in (True, False):  # an explicit choice keeps tqdm (False: a disabled bar)
        bar = progress_bar(5, "x", progress=forced)
        assert not isinstance(bar, LineProgress) and bar.disable is not forced
        bar.close()


def _fake_run(spec: AnalysisSpec, run) -> AnalysisResult:
    run.stage("study", lambda: {"x": 1})
    bar = progress_bar(20, "capture", unit="stmt")
    for _ in range(20):
        bar.update(1)
    bar.close()
    return AnalysisResult(metrics={"x": 1})


def test_run_prints_each_stage_with_its_time_on_a_non_terminal_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(ANALYSES, "fake", SimpleNamespace(Spec=AnalysisSpec, check=lambda spec: None, run=_fake_run))
    monkeypatch.setitem(RENDERERS, "fake", lambda view: Page("t", "", []))
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "fake-run"\nanalysis = "fake"\n')
    for _ in range(2):  # the second run resumes the stage
        assert main(["run", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("elk-lens: ")]
    assert lines[0] == f"elk-lens: run fake-run (fake) in {tmp_path / 'runs' / 'fake-run'} on cpu"
    assert lines[1] == "elk-lens: stage study: started"
    assert re.fullmatch(r"elk-lens: stage study: done in \d+\.\d s", lines[2])
    assert re.fullmatch(r"elk-lens: capture: done 20/20 stmt, \d+\.\d s", lines[12])  # after 9 tenths
    assert re.fullmatch(r"elk-lens: finished in \d+\.\d s", lines[14])
    assert "elk-lens: stage study: resumed from stages/study.json" in lines
    logger = logging.getLogger("elk_lens.progress")
    assert logger.handlers == [] and logger.level == logging.NOTSET  # nothing left behind after the command
