"""Circuits behind the truth reporter along a fine-tuning trajectory: which heads and MLPs write its
score, the smallest faithful circuit at every checkpoint, and how that circuit moves.

Stages: ``fine_tune`` (a drift scenario, or an existing trajectory named by ``circuits.trajectory``),
``circuits`` (per checkpoint: a logistic reporter refitted on Alice-easy statements, every upstream
component scored by exact patching, attribution patching and its integrated-gradients variant on
sum-vs-sloppy twins, the smallest circuit at the faithfulness target, and the noise floor from two
disjoint halves of the pairs at the first checkpoint), ``attention`` (the top heads' patterns on one
prompt at the first and the last checkpoint, drawn with circuitsvis offline).
"""

from html import escape
from pathlib import Path

import torch

from elk_lens.analyses import drift as scenario
from elk_lens.analyses.result import AnalysisResult, config_value
from elk_lens.capture import capture
from elk_lens.circuit_drift import circuit_series, edit_distance, jaccard, relabel, weighted_jaccard
from elk_lens.circuits import (
    attention_patterns,
    attribution_patching,
    exact_patching,
    layer_grid,
    mean_scores,
    smallest_circuit,
    spearman,
    sum_vs_sloppy_pairs,
    top_heads,
)
from elk_lens.models import fingerprint, load_model
from elk_lens.report.attention_vis import attention_heads_html, circuitsvis_script
from elk_lens.report.html import Section, table_html
from elk_lens.report.rundir import RunDir
from elk_lens.report.svg import heatmap, line_chart
from elk_lens.reporters import fit_logistic
from elk_lens.trajectory import Checkpoint, Trajectory

__all__ = ["check_config", "run"]

_CIRCUITS = {
    "circuits.trajectory": ("", str),
    "circuits.growth_run": ("", str),
    "circuits.site": ("blocks.3.hook_resid_pre", str),
    "circuits.pairs": (256, int),
    "circuits.character": ("Alice", str),
    "circuits.ig_steps": (4, int),
    "circuits.target": (0.8, float),
    "circuits.ablation": ("twin", str),
    "circuits.top_heads": (3, int),
}


KEYS = scenario.KEYS + tuple(_CIRCUITS)


def _settings(cfg: dict) -> dict:
    s = scenario._settings(cfg)
    return s | {key: config_value(cfg, key, default, kind) for key, (default, kind) in _CIRCUITS.items()}


def check_config(cfg: dict) -> None:
    scenario.check_config(cfg)
    s = _settings(cfg)
    if s["circuits.character"] not in ("Alice", "Bob"):
        raise ValueError(f"config key 'circuits.character' must be 'Alice' or 'Bob', got {s['circuits.character']!r}")
    if s["circuits.ablation"] not in ("twin", "mean"):
        raise ValueError(f"config key 'circuits.ablation' must be 'twin' or 'mean', got {s['circuits.ablation']!r}")
    if not 0 < s["circuits.target"] <= 1:
        raise ValueError(f"config key 'circuits.target' must lie in (0, 1], got {s['circuits.target']}")
    if s["circuits.pairs"] < 4:
        raise ValueError(
            f"config key 'circuits.pairs' must be >= 4 (two halves for the floor), got {s['circuits.pairs']}"
        )
    if s["circuits.trajectory"] and not (Path(s["circuits.trajectory"]) / "trajectory.json").is_file():
        raise ValueError(f"config key 'circuits.trajectory': {s['circuits.trajectory']} holds no trajectory.json")
    growth_run = Path(s["circuits.growth_run"])
    if s["circuits.growth_run"] and not ((growth_run / "growth_map").is_dir() and (growth_run / "trajectory").is_dir()):
        raise ValueError(f"config key 'circuits.growth_run': {growth_run} is not a finished growth run (it needs "
                         "growth_map/ and trajectory/; run a growth analysis first)")  # fmt: skip
    if s["circuits.growth_run"] and s["circuits.trajectory"]:
        raise ValueError("set one of 'circuits.trajectory' and 'circuits.growth_run', not both")


def _trajectory(s: dict, run: RunDir) -> Trajectory:
    """The trajectory walked: fine-tuned here, given, or a growth run's (the small model, then the grown
    model's checkpoints, joined through the run's growth map)."""
    if s["circuits.growth_run"]:
        grown = Path(s["circuits.growth_run"])
        small = Trajectory([Checkpoint(0, spec=s["model.base"])])
        return Trajectory.join(small, grown / "growth_map", Trajectory.load(grown / "trajectory"))
    return Trajectory.load(s["circuits.trajectory"] or run.path / "trajectory")


def _fine_tune(s: dict, run: RunDir) -> dict:
    if s["circuits.trajectory"] or s["circuits.growth_run"]:
        source = s["circuits.trajectory"] or s["circuits.growth_run"]
        return {"steps": _trajectory(s, run).steps, "from": source}
    model = load_model(s["model.base"])
    return scenario.train_scenario(s, model, s["model.base"], run.path / "trajectory", None)


def _score(s: dict, model, reporter, clean: list[str], corrupt: list[str]) -> dict:
    """Exact, AP and AP-IG per component (pair means), their rank agreement, and the smallest circuit."""
    exact = exact_patching(model, reporter, clean, corrupt)
    ap = attribution_patching(model, reporter, clean, corrupt)
    ig = attribution_patching(model, reporter, clean, corrupt, ig_steps=s["circuits.ig_steps"])
    circuit = smallest_circuit(exact, model, reporter, clean, corrupt, target=s["circuits.target"],
                               ablation=s["circuits.ablation"])  # fmt: skip
    return {
        "exact": {k: round(v, 5) for k, v in mean_scores(exact).items()},
        "ap": {k: round(v, 5) for k, v in mean_scores(ap).items()},
        "spearman_ap": round(spearman(ap, exact), 4), "spearman_ig": round(spearman(ig, exact), 4),
        "circuit": list(circuit.components), "size": circuit.size, "m_diff": round(circuit.m_diff, 4),
        "curve": [round(f, 4) for f in circuit.curve.tolist()],
    }  # fmt: skip


def _circuits(s: dict, run: RunDir) -> dict:
    traj = _trajectory(s, run)
    site = s["circuits.site"]
    probe_set = scenario._probe_set(s)
    clean, corrupt = sum_vs_sloppy_pairs(s["circuits.pairs"], character=s["circuits.character"])
    half = len(clean) // 2
    out = {"steps": traj.steps, "site": site, "pairs": len(clean), "example": [clean[0], corrupt[0]], "at": []}
    last = len(traj) - 1
    for t in range(len(traj)):
        model = traj.model_at(t)
        growth = traj.growth_map(0, t)
        here = site if growth is None else growth.site(site)  # the same place in a grown model
        reporter = fit_logistic(capture(model, probe_set, [here]).at(0), probe_set.truth, site=here,
                                provenance={"model": fingerprint(model)})  # fmt: skip
        out["at"].append(_score(s, model, reporter, clean, corrupt))
        if t == 0:  # the floor: the same measures between circuits found on two disjoint halves of the pairs
            a, b = (_score(s, model, reporter, clean[sl], corrupt[sl]) for sl in (slice(0, half), slice(half, None)))
            within = [{k: v / x["m_diff"] for k, v in x["exact"].items() if k in x["circuit"]} for x in (a, b)]
            out["floor"] = {
                "jaccard": jaccard(set(a["circuit"]), set(b["circuit"])),
                "weighted_jaccard": weighted_jaccard(*within),
                "edit_distance": edit_distance(set(a["circuit"]), set(b["circuit"])),
                "halves": [a["circuit"], b["circuit"]],
            }  # fmt: skip
    at = out["at"]
    # compare circuits in the last checkpoint's names: components of a smaller model move through the maps
    maps = [traj.growth_map(t, last) for t in range(len(traj))]
    circuits = [
        set(x["circuit"]) if g is None else relabel(set(x["circuit"]), g) for x, g in zip(at, maps, strict=True)
    ]
    # scores as shares of the clean-vs-corrupt gap: refitted reporters differ in scale, not in what they read
    shares = [{k: v / x["m_diff"] for k, v in x["exact"].items()} for x in at]
    scores = [sh if g is None else relabel(sh, g) for sh, g in zip(shares, maps, strict=True)]
    out["drift"] = circuit_series(circuits, scores)
    out["exact_in_final_names"] = scores
    out["grown_at"] = [i for i, c in enumerate(traj.checkpoints) if c.growth is not None]
    return out


def _attention(s: dict, run: RunDir, scored: dict) -> dict:
    """Attention patterns of the heads with the largest |exact score| at the last checkpoint, on the
    example clean prompt, at the first and the last checkpoint."""
    traj = _trajectory(s, run)
    last = scored["at"][-1]["exact"]
    first = scored["grown_at"][-1] if scored["grown_at"] else 0  # the heads exist from the last growth on
    heads = top_heads(last, s["circuits.top_heads"])
    text = scored["example"][0]
    out = {"heads": heads, "text": text, "patterns": {}}
    for t in (first, len(traj) - 1):
        patterns, out["tokens"] = attention_patterns(traj.model_at(t), text, heads)
        out["patterns"][_labels(scored)[t]] = patterns.tolist()
    return out


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    trained = run.stage("fine_tune", lambda: _fine_tune(s, run))
    scored = run.stage("circuits", lambda: _circuits(s, run))
    attention = run.stage("attention", lambda: _attention(s, run, scored))
    return _report(cfg, s, trained, scored, attention)


def _labels(scored: dict) -> list[str]:
    """x labels: the step, marked "(small)" before a growth step (steps repeat across it)."""
    grown = scored["grown_at"][-1] if scored["grown_at"] else 0
    return [f"{t} (small)" if i < grown else str(t) for i, t in enumerate(scored["steps"])]


def _report(cfg, s, trained, scored, attention) -> AnalysisResult:
    steps, at, floor, dr = scored["steps"], scored["at"], scored["floor"], scored["drift"]
    x = _labels(scored)
    marks = {x[i]: "grown" for i in scored["grown_at"]}
    rows = [{"step": t, "M_diff (clean - corrupt)": a["m_diff"], "circuit size": a["size"],
             "circuit (by |exact|)": ", ".join(a["circuit"]), "Spearman AP vs exact": a["spearman_ap"],
             f"Spearman AP-IG{s['circuits.ig_steps']} vs exact": a["spearman_ig"],
             "F of every component": a["curve"][-1]} for t, a in zip(steps, at, strict=True)]  # fmt: skip
    lines = {"Jaccard to the previous": dr["jaccard_prev"], "Jaccard to the first": dr["jaccard_first"],
             "weighted Jaccard to the first": dr["weighted_jaccard_first"],
             "EWMA change": dr["ewma_change"]}  # fmt: skip
    bands = {"Jaccard to the first": (floor["jaccard"], 1.0),
             "weighted Jaccard to the first": (floor["weighted_jaccard"], 1.0)}  # fmt: skip
    charts = line_chart(lines, x, title="Circuit drift (node sets at the faithfulness target)", y_label="",
                        bands=bands, marks=marks)  # fmt: skip
    grids = ""
    for i in sorted({0, len(at) // 2, len(at) - 1}):
        values, row_labels, col_labels = layer_grid(at[i]["exact"])
        grids += heatmap(values, row_labels, col_labels, title=f"exact patching score, step {x[i]}")
    final = scored["exact_in_final_names"]
    names = list(final[-1])
    over = heatmap([[a.get(n, float("nan")) for a in final] for n in names], names, x,
                   title="exact patching score / M_diff per component over checkpoints "
                   "(last checkpoint's names)")  # fmt: skip
    figures = circuitsvis_script() + "".join(
        f"<h3>step {step}</h3>" + attention_heads_html(torch.tensor(p), attention["tokens"], attention["heads"])
        for step, p in attention["patterns"].items()
    )  # fmt: skip
    floor_text = (f"Noise floor at step {steps[0]} (two disjoint halves of the pairs): Jaccard {floor['jaccard']:.3f}, "
                  f"weighted Jaccard {floor['weighted_jaccard']:.3f}, edit distance {floor['edit_distance']} "
                  f"(halves: {floor['halves'][0]} vs {floor['halves'][1]}).")  # fmt: skip
    source = trained.get("from") or f"fine-tuned here: {scenario.LABELS[s['train.labels']]}, {s['train.steps']} steps"
    sections = [
        Section("Setup", f"<p>{escape(str(source))}. Reporter: logistic, refitted at every checkpoint on Alice-easy "
                f"statements at {escape(s['circuits.site'])}. Pairs: {scored['pairs']} twins said by "
                f"{escape(s['circuits.character'])}, e.g. {escape(scored['example'][0])} vs "
                f"{escape(scored['example'][1])}. Ablation outside the circuit: {escape(s['circuits.ablation'])}; "
                f"target F &ge; {s['circuits.target']}.</p>"),
        Section("The smallest faithful circuit at every checkpoint", table_html(rows)),
        Section("Circuit drift", charts + f"<p class='note'>{escape(floor_text)} Shaded: from the floor up to 1; "
                "a drop below it is drift.</p>"),
        Section("Which components write the truth score", grids + over + "<p class='note'>Exact patching: the "
                "change of the reporter's score when one component's output is replaced by its output on the "
                "twin (mean over pairs).</p>"),
        Section("Attention of the top heads", figures + f"<p class='note'>Heads with the largest |score| at the "
                f"last checkpoint, on {escape(attention['text'])}.</p>"),
    ]  # fmt: skip
    return AnalysisResult(
        title=f"elk-lens: circuits, {cfg['name']}",
        intro="<p class='note'>Which heads and MLPs write the truth reporter's score, and how that moves.</p>",
        sections=sections,
        metrics={"fine_tune": trained, **scored, "attention": {k: attention[k] for k in ("heads", "text")}},
        tables={"circuits": rows},
        provenance={"model_spec": s["model.base"], "seeds": {"train": s["train.seed"]}, "settings": s},
    )
