"""`elk-lens run`: the default analysis end to end on the embedded model, resume, and bad specs."""

import json
import re
from pathlib import Path

import pytest
from browser import assert_renders, needs_browser
from tiny_specs import QUIRKY_SPEC

from elk_lens.analyses import ANALYSES
from elk_lens.cli import main
from elk_lens.report.html import render_page
from elk_lens.report.pages.quirky_elk import render
from elk_lens.report.rundir import RunDir
from elk_lens.runner import load_spec, run_analysis


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = root / "spec.toml"
    spec.write_text(QUIRKY_SPEC)
    return spec, run_analysis(spec, runs_root=root)


def test_run_directory_is_self_describing(finished_run):
    _, run = finished_run
    for name in ("config.toml", "manifest.json", "metrics.json", "auroc_by_layer.csv", "report.html"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["analysis"] == "quirky_elk"
    assert set(manifest["fingerprints"]) == {"model", "train_data", "test_data"}
    assert manifest["environment"]["packages"]["transformer-lens"].startswith("4.3")
    assert manifest["environment"]["device"] == "cpu"
    assert manifest["seeds"] == {"data": 0} and "study" in manifest["stage_seconds"]
    metrics = json.loads((run / "metrics.json").read_text())
    scored = [row["scored"] for row in metrics["auroc"]]
    assert scored[:5] == [f"blocks.{i}.hook_resid_pre" for i in range(4)] + ["blocks.3.hook_resid_post"]
    assert "model output (logit True - False)" in scored


def test_report_is_self_contained_and_has_its_sections(finished_run):
    html = (finished_run[1] / "report.html").read_text()
    for title in ("Summary", "AUROC vs layer", "All scores", "Evaluation subsets", "Model", "Reproduce"):
        assert f"<h2>{title}</h2>" in html
    assert "<svg" in html
    assert not re.search(r"""(src|href)=["']https?://""", html)  # nothing fetched from the network


def test_every_site_is_set_beside_its_random_floor_on_the_disagreements_and_the_control(finished_run):
    run = finished_run[1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics)[-2:] == ["random_floor", "split_above_floor"]  # after every earlier key, unchanged
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(1, 4)] + ["blocks.3.hook_resid_post"]
    rows = metrics["random_floor"]
    assert [(r["site"], r["subset"]) for r in rows] == [(s, x) for s in sites for x in ("BH_disagree", "BH_control")]
    probe = {r["scored"]: r for r in metrics["auroc"]}
    rigor = {r["site"]: r for r in metrics["rigor"]["random_floor"]}  # the disagreements' floor, computed there
    for r in rows:
        assert r["probe"] == probe[r["site"]][r["subset"]], r
        assert r["margin over q99"] == pytest.approx(r["probe"] - r["random q99"], abs=1e-4), r
        assert 0 <= r["random median"] <= r["random q95"] <= r["random q99"] <= 1, r
        if r["subset"] == "BH_disagree":
            assert (r["random median"], r["random q99"]) == (rigor[r["site"]]["q0.5"], rigor[r["site"]]["q0.99"])
    assert set(metrics["split_above_floor"]) <= set(metrics["split_layers"])
    assert (run / "random_floor.csv").read_text().startswith("site,subset,probe,random median,random q95")


def test_the_report_calls_the_frozen_prefix_split_a_positive_control(finished_run):
    spec, run = finished_run
    html = (run / "report.html").read_text()
    summary = html[html.index("<h2>Summary</h2>") : html.index("<h2>AUROC vs layer</h2>")]
    assert "A positive control, not a finding." in summary and "blocks.3.hook_resid_pre" in summary
    assert "margin over q99" in summary and "BH_control" in summary  # the floor, both subsets, in the headline
    assert "zoo:quirky-arith-fullft" in summary  # the realistic case, with its card's numbers
    cfg, text = load_spec(spec)
    view = ANALYSES["quirky_elk"].run(cfg, RunDir(run, text)).view
    page = render(view | {"positive_control": None})  # a model whose card names no built-in split
    assert "positive control" not in render_page(page.title, page.intro, page.sections)


def test_a_hostile_model_name_reaches_the_page_escaped(finished_run):
    spec, run = finished_run
    cfg, text = load_spec(spec)
    view = ANALYSES["quirky_elk"].run(cfg, RunDir(run, text)).view  # resumed: every stage is on disk
    json.dumps(view)  # plain data, no markup or model objects
    script = "<script>x</script>"
    answer = {
        "dataset": "cities",
        "prompt": "zero_shot",
        "auroc": 0.6,
        "ci_low": 0.5,
        "ci_high": 0.7,
        "prompt_text": script,
    }
    glance = {
        "spec": script,
        "dataset": "cities",
        "rows": 40,
        "sites": ["blocks.0.hook_resid_post"],
        "by_layer": [0.9],
        "floor": [0.6],
        "answers": [answer],
        "gap": [
            {"probe_site": "blocks.0.hook_resid_post", "probe_auroc": 0.9, "probe_ci": [0.8, 0.95], "knows_more": True}
        ],
    }
    card = {"summary": script, "recipe": {"note": script}}
    page = render(view | {"spec": script, "model_card": card, "real_lm": glance, "config_path": script})
    html = render_page(page.title, page.intro, page.sections)
    assert "<script" not in html and html.count("&lt;script&gt;") >= 8
    assert [s.title for s in page.sections][-4:] == [
        f"A real model: {script}",
        "Evaluation subsets",
        "Model",
        "Reproduce",
    ]


@needs_browser
def test_the_demo_report_opens_in_a_browser_without_console_output(finished_run):
    assert_renders(finished_run[1] / "report.html", ("Summary", "AUROC vs layer", "Causal checks"))


def test_a_second_run_resumes_from_finished_stages(finished_run):
    spec, run = finished_run
    before = (run / "metrics.json").read_text()
    run_analysis(spec, runs_root=run.parent)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == ["study", "reporter_scores", "causal", "rigor", "positions", "control_floor"]
    assert manifest["stage_seconds"] == {}
    assert (run / "metrics.json").read_text() == before


def test_cli_prints_where_the_report_is(finished_run, capsys):
    spec, run = finished_run
    assert main(["run", str(spec), "--runs", str(run.parent)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"].endswith("report.html")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            'name = "x"\nanalysis = "nope"\n',
            r"unknown analysis 'nope'; valid: \['circuits', 'drift', 'growth', 'quirky_elk', 'truth_generalization'\]",
        ),
        ('analysis = "quirky_elk"\n', "lacks the top-level key 'name'"),
        ('name = "x"\nanalysis = "quirky_elk"\n[data]\ntest_rows = "many"\n', "'data.test_rows' must be of type int"),
        ('name = "x"\nanalysis = "quirky_elk"\n[data]\ntest_rows = 0\n', "'data.test_rows' must be >= 1"),
        ("name = = 1", "is not valid TOML"),
    ],
)
def test_bad_specs_fail_before_any_model_is_loaded(tmp_path, text, error):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    with pytest.raises(ValueError, match=error):
        run_analysis(spec, runs_root=tmp_path)


def test_a_run_directory_is_not_reused_for_another_config(tmp_path, finished_run):
    spec, run = finished_run
    other = tmp_path / "other.toml"
    other.write_text(QUIRKY_SPEC.replace("test_rows = 400", "test_rows = 401"))
    with pytest.raises(ValueError, match="different config"):
        run_analysis(other, runs_root=run.parent)


def test_a_changed_comment_resumes_the_same_run(tmp_path, finished_run):
    """Comments are not settings: a spec whose comments were edited resumes its run, every stage from disk."""
    spec, run = finished_run
    edited = tmp_path / "spec.toml"
    commented = QUIRKY_SPEC.replace("n_random = 2", "n_random = 2  # edited")
    edited.write_text("# a comment added after the run\n" + commented)
    assert run_analysis(edited, runs_root=run.parent) == run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == ["study", "reporter_scores", "causal", "rigor", "positions", "control_floor"]
    assert (run / "config.toml").read_text() == edited.read_text()


def test_unknown_config_keys_are_named_with_a_suggestion_and_the_valid_ones(tmp_path):
    spec = tmp_path / "typo.toml"
    spec.write_text('name = "x"\nanalysis = "drift"\n[train]\nstep = 10\n')
    with pytest.raises(ValueError, match=r"unknown config key\(s\) 'train.step' \(did you mean 'train.steps'\?\)"):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_an_unwritable_run_directory_is_a_clear_error(tmp_path):
    spec = tmp_path / "ok.toml"
    spec.write_text('name = "x"\nanalysis = "drift"\n')
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="cannot write the run directory under .*choose a writable place with --runs"):
        run_analysis(spec, runs_root=blocker)


@pytest.mark.parametrize(
    "analysis, section, key",
    [("quirky_elk", "model", "spec"), ("drift", "model", "base"), ("growth", "model", "base")],
)
def test_a_model_that_does_not_exist_is_refused_before_any_work(tmp_path, analysis, section, key):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'name = "x"\nanalysis = "{analysis}"\n[{section}]\n{key} = "zoo:nope"\n')
    with pytest.raises(ValueError, match=r"unknown zoo model 'zoo:nope'; valid: \['zoo:gemma3-270m', 'zoo:minilm'"):
        run_analysis(spec, runs_root=tmp_path / "runs")
    spec.write_text(f'name = "x"\nanalysis = "{analysis}"\n[{section}]\n{key} = "/no/such/model"\n')
    with pytest.raises(ValueError, match="model directory '/no/such/model' does not exist"):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "a/b", ".", "..", "", ".hidden", "a b", "x\\y", "é"])
def test_run_names_are_plain_names_inside_the_runs_directory(tmp_path, name):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "ok"\nanalysis = "drift"\n')
    with pytest.raises(ValueError, match=r"run_name \(--name\) is .*, not a plain name: letters, digits"):
        run_analysis(spec, runs_root=tmp_path / "runs", run_name=name)
    spec.write_text(f'name = {json.dumps(name)}\nanalysis = "drift"\n')
    with pytest.raises(ValueError, match=r"config key 'name' is .*, not a plain name: letters, digits"):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]  # nothing written, here or elsewhere


def test_cli_errors_are_one_message_not_a_traceback(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "x"\nanalysis = "drift"\n[train]\nlr = nan\n')
    with pytest.raises(SystemExit) as info:
        main(["run", str(spec), "--runs", str(tmp_path / "runs")])
    assert str(info.value) == f"elk-lens run: {spec}: config key 'train.lr' must be finite; got nan"
    with pytest.raises(SystemExit, match=r"elk-lens run: analysis spec .* is a directory"):
        main(["run", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"elk-lens data export: out '.*bad.toml' is a file"):
        main(["data", "export", str(spec), "--sets", "cities"])


def test_every_shipped_spec_passes_its_analysis_check():
    from elk_lens.runner import load_spec

    for spec in sorted((Path(__file__).resolve().parents[2] / "analyses").glob("*.toml")):
        try:
            load_spec(spec)  # parses and checks
        except ValueError as e:  # a spec that reads a growth run or a fine-tune's trajectory needs it first
            text = spec.read_text()
            growth = "growth_run" in text and "not a finished growth run" in str(e)
            trajectory = re.search(r"'(model|circuits)\.trajectory'", str(e))
            assert growth or ("trajectory =" in text and trajectory), spec
