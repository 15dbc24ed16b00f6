"""The default analysis: where does the quirky model know the truth while its output lies?

Loads a quirky model (a packaged one, or a checkpoint of a quirky fine-tune's trajectory, e.g. LoRA on
SmolLM2-135M: ``analyses/smollm2_quirky.toml``), captures every layer's residual at the read position, fits a
logistic-regression probe per layer on Alice-easy statements, and scores it (AUROC vs truth) on
Alice-easy, Alice-hard, Bob-hard and Bob disagreements, beside the model's own output, surface
heuristics of the shown result and, on the disagreements and the control subset, the AUROC of random
directions at the same site (``elk_lens.quirky.floor``). A model whose card names a positive control
(``zoo:quirky-arith``: its lower blocks are frozen copies of the truthful base) is reported as one.
"""

from dataclasses import dataclass

from elk_lens.analyses.model_checks import model_card, model_spec
from elk_lens.analyses.quirky_methods import method_stages
from elk_lens.analyses.real_lm_glance import RealLMSpec, glance
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.spec import SEED, AnalysisSpec, at_least, in_range, one_of, setting, spec_dict
from elk_lens.models import load_model
from elk_lens.quirky.card import MEASURED_OUTPUT, MEASURED_PROBE
from elk_lens.quirky.floor import above_floor, floor_margins
from elk_lens.quirky.probe_study import quirky_probe_study, split_layers
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, SUBSETS, TARGET
from elk_lens.quirky.tasks import TASKS, quirky_task
from elk_lens.report.rundir import RunDir
from elk_lens.trajectory import Trajectory

__all__ = ["Spec", "check", "run"]


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: the quirky model read: ``spec``, or, where ``trajectory`` names a fine-tune's directory
    (``elk_lens.train.fine_tune`` from ``spec``), its checkpoint number ``checkpoint`` (``-1``: the last)."""

    spec: str = setting("zoo:quirky-arith", model_spec)
    trajectory: str = ""
    checkpoint: int = -1

    def load(self):
        if not self.trajectory:
            return load_model(self.spec)
        return Trajectory.load(self.trajectory).model_at(self.checkpoint)

    def label(self, card: dict) -> str:
        """How the report names the model: the spec, or the fine-tune's base, directory and step."""
        if not self.trajectory:
            return self.spec
        return f"{self.spec} fine-tuned ({self.trajectory}, step {card['step']})"

    def card(self) -> dict:
        """The zoo card of ``spec``; for a trajectory's checkpoint, its step and how it was trained."""
        if not self.trajectory:
            return model_card(self.spec)
        traj = Trajectory.load(self.trajectory)
        step = traj.steps[self.checkpoint]
        return {"fine_tuned_from": self.spec, "trajectory": self.trajectory, "step": step, "training": traj.info}


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: the quirky ``task`` (``elk_lens.quirky.tasks``); base rows of the val split (probes train
    on their Alice-easy part) and the test split."""

    task: str = setting("arithmetic", one_of(tuple(TASKS)))
    train_rows: int = setting(8000, at_least(1))
    test_rows: int = setting(4000, at_least(1))
    seed: int = setting(0, SEED)


@dataclass(frozen=True)
class CaptureSpec:
    """``[capture]``: statements per forward pass."""

    batch_size: int = setting(512, at_least(1))


@dataclass(frozen=True)
class ProbeSpec:
    """``[probe]``: the logistic probes' inverse regularization strength."""

    C: float = setting(1.0, in_range(0, None, low_open=True))


@dataclass(frozen=True)
class CausalSpec:
    """``[causal]``: steering and erasure test rows, random directions beside each steering direction, and
    every how many sites past the embedding they run (the last always)."""

    test_rows: int = setting(2000, at_least(1))
    n_random: int = setting(8, at_least(1))
    every: int = setting(1, at_least(1))


@dataclass(frozen=True, kw_only=True)
class Spec(AnalysisSpec):
    """The default analysis's spec (``analyses/quirky_elk.toml``)."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    capture: CaptureSpec = CaptureSpec()
    probe: ProbeSpec = ProbeSpec()
    causal: CausalSpec = CausalSpec()
    real_lm: RealLMSpec = RealLMSpec()


def check(spec: Spec) -> None:
    """A trajectory must load, hold the checkpoint and have been fine-tuned from ``model.spec``."""
    m = spec.model
    if not m.trajectory:
        return
    try:
        traj = Trajectory.load(m.trajectory)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"config key 'model.trajectory' = {m.trajectory!r} cannot be read (run the fine-tune the spec names "
            f"first): {e}"
        ) from None
    if not -len(traj) <= m.checkpoint < len(traj):
        raise ValueError(
            f"config key 'model.checkpoint' = {m.checkpoint} is out of range: trajectory {m.trajectory!r} has "
            f"{len(traj)} checkpoints (steps {traj.steps}); valid: {-len(traj)}..{len(traj) - 1}"
        )
    if traj.base_spec != m.spec:
        raise ValueError(
            f"config key 'model.spec' = {m.spec!r}, but trajectory {m.trajectory!r} was fine-tuned from "
            f"{traj.base_spec!r}: name that base model"
        )


def _study(s: Spec, run: RunDir, model) -> dict:
    study = quirky_probe_study(
        model,
        train_rows=s.data.train_rows,
        test_rows=s.data.test_rows,
        seed=s.data.seed,
        batch_size=s.capture.batch_size,
        cache_dir=run.path / "cache",
        C=s.probe.C,
        task=s.data.task,
    )
    return {
        "table": study.table(),
        "probe_sites": [r.name for r in study.probes],
        "output": study.output.auroc,
        "accuracy": study.accuracy,
        "sizes": study.sizes,
        "split_layers": split_layers(study),
        "provenance": study.provenance,
        "model_card": s.model.card(),
    }


def _positive_control(card: dict) -> dict | None:
    """The model card's note that the model's split is built in (``None`` if it has none), with the
    measured probes and output of the realistic case the note names, from that model's card."""
    control = card.get("positive_control")
    if not control:
        return None
    measured = model_card(control["realistic_case"]).get("measured", {})
    return control | {
        "realistic_probe": measured.get(MEASURED_PROBE, {}),
        "realistic_output": measured.get(MEASURED_OUTPUT),
    }


def run(s: Spec, run: RunDir) -> AnalysisResult:
    model = s.model.load()  # once: a trajectory's checkpoint is checksummed on every load
    res = run.stage("study", lambda: _study(s, run, model), collective=True)  # torchrun: captures split
    methods = method_stages(model, s, run)
    real_lm = glance(s.real_lm, run)
    rows = res["table"]
    split = res["split_layers"]
    margins = floor_margins(methods["floor"], {r["scored"]: r for r in rows if r["scored"] in res["probe_sites"]})
    above = [x for x in split if x in above_floor(margins)]
    task = quirky_task(s.data.task)
    meaning = {k: SUBSETS[k].meaning for k in PROBE_STUDY_SETS} | {"BH_control": task.control}
    subsets = [{"subset": k, "statements": res["sizes"].get(k, ""), "meaning": meaning[k]} for k in PROBE_STUDY_SETS]
    view = {
        "spec": s.model.label(res["model_card"]),
        "target": TARGET,
        "task": {"name": task.name, "story": task.story, "control": task.control},
        "scored_sets": list(PROBE_STUDY_SETS),
        "auroc": rows,
        "probe_sites": res["probe_sites"],
        "output": res["output"],
        "accuracy": res["accuracy"],
        "split_layers": split,
        "random_floor": margins,
        "split_above_floor": above,
        "positive_control": _positive_control(res["model_card"]),
        "subsets": subsets,
        "fingerprint": res["provenance"]["model"],
        "timings": res["provenance"]["timings"],
        "model_card": res["model_card"],
        "config_path": str(run.path / "config.toml"),
        "methods": {k: v for k, v in methods.items() if k != "scores"} | {"sites": methods["scores"].sites},
        "real_lm": real_lm,
    }
    return AnalysisResult(
        metrics={
            "auroc": rows,
            "accuracy": res["accuracy"],
            "split_layers": split,
            "sizes": res["sizes"],
            **{k: methods[k] for k in ("eil", "pgr", "anomaly", "features", "causal", "rigor", "positions")},
            "real_lm": real_lm,
            "random_floor": margins,
            "split_above_floor": above,
        },
        tables={
            "auroc_by_layer": rows,
            "transfer_auroc": methods["auroc"],
            "pgr": methods["pgr"],
            "anomaly": methods["anomaly"],
            "distractor": methods["rigor"]["distractor"],
            "interventions": methods["causal"]["rows"],
            "random_floor": margins,
        },
        provenance={
            "model_spec": s.model.spec,
            **({"trajectory": s.model.trajectory, "checkpoint": s.model.checkpoint} if s.model.trajectory else {}),
            "fingerprints": {k: res["provenance"][k] for k in ("model", "train_data", "test_data")},
            "seeds": {"data": s.data.seed},
            "settings": spec_dict(s),
        },
        view=view,
    )
