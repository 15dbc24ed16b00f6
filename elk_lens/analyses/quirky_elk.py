"""The default analysis: where does the quirky model know the truth while its output lies?

Loads a quirky-arithmetic model, captures every layer's residual at the read position, fits a
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
from elk_lens.analyses.spec import SEED, AnalysisSpec, at_least, in_range, setting, spec_dict
from elk_lens.models import load_model
from elk_lens.quirky.card import MEASURED_OUTPUT, MEASURED_PROBE
from elk_lens.quirky.floor import above_floor, floor_margins
from elk_lens.quirky.probe_study import quirky_probe_study, split_layers
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, SUBSETS, TARGET
from elk_lens.report.rundir import RunDir

__all__ = ["Spec", "check", "run"]


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: the quirky model read."""

    spec: str = setting("zoo:quirky-arith", model_spec)


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: base rows of the val split (probes train on their Alice-easy part) and the test split."""

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
    """``[causal]``: steering and erasure test rows, and random directions beside each steering direction."""

    test_rows: int = setting(2000, at_least(1))
    n_random: int = setting(8, at_least(1))


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
    """Nothing beyond the keys' own checks: the quirky model's sites are every residual."""


def _study(s: Spec, run: RunDir) -> dict:
    model = load_model(s.model.spec)
    study = quirky_probe_study(
        model,
        train_rows=s.data.train_rows,
        test_rows=s.data.test_rows,
        seed=s.data.seed,
        batch_size=s.capture.batch_size,
        cache_dir=run.path / "cache",
        C=s.probe.C,
    )
    return {
        "table": study.table(),
        "probe_sites": [r.name for r in study.probes],
        "output": study.output.auroc,
        "accuracy": study.accuracy,
        "sizes": study.sizes,
        "split_layers": split_layers(study),
        "provenance": study.provenance,
        "model_card": model_card(s.model.spec),
    }


def _positive_control(spec: str) -> dict | None:
    """The card's note that the model's split is built in (``None`` if it has none), with the measured
    probes and output of the realistic case the note names, from that model's card."""
    control = model_card(spec).get("positive_control")
    if not control:
        return None
    measured = model_card(control["realistic_case"]).get("measured", {})
    return control | {
        "realistic_probe": measured.get(MEASURED_PROBE, {}),
        "realistic_output": measured.get(MEASURED_OUTPUT),
    }


def run(s: Spec, run: RunDir) -> AnalysisResult:
    res = run.stage("study", lambda: _study(s, run))
    methods = method_stages(load_model(s.model.spec), s, run)
    real_lm = glance(s.real_lm, run)
    rows = res["table"]
    split = res["split_layers"]
    margins = floor_margins(methods["floor"], {r["scored"]: r for r in rows if r["scored"] in res["probe_sites"]})
    above = [x for x in split if x in above_floor(margins)]
    subsets = [
        {"subset": k, "statements": res["sizes"].get(k, ""), "meaning": SUBSETS[k].meaning} for k in PROBE_STUDY_SETS
    ]
    view = {
        "spec": s.model.spec,
        "target": TARGET,
        "scored_sets": list(PROBE_STUDY_SETS),
        "auroc": rows,
        "probe_sites": res["probe_sites"],
        "output": res["output"],
        "accuracy": res["accuracy"],
        "split_layers": split,
        "random_floor": margins,
        "split_above_floor": above,
        "positive_control": _positive_control(s.model.spec),
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
            "fingerprints": {k: res["provenance"][k] for k in ("model", "train_data", "test_data")},
            "seeds": {"data": s.data.seed},
            "settings": spec_dict(s),
        },
        view=view,
    )
