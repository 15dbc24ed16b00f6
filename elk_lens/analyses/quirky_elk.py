"""The default analysis: where does the quirky model know the truth while its output lies?

Loads a quirky-arithmetic model, captures every layer's residual at the read position, fits a
logistic-regression probe per layer on Alice-easy statements, and scores it (AUROC vs truth) on
Alice-easy, Alice-hard, Bob-hard and Bob disagreements, beside the model's own output and surface
heuristics of the shown result.
"""

from elk_lens.analyses.quirky_methods import method_stages
from elk_lens.analyses.real_lm_glance import SETTINGS as REAL_LM_SETTINGS
from elk_lens.analyses.real_lm_glance import glance
from elk_lens.analyses.result import (
    SEED,
    AnalysisResult,
    Setting,
    at_least,
    in_range,
    model_card,
    model_spec,
    read_settings,
)
from elk_lens.models import load_model
from elk_lens.quirky.probe_study import quirky_probe_study, split_layers
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, SUBSETS, TARGET
from elk_lens.report.rundir import RunDir

__all__ = ["check_config", "run"]

_SETTINGS = {
    "model.spec": Setting("zoo:quirky-arith", str, model_spec),
    "data.train_rows": Setting(8000, int, at_least(1)),
    "data.test_rows": Setting(4000, int, at_least(1)),
    "data.seed": Setting(0, int, SEED),
    "capture.batch_size": Setting(512, int, at_least(1)),
    "probe.C": Setting(1.0, float, in_range(0, None, low_open=True)),  # inverse regularization strength
    "causal.test_rows": Setting(2000, int, at_least(1)),
    "causal.n_random": Setting(8, int, at_least(1)),  # random directions beside each steering direction
    **REAL_LM_SETTINGS,  # a glance at a real LM beside the quirky model (real_lm.spec = "" leaves it out)
}


KEYS = tuple(_SETTINGS)  # every config key this analysis reads (the runner refuses others)


def _settings(cfg: dict) -> dict:
    return read_settings(cfg, _SETTINGS)


def check_config(cfg: dict) -> None:
    """Check every key this analysis reads, for type and range (before any model is loaded)."""
    _settings(cfg)


def _study(cfg: dict, run: RunDir) -> dict:
    s = _settings(cfg)
    model = load_model(s["model.spec"])
    study = quirky_probe_study(
        model,
        train_rows=s["data.train_rows"],
        test_rows=s["data.test_rows"],
        seed=s["data.seed"],
        batch_size=s["capture.batch_size"],
        cache_dir=run.path / "cache",
        C=s["probe.C"],
    )
    return {
        "table": study.table(),
        "probe_sites": [r.name for r in study.probes],
        "output": study.output.auroc,
        "accuracy": study.accuracy,
        "sizes": study.sizes,
        "split_layers": split_layers(study),
        "provenance": study.provenance,
        "model_card": model_card(s["model.spec"]),
    }


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    res = run.stage("study", lambda: _study(cfg, run))
    methods = method_stages(load_model(s["model.spec"]), s, run)
    real_lm = glance(s, run)
    rows = res["table"]
    split = res["split_layers"]
    subsets = [
        {"subset": k, "statements": res["sizes"].get(k, ""), "meaning": SUBSETS[k].meaning} for k in PROBE_STUDY_SETS
    ]
    view = {
        "spec": s["model.spec"],
        "target": TARGET,
        "scored_sets": list(PROBE_STUDY_SETS),
        "auroc": rows,
        "probe_sites": res["probe_sites"],
        "output": res["output"],
        "accuracy": res["accuracy"],
        "split_layers": split,
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
        },
        tables={
            "auroc_by_layer": rows,
            "transfer_auroc": methods["auroc"],
            "pgr": methods["pgr"],
            "anomaly": methods["anomaly"],
            "distractor": methods["rigor"]["distractor"],
            "interventions": methods["causal"]["rows"],
        },
        provenance={
            "model_spec": s["model.spec"],
            "fingerprints": {k: res["provenance"][k] for k in ("model", "train_data", "test_data")},
            "seeds": {"data": s["data.seed"]},
            "settings": s,
        },
        view=view,
    )
