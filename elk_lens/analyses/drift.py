"""Concept drift through fine-tuning: fine-tune a zoo model on a quirky scenario, then walk the
trajectory and measure how the truth concept and the reporters move (``elk_lens.drift_study``).

Scenarios are spec settings: which labels the model learns (each character's own — the quirk — or
Bob's for everybody — the quirk flip), how (the answer token after each statement, or next-token
training on a raw token stream of the statements with their answers written out), which parameters
stay frozen, the learning rate, the steps, and optional concept anchoring of a reporter fitted on the
base model.
"""

import numpy as np
import torch

from elk_lens.analyses.result import (
    SEED,
    AnalysisResult,
    ModelLayout,
    Setting,
    at_least,
    check_prefixes,
    check_site,
    in_range,
    model_layout,
    model_spec,
    one_of,
    read_settings,
    some_of,
)
from elk_lens.capture import capture
from elk_lens.drift_study import trajectory_drift
from elk_lens.lm_output import output_log_odds
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import DIGITS, quirky_arithmetic
from elk_lens.quirky.subsets import subset_mask
from elk_lens.report.rundir import RunDir
from elk_lens.reporters import Reporter, fit_logistic
from elk_lens.reporters.registry import METHODS
from elk_lens.token_stream import TokenStream
from elk_lens.train import FineTuneConfig, anchor_to, answer_loss, fine_tune
from elk_lens.trajectory import Trajectory

__all__ = ["check_config", "run"]

LABELS = {
    "label": "each character's own label (Bob sloppy: the quirk)",
    "bob_label": "Bob's sloppy label for everybody (the quirk flip)",
    "alice_label": "the true label for everybody (the base model's own task)",
}
OBJECTIVES = {
    "answer": "the answer token after each statement",
    "stream": "next tokens of a raw stream of the statements, each followed by its answer",
}
ANCHORS = ("none", "all", "alice")
# drift refits these at every checkpoint: statement reporters that need no polarity pairs
DRIFT_METHODS = tuple(m for m, x in METHODS.items() if x.reads == "statement" and not x.needs_polarity)
SETTINGS = {
    "model.base": Setting("zoo:quirky-arith-base", str, model_spec),
    "data.digits": Setting(3, int, one_of(DIGITS)),
    "train.labels": Setting("label", str, one_of(sorted(LABELS))),
    "train.objective": Setting("answer", str, one_of(sorted(OBJECTIVES))),
    "train.rows": Setting(10000, int, at_least(1)),
    "train.steps": Setting(600, int, at_least(1)),
    "train.lr": Setting(1e-3, float, in_range(0, None, low_open=True)),
    "train.batch_size": Setting(64, int, at_least(1)),
    "train.frozen": Setting([], list[str]),  # parameter-name prefixes, checked against the model
    "train.seed": Setting(0, int, SEED),
    "anchor.on": Setting("none", str, one_of(ANCHORS)),
    "anchor.weight": Setting(1.0, float, in_range(0, None, low_open=True)),
    "anchor.site": Setting("blocks.3.hook_resid_pre", str),  # a site of the model, checked against it
    "drift.methods": Setting(["mean_diff", "logistic"], list[str], some_of(DRIFT_METHODS, "methods")),
    "drift.eval_rows": Setting(4000, int, at_least(1)),
    "drift.probe_rows": Setting(8000, int, at_least(1)),
    "capture.batch_size": Setting(512, int, at_least(1)),
}
"""The scenario's keys, shared by the analyses that fine-tune (growth, circuits)."""
KEYS = tuple(SETTINGS)  # every config key this analysis reads (the runner refuses others)
_MIN_PER_CLASS = 2


def _settings(cfg: dict) -> dict:
    return read_settings(cfg, SETTINGS)


def check_config(cfg: dict) -> None:
    s = _settings(cfg)
    check_scenario(s, model_layout(s["model.base"]))


def check_scenario(s: dict, layout: ModelLayout | None, params: list[str] | None = None) -> None:
    """The keys that depend on the model trained (``layout``; ``params``: its parameter names where they
    differ from the layout's, e.g. a grown model's): the anchor's site and the frozen prefixes."""
    check_site("anchor.site", s["anchor.site"], layout)
    check_prefixes("train.frozen", s["train.frozen"], layout, params or ())
    # the subsets are drawn from the generated data (cheap): too few rows would fail only after training
    subsets = {**{f"{name} evaluation": data for name, data in eval_sets(s).items()}, "Alice-easy probe": _probe_set(s)}
    for (name, data), key in zip(subsets.items(), ("drift.eval_rows",) * 3 + ("drift.probe_rows",), strict=True):
        n_true = int(data.truth.sum())
        if min(n_true, len(data) - n_true) < _MIN_PER_CLASS:
            raise ValueError(
                f"config key {key!r} = {s[key]} leaves {len(data)} rows ({n_true} true) in the {name} "
                f"subset; it needs >= {_MIN_PER_CLASS} of each class (the noise floor splits it in "
                f"halves): raise {key!r}"
            )


def _train_data(s: dict):
    train = quirky_arithmetic(s["train.rows"], split="train", seed=s["train.seed"], digits=s["data.digits"])
    return train, torch.as_tensor(train.column(s["train.labels"]))


def _probe_set(s: dict):
    return quirky_arithmetic(s["drift.probe_rows"], split="val", seed=0, digits=s["data.digits"]).where(
        character="Alice", easy=True
    )


def anchor_reporter(s: dict, model) -> Reporter:
    """The reporter anchoring keeps truthful: logistic on Alice-easy statements at ``anchor.site``."""
    probe_set, site = _probe_set(s), s["anchor.site"]
    return fit_logistic(
        capture(model, probe_set, [site]).at(0), probe_set.truth, site=site, provenance={"model": fingerprint(model)}
    )


def train_scenario(s: dict, model, base_spec: str, out, reporter: Reporter | None) -> dict:
    """Fine-tune ``model`` (loaded from ``base_spec``) on the scenario's data into ``out``, anchoring
    ``reporter`` (which must read ``model``) when the spec asks for it."""
    train, labels = _train_data(s)
    anchor = None
    if s["anchor.on"] != "none":
        rows = None if s["anchor.on"] == "all" else train.column("character") == "Alice"
        anchor = anchor_to(model, train, reporter, rows=rows, weight=s["anchor.weight"])
    config = FineTuneConfig(
        steps=s["train.steps"],
        lr=s["train.lr"],
        batch_size=s["train.batch_size"],
        seed=s["train.seed"],
        frozen=tuple(s["train.frozen"]),
    )
    if s["train.objective"] == "stream":
        answers = np.array(config.answers)[np.where(labels.numpy(), 0, 1)]
        data, labels = TokenStream.from_texts(model, [t + a for t, a in zip(train.texts, answers, strict=True)]), None
    else:
        data = train
    traj = fine_tune(model, data, labels, out, base_spec=base_spec, config=config, anchor=anchor)
    return {"steps": traj.steps, "history": traj.info.get("history", []), "seconds": traj.info["seconds_this_run"]}


def _fine_tune(s: dict, run: RunDir) -> dict:
    model = load_model(s["model.base"])
    reporter = anchor_reporter(s, model) if s["anchor.on"] != "none" else None
    return train_scenario(s, model, s["model.base"], run.path / "trajectory", reporter)


def _final_accuracy(s: dict, traj: Trajectory) -> dict:
    return output_accuracy(s, traj.model_at(len(traj) - 1))


def output_accuracy(s: dict, model) -> dict:
    """Each character's answer accuracy on the test split, vs the trained labels and vs truth."""
    test = quirky_arithmetic(s["drift.eval_rows"], split="test", seed=0, digits=s["data.digits"])
    says_true = (output_log_odds(model, test, batch_size=s["capture.batch_size"]) > 0).numpy()
    out = {}
    for who in ("Alice", "Bob"):
        rows = test.column("character") == who
        out[f"{who} vs the trained labels"] = float((says_true == test.column(s["train.labels"]))[rows].mean())
        out[f"{who} vs truth"] = float((says_true == test.column("alice_label"))[rows].mean())
    return out


def eval_sets(s: dict) -> dict:
    """The fixed evaluation sets: Bob-hard disagreements, Alice-easy, and the Bob-hard control."""
    test = quirky_arithmetic(s["drift.eval_rows"], split="test", seed=0, digits=s["data.digits"])
    return {name: test.subset(subset_mask(test, name).numpy()) for name in ("BH_disagree", "AE", "BH_control")}


def drift_sites(n_layers: int) -> list[str]:
    """Every block's input residual past the embedding, and the last block's output."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(1, n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def walk(s: dict, traj: Trajectory, sites: list[str], fixed: dict | None = None) -> dict:
    """`trajectory_drift` on the scenario's probe and evaluation sets, plus the final answer accuracy."""
    out = trajectory_drift(
        traj,
        _probe_set(s),
        eval_sets(s),
        sites,
        methods=tuple(s["drift.methods"]),
        batch_size=s["capture.batch_size"],
        fixed=fixed,
    )
    out["final_accuracy"] = _final_accuracy(s, traj)
    return out


def _drift(s: dict, run: RunDir) -> dict:
    traj = Trajectory.load(run.path / "trajectory")
    return walk(s, traj, drift_sites(traj.model_at(0).cfg.n_layers))


def held_out_answer_loss(s: dict, model) -> float:
    """The task loss: answer cross-entropy on the test split against the trained labels."""
    test = quirky_arithmetic(s["drift.eval_rows"], split="test", seed=0, digits=s["data.digits"])
    return answer_loss(model, test, test.column(s["train.labels"]), batch_size=s["capture.batch_size"])


def _task_loss(s: dict, run: RunDir) -> dict:
    """Held-out answer loss at the first and the last checkpoint."""
    traj = Trajectory.load(run.path / "trajectory")
    return {f"step {traj.steps[i]}": held_out_answer_loss(s, traj.model_at(i)) for i in (0, len(traj) - 1)}


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    trained = run.stage("fine_tune", lambda: _fine_tune(s, run))
    d = run.stage("drift", lambda: _drift(s, run))
    task_loss = run.stage("task_loss", lambda: _task_loss(s, run))
    sites, methods = d["sites"], d["methods"]
    first, end = methods[0], len(d["steps"]) - 1
    summary = [
        {
            "site": x,
            **{f"{m} refit (end)": d["auroc_refit"][m][x]["BH_disagree"][end] for m in methods},
            **{f"{m} initial (end)": d["auroc_initial"][m][x]["BH_disagree"][end] for m in methods},
            "initial on control (end)": d["auroc_initial"][first][x]["BH_control"][end],
            "cos v to step 0 (end)": d["cos_v"][x]["to_first"][end],
            "cos v floor q05": d["floors"]["cos_v"][x]["q05"],
            f"cos w {first} (end)": d["cos_w"][first][x]["to_first"][end],
            f"cos w {first} floor q05": d["floors"]["cos_w"][first][x]["q05"],
            "CKA to step 0 (end)": d["cka_to_first"][x][end],
            "CKA half-sample spread (q05, q95)": _spread(d["floors"]["cka_final"][x]),
        }
        for x in sites
    ]
    transfer_site = s["anchor.site"] if s["anchor.site"] in sites else sites[-1]
    transfer_rows = [
        {"fitted at step": st, **{str(c): round(v, 3) for c, v in zip(d["steps"], row, strict=True)}}
        for st, row in zip(d["steps"], d["transfer"][first][transfer_site], strict=True)
    ]
    view = {
        "name": cfg["name"],
        "settings": s,
        "labels": LABELS[s["train.labels"]],
        "objective": OBJECTIVES[s["train.objective"]],
        "seconds": trained["seconds"],
        "drift": d,
        "task_loss": task_loss,
        "summary": summary,
        "transfer_site": transfer_site,
        "transfer": transfer_rows,
    }
    return AnalysisResult(
        metrics={"fine_tune": trained, "task_loss": task_loss, **{k: d[k] for k in d}},
        tables={"drift_summary": summary, "transfer": transfer_rows},
        provenance={"model_spec": s["model.base"], "seeds": {"train": s["train.seed"]}, "settings": s},
        view=view,
    )


def _spread(floor: dict) -> str:
    return f"{floor['q05']:+.4f}, {floor['q95']:+.4f}"
