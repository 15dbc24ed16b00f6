"""The circuits analysis end to end on a tiny scenario: a faithful circuit at every checkpoint, a noise
floor, drift series, offline figures, resume, and bad specs refused before any work."""

import json
import re
from html import escape
from types import SimpleNamespace

import pytest
from tiny_specs import CIRCUITS_SPEC as SPEC

from elk_lens.analyses import circuits
from elk_lens.report.html import render_page
from elk_lens.report.pages import circuits as circuits_page
from elk_lens.report.rundir import RunDir
from elk_lens.runner import load_spec, run_analysis


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuits_runs")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    return spec, run_analysis(spec, runs_root=root / "runs")


def test_a_faithful_circuit_at_every_checkpoint_with_its_floor_and_drift(finished):
    _, run = finished
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == [0, 1] and len(m["at"]) == 2
    for at in m["at"]:
        assert at["curve"][at["size"]] >= 0.8 and at["curve"][0] == 0.0  # twin ablation: F(empty) = 0
        assert at["circuit"] and set(at["circuit"]) <= set(at["exact"])
    assert set(m["floor"]) >= {"jaccard", "weighted_jaccard", "edit_distance"}
    assert m["drift"]["jaccard_first"][0] == 1.0 and len(m["drift"]["ewma_change"]) == 2
    html = (run / "report.html").read_text()
    for title in (
        "The smallest faithful circuit at every checkpoint",
        "Circuit drift",
        "Which components write the truth score",
        "Attention of the top heads",
    ):
        assert f"<h2>{title}</h2>" in html
    assert html.count("CircuitsVis.render(") == 2  # first and last checkpoint
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_second_run_resumes(finished):
    spec, run = finished
    before = (run / "metrics.json").read_text()
    run_analysis(spec, runs_root=run.parent)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == ["fine_tune", "circuits", "attention"]
    assert (run / "metrics.json").read_text() == before


def test_the_page_shows_hostile_names_as_text(finished):
    """The run's name and a given trajectory's path reach the page; as text, never as markup."""
    spec, run = finished
    cfg, text = load_spec(spec)
    view = circuits.run(cfg, RunDir(run, text)).view  # every stage resumed from disk
    hostile = "<script>x</script>"
    page = circuits_page.render({**view, "name": hostile, "trained_from": hostile})
    html = render_page(page.title, page.intro, page.sections)
    assert hostile not in html and html.count(escape(hostile)) == 3  # <title>, <h1>, the setup


@pytest.mark.parametrize(
    "extra, message",
    [
        ('character = "Carol"', "'circuits.character' must be one of ('Alice', 'Bob')"),
        ('ablation = "zero"', "'circuits.ablation' must be one of ('twin', 'mean')"),
        ("target = 1.5", "'circuits.target' must lie in (0, 1]"),
        ('trajectory = "/nonexistent"', "holds no trajectory.json"),
    ],
)
def test_bad_specs_fail_before_any_work(tmp_path, extra, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'name = "bad"\nanalysis = "circuits"\n[circuits]\n{extra}\n')
    with pytest.raises(ValueError, match=re.escape(message)):
        run_analysis(spec, runs_root=tmp_path / "runs")


def test_circuits_follow_a_growth_run_through_its_map(tmp_path):
    """A block appended after the read site changes nothing below it: at the growth step the circuit,
    in the grown model's names, is the small model's, with the same shares of the gap."""
    from elk_lens.growth import insert_blocks
    from elk_lens.models import load_model, save_model
    from elk_lens.quirky.data import quirky_arithmetic
    from elk_lens.train import FineTuneConfig, fine_tune

    grown, growth = insert_blocks(load_model("zoo:quirky-arith-base"), [4])
    save_model(grown, tmp_path / "g" / "grown")
    growth.save(tmp_path / "g" / "growth_map")
    train = quirky_arithmetic(100, split="train")
    fine_tune(
        grown,
        train,
        train.column("label"),
        tmp_path / "g" / "trajectory",
        base_spec=str(tmp_path / "g" / "grown"),
        config=FineTuneConfig(steps=1, batch_size=8),
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "cg"\nanalysis = "circuits"\n[drift]\nprobe_rows = 800\n[circuits]\npairs = 8\n'
        f'ig_steps = 2\ngrowth_run = "{tmp_path / "g"}"\n'
    )
    m = json.loads((run_analysis(spec, runs_root=tmp_path / "runs") / "metrics.json").read_text())
    assert m["steps"] == [0, 0, 1] and m["grown_at"] == [1]
    assert m["drift"]["jaccard_prev"][1] == 1.0
    assert m["drift"]["weighted_jaccard_prev"][1] == pytest.approx(1.0, abs=1e-6)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'name = "b"\nanalysis = "circuits"\n[circuits]\ngrowth_run = "{tmp_path}"\n')
    with pytest.raises(ValueError, match="is not a finished growth run"):
        run_analysis(bad, runs_root=tmp_path / "runs")


def test_chosen_steps_are_scored_and_unknown_ones_refused(finished, tmp_path):
    """``circuits.steps`` scores a few checkpoints: the floor and both attention patterns at what is scored."""
    _, run = finished
    spec = tmp_path / "spec.toml"
    body = (
        'analysis = "circuits"\n[drift]\nprobe_rows = 800\n[circuits]\npairs = 8\nig_steps = 2\n'
        f'trajectory = "{run / "trajectory"}"\n'
    )
    spec.write_text(f'name = "one"\n{body}steps = [1]\n')
    m = json.loads((run_analysis(spec, runs_root=tmp_path / "runs") / "metrics.json").read_text())
    assert m["steps"] == [1] and len(m["at"]) == 1 and m["grown_at"] == []
    assert m["floor"]["halves"] and m["attention"]["heads"]
    spec.write_text(f'name = "bad"\n{body}steps = [0, 7]\n')
    with pytest.raises(
        ValueError,
        match=re.escape(
            "'circuits.steps' = [0, 7] must name distinct steps of the trajectory walked; "
            "[7] is not one of its steps [0, 1]"
        ),
    ):
        run_analysis(spec, runs_root=tmp_path / "runs")


def test_a_task_without_twins_is_refused(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(
        'name = "bad"\nanalysis = "circuits"\n[data]\ntask = "nl_arithmetic"\n[train]\nanswers = [" True", " False"]\n'
    )
    with pytest.raises(ValueError, match=re.escape("config key 'data.task' = 'nl_arithmetic' has no contrast twins")):
        run_analysis(spec, runs_root=tmp_path / "runs")


def test_growth_marks_the_next_checkpoint_scored():
    traj = SimpleNamespace(checkpoints=[SimpleNamespace(growth=g) for g in (None, "grown", None, None)])
    assert circuits._grown_at(traj, [0, 1, 2, 3]) == [1]
    assert circuits._grown_at(traj, [0, 2, 3]) == [1]  # the grown checkpoint skipped: the next one marks it
    assert circuits._grown_at(traj, [2, 3]) == [0]
    assert circuits._grown_at(traj, [0]) == []
