"""Concept drift through fine-tuning: fine-tune a zoo model on a quirky scenario
(``elk_lens.analyses.scenario``), then walk the trajectory and measure how the truth concept and the
reporters move (``elk_lens.drift_study``).
"""

from dataclasses import dataclass

from elk_lens.analyses.model_checks import model_layout
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.scenario import LABELS, OBJECTIVES, Scenario, ScenarioSpec, drift_sites
from elk_lens.analyses.spec import spec_dict
from elk_lens.drift_result import DriftResult
from elk_lens.models import load_model
from elk_lens.report.rundir import RunDir
from elk_lens.sites import Site
from elk_lens.trajectory import Trajectory

__all__ = ["Spec", "check", "fine_tune_here", "run"]


@dataclass(frozen=True, kw_only=True)
class Spec(ScenarioSpec):
    """A drift spec: the scenario's tables (``analyses/drift_*.toml``)."""


def check(spec: Spec) -> None:
    Scenario(spec).check(model_layout(spec.model.base))


def fine_tune_here(scenario: Scenario, run: RunDir) -> dict:
    """Fine-tune ``model.base`` on the scenario into the run's ``trajectory/`` (the circuits analysis
    does the same when it walks no given trajectory)."""
    base = scenario.spec.model.base
    model = load_model(base)
    reporter = scenario.anchor_reporter(model) if scenario.spec.anchor.on != "none" else None
    return scenario.fine_tune(model, base, run.path / "trajectory", reporter)


def _drift(scenario: Scenario, run: RunDir) -> dict:
    traj = Trajectory.load(run.path / "trajectory")
    return scenario.walk(traj, drift_sites(traj.model_at(0).cfg.n_layers))


def run(spec: Spec, run: RunDir) -> AnalysisResult:
    scenario = Scenario(spec)
    trained = run.stage("fine_tune", lambda: fine_tune_here(scenario, run))
    d = run.stage("drift", lambda: _drift(scenario, run), collective=True)  # torchrun: captures split
    task_loss = run.stage("task_loss", lambda: scenario.task_loss(Trajectory.load(run.path / "trajectory")))
    r = DriftResult.from_dict(d)
    first, end = r.methods[0], r.end
    summary = [
        {
            "site": x,
            **{f"{m} refit (end)": r.auroc(m, x, "BH_disagree")[end] for m in r.methods},
            **{f"{m} initial (end)": r.auroc(m, x, "BH_disagree", reporter="initial")[end] for m in r.methods},
            "initial on control (end)": r.auroc(first, x, "BH_control", reporter="initial")[end],
            "cos v to step 0 (end)": r.cos_v_series(x)[end],
            "cos v floor q05": r.floor("cos_v", x)["q05"],
            f"cos w {first} (end)": r.cos_w_series(first, x)[end],
            f"cos w {first} floor q05": r.floor("cos_w", x, first)["q05"],
            "CKA to step 0 (end)": r.cka(x)[end],
            "CKA half-sample spread (q05, q95)": _spread(r.floor("cka_final", x)),
        }
        for x in r.sites
    ]
    anchor = Site.parse(spec.anchor.site).name
    transfer_site = anchor if anchor in r.sites else r.sites[-1]
    transfer_rows = [
        {"fitted at step": st, **{str(c): round(v, 3) for c, v in zip(r.steps, row, strict=True)}}
        for st, row in zip(r.steps, r.transfer_matrix(first, transfer_site), strict=True)
    ]
    view = {
        "name": spec.name,
        "spec": spec,
        "labels": LABELS[spec.train.labels],
        "objective": OBJECTIVES[spec.train.objective],
        "seconds": trained["seconds"],
        "drift": r,
        "final_accuracy": d["final_accuracy"],
        "task_loss": task_loss,
        "summary": summary,
        "transfer_site": transfer_site,
        "transfer": transfer_rows,
    }
    return AnalysisResult(
        metrics={"fine_tune": trained, "task_loss": task_loss, **{k: d[k] for k in d}},
        tables={"drift_summary": summary, "transfer": transfer_rows},
        provenance={
            "model_spec": spec.model.base,
            "seeds": {"train": spec.train.fine_tune.seed},
            "settings": spec_dict(spec),
        },
        view=view,
    )


def _spread(floor: dict) -> str:
    return f"{floor['q05']:+.4f}, {floor['q95']:+.4f}"
