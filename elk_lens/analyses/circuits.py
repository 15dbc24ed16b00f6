"""Circuits behind the truth reporter along a fine-tuning trajectory: which heads and MLPs write its
score, the smallest faithful circuit at every checkpoint, and how that circuit moves.

Stages: ``fine_tune`` (a drift scenario, or an existing trajectory named by ``circuits.trajectory``),
``circuits`` (per checkpoint scored, ``circuits.steps`` or every one: a logistic reporter refitted on
Alice-easy statements, every upstream component scored by exact patching, attribution patching and its
integrated-gradients variant on the task's twins (:mod:`elk_lens.quirky.twins`: sum-vs-sloppy sums,
or cities of opposite truth in one template and token count), the smallest circuit at the faithfulness
target, and the noise floor from two disjoint halves of the pairs at the first checkpoint scored; saved as a
:class:`~elk_lens.circuits.CircuitTrajectory`'s ``to_dict``, read back through it), ``attention`` (the
top heads' patterns on one prompt at the first and the last checkpoint scored). ``elk_lens.report.pages.circuits``
draws the report from the view (the attention with circuitsvis, offline).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from elk_lens.analyses import drift
from elk_lens.analyses.model_checks import check_site, model_layout
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.scenario import LABELS, Scenario, ScenarioSpec
from elk_lens.analyses.spec import at_least, in_range, one_of, setting, spec_dict
from elk_lens.capturing import capture, tokenize
from elk_lens.circuit_drift import circuit_series, edit_distance, jaccard, relabel, weighted_jaccard
from elk_lens.circuits import (
    CheckpointCircuit,
    CircuitTrajectory,
    NoiseFloor,
    attention_patterns,
    attribution_patching,
    exact_patching,
    mean_scores,
    smallest_circuit,
    spearman,
)
from elk_lens.distributed import spread
from elk_lens.models import fingerprint
from elk_lens.quirky.data import CHARACTERS
from elk_lens.quirky.tasks import TASKS, quirky_task
from elk_lens.report.rundir import RunDir
from elk_lens.reporters import fit_logistic
from elk_lens.trajectory import Checkpoint, Trajectory

__all__ = ["Spec", "check", "run"]


@dataclass(frozen=True)
class CircuitsSpec:
    """``[circuits]``: the trajectory walked, where the reporter reads, the twins and the circuit search."""

    trajectory: str = ""  # a trajectory directory to walk ("" = fine-tune here)
    growth_run: str = ""  # or a finished growth run's directory
    site: str = "blocks.3.hook_resid_pre"  # checked against the model
    pairs: int = setting(256, at_least(4))  # >= 4: two halves of >= 2 pairs for the noise floor
    character: str = setting("Alice", one_of(CHARACTERS))
    ig_steps: int = setting(4, at_least(1))
    target: float = setting(0.8, in_range(0, 1, low_open=True))
    ablation: str = setting("twin", one_of(("twin", "mean")))
    top_heads: int = setting(3, at_least(1))
    steps: tuple[int, ...] = ()  # the checkpoints scored, by training step (empty = every one)


@dataclass(frozen=True, kw_only=True)
class Spec(ScenarioSpec):
    """A circuits spec: the scenario's tables (used when it fine-tunes here) and ``[circuits]``
    (``analyses/circuits_*.toml``)."""

    circuits: CircuitsSpec = CircuitsSpec()


def check(spec: Spec) -> None:
    c = spec.circuits
    if c.trajectory and not (Path(c.trajectory) / "trajectory.json").is_file():
        raise ValueError(f"config key 'circuits.trajectory': {c.trajectory} holds no trajectory.json")
    growth_run = Path(c.growth_run)
    if c.growth_run and not ((growth_run / "growth_map").is_dir() and (growth_run / "trajectory").is_dir()):
        raise ValueError(
            f"config key 'circuits.growth_run': {growth_run} is not a finished growth run (it needs "
            "growth_map/ and trajectory/; run a growth analysis first)"
        )
    if c.growth_run and c.trajectory:
        raise ValueError("set one of 'circuits.trajectory' and 'circuits.growth_run', not both")
    if quirky_task(spec.data.task).twins is None:
        with_twins = sorted(name for name, task in TASKS.items() if task.twins is not None)
        raise ValueError(
            f"config key 'data.task' = {spec.data.task!r} has no contrast twins to patch with "
            f"(elk_lens.quirky.twins); the circuits analysis runs {with_twins}"
        )
    if c.trajectory and c.steps:  # a fine-tune here or a growth run has its steps only once it has run
        _scored(c, Trajectory.load(c.trajectory).steps)
    # a given trajectory's model is its own; otherwise the site is read on model.base (the small model of a
    # growth run, mapped into the grown one)
    layout = None if c.trajectory else model_layout(spec.model.base)
    Scenario(spec).check(layout)
    site = check_site("circuits.site", c.site, layout)
    if site.layer == 0 and site.kind == "resid_pre":
        raise ValueError(
            f"config key 'circuits.site': no head writes into {c.site!r} (only the "
            "embedding does), so there is no circuit to find; read at blocks.1.hook_resid_pre or later"
        )


def _trajectory(spec: Spec, run: RunDir) -> Trajectory:
    """The trajectory walked: fine-tuned here, given, or a growth run's (the small model, then the grown
    model's checkpoints, joined through the run's growth map)."""
    c = spec.circuits
    if c.growth_run:
        grown = Path(c.growth_run)
        small = Trajectory([Checkpoint(0, spec=spec.model.base)])
        return Trajectory.join(small, grown / "growth_map", Trajectory.load(grown / "trajectory"))
    return Trajectory.load(c.trajectory or run.path / "trajectory")


def _scored(c: CircuitsSpec, steps: list[int]) -> list[int]:
    """The positions in the trajectory of the checkpoints scored: those at ``circuits.steps``, or all."""
    if not c.steps:
        return list(range(len(steps)))
    missing = sorted(set(c.steps) - set(steps))
    if missing or len(set(c.steps)) != len(c.steps):
        raise ValueError(
            f"config key 'circuits.steps' = {list(c.steps)} must name distinct steps of the trajectory "
            f"walked; {missing or 'a repeated step'} is not one of its steps {steps}"
        )
    return [i for i, step in enumerate(steps) if step in c.steps]


def _grown_at(traj: Trajectory, scored: list[int]) -> list[int]:
    """Positions among the checkpoints scored that follow a growth step: one grown at them or since the
    previous one scored (a skipped grown checkpoint still marks the next one scored as grown)."""
    since = [0, *(t + 1 for t in scored[:-1])]
    return [
        k
        for k, (first, t) in enumerate(zip(since, scored, strict=True))
        if any(c.growth is not None for c in traj.checkpoints[first : t + 1])
    ]


def _twins(scenario: Scenario, model) -> tuple[list[str], list[str]]:
    """The task's contrast pairs, said by ``circuits.character``, token counts read with ``model``'s
    tokenizer (every checkpoint of a trajectory shares it)."""
    c = scenario.spec.circuits
    twins = quirky_task(scenario.spec.data.task).twins
    assert twins is not None, "check() refuses a task without twins"
    return twins(
        c.pairs, n_tokens=lambda texts: tokenize(model, texts).mask.sum(1).tolist(), seed=0, character=c.character
    )


def _fine_tune(scenario: Scenario, run: RunDir) -> dict:
    c = scenario.spec.circuits
    if c.trajectory or c.growth_run:
        return {"steps": _trajectory(scenario.spec, run).steps, "from": c.trajectory or c.growth_run}
    return drift.fine_tune_here(scenario, run)


def _score(c: CircuitsSpec, model, reporter, clean: list[str], corrupt: list[str]) -> CheckpointCircuit:
    """Exact, AP and AP-IG per component (pair means), their rank agreement, and the smallest circuit."""
    exact = exact_patching(model, reporter, clean, corrupt)
    ap = attribution_patching(model, reporter, clean, corrupt)
    ig = attribution_patching(model, reporter, clean, corrupt, ig_steps=c.ig_steps)
    circuit = smallest_circuit(exact, model, reporter, clean, corrupt, target=c.target, ablation=c.ablation)
    return CheckpointCircuit(
        exact={k: round(v, 5) for k, v in mean_scores(exact).items()},
        ap={k: round(v, 5) for k, v in mean_scores(ap).items()},
        spearman_ap=round(spearman(ap, exact), 4),
        spearman_ig=round(spearman(ig, exact), 4),
        circuit=list(circuit.components),
        size=circuit.size,
        m_diff=round(circuit.m_diff, 4),
        curve=[round(f, 4) for f in circuit.curve.tolist()],
    )


def _circuits(scenario: Scenario, run: RunDir) -> CircuitTrajectory:
    c = scenario.spec.circuits
    traj = _trajectory(scenario.spec, run)
    site = c.site
    probe_set = scenario.probe_set
    scored = _scored(c, traj.steps)
    last = scored[-1]
    clean, corrupt = _twins(scenario, traj.model_at(scored[0]))
    half = len(clean) // 2

    def score(t: int) -> list[dict]:
        """The circuit at checkpoint ``t`` on every pair; at the first, also on each half of them (the floor)."""
        model = traj.model_at(t)
        growth = traj.growth_map(0, t)
        here = site if growth is None else growth.site(site)  # the same place in a grown model
        reporter = fit_logistic(
            capture(model, probe_set, [here]).at(0),
            probe_set.truth,
            site=here,
            provenance={"model": fingerprint(model)},
        )
        parts = [slice(None)] + ([slice(0, half), slice(half, None)] if t == scored[0] else [])
        return [asdict(_score(c, model, reporter, clean[rows], corrupt[rows])) for rows in parts]

    # the checkpoints are independent: under torchrun they spread over the ranks (elk_lens/distributed.py)
    (first, a, b), *rest = [[CheckpointCircuit(**x) for x in xs] for xs in spread(scored, score)]
    at = [first] + [x for (x,) in rest]
    # the floor: the same measures between circuits found on two disjoint halves of the pairs at the first one
    floor = NoiseFloor(
        jaccard=jaccard(set(a.circuit), set(b.circuit)),
        weighted_jaccard=weighted_jaccard(a.shares(circuit_only=True), b.shares(circuit_only=True)),
        edit_distance=edit_distance(set(a.circuit), set(b.circuit)),
        halves=[a.circuit, b.circuit],
    )
    # compare circuits in the last checkpoint's names: components of a smaller model move through the maps
    maps = [traj.growth_map(t, last) for t in scored]
    circuits = [set(x.circuit) if g is None else relabel(set(x.circuit), g) for x, g in zip(at, maps, strict=True)]
    # scores as shares of the clean-vs-corrupt gap: refitted reporters differ in scale, not in what they read
    scores = [x.shares() if g is None else relabel(x.shares(), g) for x, g in zip(at, maps, strict=True)]
    return CircuitTrajectory(
        steps=[traj.steps[t] for t in scored],
        site=site,
        pairs=len(clean),
        example=[clean[0], corrupt[0]],
        at=at,
        floor=floor,
        drift=circuit_series(circuits, scores),
        exact_in_final_names=scores,
        grown_at=_grown_at(traj, scored),
    )


def _attention(spec: Spec, run: RunDir, scored: CircuitTrajectory) -> dict:
    """Attention patterns of the heads with the largest |exact score| at the last checkpoint, on the
    example clean prompt, at the first checkpoint scored that has them (the last growth on) and the last."""
    traj = _trajectory(spec, run)
    scored_at = _scored(spec.circuits, traj.steps)
    heads = scored.at[-1].top_heads(spec.circuits.top_heads)
    text = scored.example[0]
    out = {"heads": heads, "text": text, "patterns": {}}
    for t in (scored.last_growth, scored.end):
        patterns, out["tokens"] = attention_patterns(traj.model_at(scored_at[t]), text, heads)
        out["patterns"][scored.labels[t]] = patterns.tolist()
    return out


def run(spec: Spec, run: RunDir) -> AnalysisResult:
    scenario = Scenario(spec)
    trained = run.stage("fine_tune", lambda: _fine_tune(scenario, run))
    # the stage keeps its JSON (old runs resume from it); the analysis reads it typed
    # collective: under torchrun every rank takes its share of the checkpoints
    circuits = run.stage("circuits", lambda: _circuits(scenario, run).to_dict(), collective=True)
    scored = CircuitTrajectory.from_dict(circuits)
    attention = run.stage("attention", lambda: _attention(spec, run, scored))
    return _report(spec, trained, scored, attention)


def _report(spec: Spec, trained, scored: CircuitTrajectory, attention) -> AnalysisResult:
    rows = [
        {
            "step": t,
            "M_diff (clean - corrupt)": a.m_diff,
            "circuit size": a.size,
            "circuit (by |exact|)": ", ".join(a.circuit),
            "Spearman AP vs exact": a.spearman_ap,
            f"Spearman AP-IG{spec.circuits.ig_steps} vs exact": a.spearman_ig,
            "F of every component": a.faithfulness_all,
        }
        for t, a in zip(scored.steps, scored.at, strict=True)
    ]
    view = {
        "name": spec.name,
        "spec": spec,
        "trained_from": trained.get("from"),
        "train_labels": LABELS[spec.train.labels],
        "circuits": scored,
        "attention": attention,
        "x": scored.labels,
        "rows": rows,
    }
    return AnalysisResult(
        metrics={"fine_tune": trained, **scored.to_dict(), "attention": {k: attention[k] for k in ("heads", "text")}},
        tables={"circuits": rows},
        provenance={
            "model_spec": spec.model.base,
            "seeds": {"train": spec.train.fine_tune.seed},
            "settings": spec_dict(spec),
        },
        view=view,
    )
