"""The default analysis: where does the quirky model know the truth while its output lies?

Loads a quirky-arithmetic model, captures every layer's residual at the read position, fits a
logistic-regression probe per layer on Alice-easy statements, and scores it (AUROC vs truth) on
Alice-easy, Alice-hard, Bob-hard and Bob disagreements, beside the model's own output and surface
heuristics of the shown result.
"""

import json
from html import escape

from elk_lens.analyses.quirky_methods import method_sections, method_stages, targets_table
from elk_lens.analyses.real_lm_glance import SETTINGS as REAL_LM_SETTINGS
from elk_lens.analyses.real_lm_glance import glance, glance_section
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
from elk_lens.report.html import Section, table_html
from elk_lens.report.rundir import RunDir
from elk_lens.report.svg import line_chart
from elk_lens.sites import short_name

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
_CHART_SETS = ("AE", "AH", "BH", "B_disagree", "BH_disagree")


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


def _cell_colour(column: str, value: object) -> str | None:
    if column not in PROBE_STUDY_SETS or not isinstance(value, float) or value != value:
        return None
    return "good" if value >= 0.9 else "bad" if value <= 0.6 else None


def _probe_at(res: dict, subset: str) -> dict[str, float]:
    return {r["scored"]: r[subset] for r in res["table"] if r["scored"] in res["probe_sites"]}


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    res = run.stage("study", lambda: _study(cfg, run))
    methods = method_stages(load_model(s["model.spec"]), s, run)
    real_lm = glance(s, run)
    rows = res["table"]
    probe_rows = [r for r in rows if r["scored"] in res["probe_sites"]]
    layers = [short_name(r["scored"]) for r in probe_rows]
    chart = line_chart(
        {name: [r[name] for r in probe_rows] for name in _CHART_SETS}
        | {f"model output: {name}": [res["output"][name]] * len(probe_rows) for name in (TARGET,)},
        layers,
        title="Probe AUROC vs truth by layer (logistic regression trained on Alice-easy)",
        y_label="AUROC vs truth",
        dashed=frozenset({f"model output: {TARGET}"}),
    )
    split = res["split_layers"]
    headline = (
        f"<p><b>Knowledge/output split found</b> at {', '.join(escape(x) for x in split)}: a probe trained on "
        f"Alice-easy reads the truth on Bob-hard disagreements (AUROC ≥ 0.90) while the model's own output there "
        f"follows Bob (output AUROC vs truth {res['output'][TARGET]:.3f}).</p>"
        if split
        else "<p><b>No layer shows the knowledge/output split</b> (probe AUROC ≥ 0.90 on Bob-hard disagreements "
        "while the output AUROC vs truth ≤ 0.10).</p>"
    )
    acc_rows = [{"subset": k, "accuracy": v} for k, v in res["accuracy"].items()]
    subsets = [
        {"subset": k, "statements": res["sizes"].get(k, ""), "meaning": SUBSETS[k].meaning} for k in PROBE_STUDY_SETS
    ]
    card = res["model_card"]
    sections = [
        Section(
            "Summary",
            headline
            + table_html(targets_table(methods, split, _probe_at(res, TARGET), res["output"][TARGET]))
            + table_html(acc_rows, digits=4),
        ),
        Section(
            "AUROC vs layer",
            chart + "<p class='note'>Each layer's probe is fitted on Alice-easy statements of the val split and "
            "scored on the test split, which shares no operand pair with it. 0.5 = chance; below 0.5 means the "
            "reading is anti-correlated with the truth (the model's output on disagreements is by design).</p>",
        ),
        Section(
            "All scores",
            table_html(rows, highlight=_cell_colour)
            + "<p class='note'>Rows: the probe at each residual site, the model's own output log-odds, and surface "
            "heuristics of the shown result c (sign fitted on the training rows). Columns: AUROC vs truth on each "
            "evaluation subset; n/a where a subset has one class only.</p>",
        ),
        *method_sections(methods),
        *([glance_section(real_lm)] if real_lm else []),
        Section("Evaluation subsets", table_html(subsets)),
        Section(
            "Model",
            f"<p><code>{escape(s['model.spec'])}</code> — fingerprint <code>{res['provenance']['model']}</code>.</p>"
            + (
                f"<p>{escape(card.get('summary', ''))}</p><pre>{escape(json.dumps(card.get('recipe', {})))}</pre>"
                if card
                else ""
            ),
        ),
        Section(
            "Reproduce",
            f"<pre>elk-lens run {escape(str(run.path / 'config.toml'))}</pre><p class='note'>Timings: "
            f"{escape(str(res['provenance']['timings']))}. Probe fitting uses training rows only; no sign, "
            "threshold or normalization is fitted on evaluation rows.</p>",
        ),
    ]
    return AnalysisResult(
        title=f"elk-lens: latent knowledge in {s['model.spec']}",
        intro="<p class='note'>Quirky arithmetic: Alice labels sums by the truth, Bob by a sloppy sum. Does the "
        "model represent the truth where its output follows Bob?</p>",
        sections=sections,
        metrics={
            "auroc": rows,
            "accuracy": res["accuracy"],
            "split_layers": split,
            "sizes": res["sizes"],
            **{k: methods[k] for k in ("eil", "pgr", "anomaly", "features", "causal", "rigor", "positions")},
            "real_lm": real_lm,
        },  # fmt: skip
        tables={
            "auroc_by_layer": rows,
            "transfer_auroc": methods["auroc"],
            "pgr": methods["pgr"],
            "anomaly": methods["anomaly"],
            "distractor": methods["rigor"]["distractor"],
            "interventions": methods["causal"]["rows"],
        },  # fmt: skip
        provenance={
            "model_spec": s["model.spec"],
            "fingerprints": {k: res["provenance"][k] for k in ("model", "train_data", "test_data")},
            "seeds": {"data": s["data.seed"]},
            "settings": s,
        },
    )
