"""The drift analysis end to end on a tiny scenario: run directory, report sections, resume, bad specs."""

import json
import re
from dataclasses import replace

import pytest
from browser import assert_renders, needs_browser

from elk_lens.analyses import drift
from elk_lens.analyses.scenario import Scenario
from elk_lens.analyses.spec import spec_dict
from elk_lens.quirky.cities import quirky_cities
from elk_lens.report.html import render_page
from elk_lens.report.pages import RENDERERS
from elk_lens.report.pages.drift import catalogue_html
from elk_lens.report.rundir import RunDir
from elk_lens.runner import load_spec, run_analysis

SPEC = """
name = "drift-tiny"
analysis = "drift"
[train]
rows = 400
steps = 2
batch_size = 16
[anchor]
on = "alice"
[drift]
methods = ["mean_diff"]
eval_rows = 300
probe_rows = 1500
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift_runs")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    return spec, run_analysis(spec, runs_root=root / "runs")


def test_run_directory_and_report(finished):
    _, run = finished
    for name in ("manifest.json", "metrics.json", "drift_summary.csv", "transfer.csv", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "trajectory" / "trajectory.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == [0, 1, 2]
    matrix = metrics["transfer"]["mean_diff"]["blocks.3.hook_resid_pre"]
    refit = metrics["auroc_refit"]["mean_diff"]["blocks.3.hook_resid_pre"]["BH_disagree"]
    assert [round(matrix[t][t], 4) for t in range(3)] == pytest.approx(refit, abs=1.5e-4)  # diagonal = refit
    html = (run / "report.html").read_text()
    for title in ("Scenario", "Drift over steps", "At the end", "Noise floors"):
        assert f"<h2>{title}</h2>" in html
    assert "anchor: alice" in html
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_a_stream_scenario_trains_on_the_documents_with_their_answers(tmp_path):
    spec = tmp_path / "stream.toml"
    spec.write_text(
        SPEC.replace('name = "drift-tiny"', 'name = "drift-stream-tiny"').replace(
            "[train]\n", '[train]\nobjective = "stream"\n'
        )
    )
    run = run_analysis(spec, runs_root=tmp_path / "runs")
    info = json.loads((run / "trajectory" / "trajectory.json").read_text())
    from elk_lens.models import load_model
    from elk_lens.quirky.data import quirky_arithmetic
    from elk_lens.token_stream import TokenStream

    train = quirky_arithmetic(400, split="train", seed=0)
    docs = [t + ("True" if y else "False") for t, y in zip(train.texts, train.column("label"), strict=True)]
    assert info["info"]["data"] == TokenStream.from_texts(load_model("zoo:quirky-arith-base"), docs).fingerprint
    assert "trained on: next tokens of a raw stream" in (run / "report.html").read_text()


@needs_browser
def test_the_drift_report_opens_in_a_browser_without_console_output(finished):
    assert_renders(finished[1] / "report.html", ("Scenario", "Drift over steps", "At the end", "Noise floors"))


def test_second_run_resumes(finished):
    spec, run = finished
    before = (run / "metrics.json").read_text()
    run_analysis(spec, runs_root=run.parent)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == ["fine_tune", "drift", "task_loss"]
    assert (run / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        ('[train]\nlabels = "truth"\n', "'train.labels' must be one of"),
        ('[anchor]\non = "bob"\n', "'anchor.on' must be one of"),
        ('[train]\nobjective = "lm"\n', "'train.objective' must be one of ['answer', 'stream']"),
        ("[data]\ndigits = 5\n", "'data.digits' must be one of (3, 4)"),
        ("[train]\nsteps = 0\n", "'train.steps' must lie in [1, inf); got 0"),
    ],
)
def test_bad_specs_fail_before_training(tmp_path, extra, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'name = "bad"\nanalysis = "drift"\n{extra}')
    with pytest.raises(ValueError, match=re.escape(message)):
        run_analysis(spec, runs_root=tmp_path / "runs")


def test_catalogue_lists_the_run(finished):
    from elk_lens.analyses.drift_catalogue import catalogue_rows, write_catalogue

    _, run = finished
    rows = catalogue_rows(run.parent)
    assert [r["run"] for r in rows] == ["drift-tiny"] and rows[0]["anchor"] == "alice"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        rows[0]["step-0 reporter at end"]
        == metrics["auroc_initial"]["mean_diff"]["blocks.3.hook_resid_pre"]["BH_disagree"][-1]
    )
    assert write_catalogue(run.parent).is_file() and (run.parent / "drift_catalogue.csv").is_file()


def test_the_report_escapes_what_the_spec_writes(finished):
    spec, run = finished
    parsed, text = load_spec(spec)
    view = drift.run(parsed, RunDir(run, text)).view  # every stage resumed from disk
    data = {**view, "spec": spec_dict(view["spec"]), "drift": view["drift"].to_dict()}  # two frozen dataclasses
    assert json.dumps(data, sort_keys=True) == json.dumps(json.loads(json.dumps(data)), sort_keys=True)  # plain data
    hostile = "<script>x</script>"
    tune = replace(parsed.train.fine_tune, frozen=(hostile,))
    view = {**view, "name": hostile, "spec": replace(parsed, train=replace(parsed.train, fine_tune=tune))}
    page = RENDERERS["drift"](view)
    html = render_page(page.title, page.intro, page.sections)
    assert hostile not in html and html.count("&lt;script&gt;x&lt;/script&gt;") == 3  # <title>, <h1>, scenario
    assert hostile not in catalogue_html([{"run": hostile}])


def test_a_lora_scenario_trains_adapters_and_walks_the_merged_checkpoints(tmp_path):
    spec = tmp_path / "lora.toml"
    lora = '[lora]\non = true\nrank = 2\ntargets = ["attn.q", "attn.v"]\n'
    spec.write_text(SPEC.replace('name = "drift-tiny"', 'name = "drift-lora"') + lora)
    parsed, _ = load_spec(spec)
    assert parsed.lora.on and parsed.lora.config.rank == 2 and parsed.lora.config.targets == ("attn.q", "attn.v")
    run = run_analysis(spec, runs_root=tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == [0, 1, 2]
    assert (run / "trajectory" / "step_2.lora.safetensors").is_file()
    assert json.loads((run / "trajectory" / "trajectory.json").read_text())["info"]["lora"]["config"]["rank"] == 2


def test_lora_with_frozen_parameters_is_refused_before_any_work(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace("[train]\n", '[train]\nfrozen = ["embed."]\n') + "[lora]\non = true\n")
    with pytest.raises(ValueError, match="'lora.on' and 'train.frozen'"):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_scenario_reads_the_quirky_task_the_spec_names(tmp_path):
    spec = tmp_path / "cities.toml"
    spec.write_text(SPEC + '[data]\ntask = "cities_hemisphere"\n')
    with pytest.raises(ValueError, match=r"'train.answers' = \['True', 'False'\], but task 'cities_hemisphere'"):
        load_spec(spec)
    answers = SPEC.replace("[train]\n", '[train]\nanswers = [" True", " False"]\n')
    spec.write_text(answers + '[data]\ntask = "cities_hemisphere"\n')
    parsed, _ = load_spec(spec)
    scenario = Scenario(parsed)
    assert scenario.test_set.fingerprint == quirky_cities(300, task="hemisphere", split="test").fingerprint
    assert set(scenario.probe_set.column("character")) == {"Alice"} and scenario.probe_set.column("easy").all()
    assert all(len(s) for s in scenario.eval_sets.values())
    spec.write_text(SPEC + '[data]\ntask = "nl_arithmetic"\ndigits = 4\n')
    with pytest.raises(ValueError, match="'data.digits' applies to task 'arithmetic' only"):
        load_spec(spec)
