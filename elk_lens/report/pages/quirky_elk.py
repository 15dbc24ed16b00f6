"""The report of the default analysis (``quirky_elk``): where the quirky model knows the truth while its
output lies, drawn from the analysis's view: the probe study, every reporter method
(:mod:`elk_lens.report.pages.quirky_methods`) and, when configured, a glance at a real LM."""

import json
from html import escape

from elk_lens.report.html import Page, Section, auroc_shade, table_html
from elk_lens.report.pages.quirky_methods import method_sections, targets_table
from elk_lens.report.pages.real_lm_glance import glance_section
from elk_lens.report.svg import line_chart
from elk_lens.sites import short_name

__all__ = ["render"]

_CHART_SETS = ("AE", "AH", "BH", "B_disagree", "BH_disagree")


def _probe_at(view: dict, subset: str) -> dict[str, float]:
    return {r["scored"]: r[subset] for r in view["auroc"] if r["scored"] in view["probe_sites"]}


def _headline(view: dict) -> str:
    split, output = view["split_layers"], view["output"][view["target"]]
    if not split:
        return (
            "<p><b>No layer shows the knowledge/output split</b> (probe AUROC ≥ 0.90 on Bob-hard disagreements "
            "while the output AUROC vs truth ≤ 0.10).</p>"
        )
    return (
        f"<p><b>Knowledge/output split found</b> at {', '.join(escape(x) for x in split)}: a probe trained on "
        f"Alice-easy reads the truth on Bob-hard disagreements (AUROC ≥ 0.90) while the model's own output there "
        f"follows Bob (output AUROC vs truth {output:.3f}).</p>"
    )


def _chart(view: dict) -> str:
    probe_rows = [r for r in view["auroc"] if r["scored"] in view["probe_sites"]]
    target = view["target"]
    return line_chart(
        {name: [r[name] for r in probe_rows] for name in _CHART_SETS}
        | {f"model output: {target}": [view["output"][target]] * len(probe_rows)},
        [short_name(r["scored"]) for r in probe_rows],
        title="Probe AUROC vs truth by layer (logistic regression trained on Alice-easy)",
        y_label="AUROC vs truth",
        dashed=frozenset({f"model output: {target}"}),
    )


def _model(view: dict) -> str:
    card = view["model_card"]
    return f"<p><code>{escape(view['spec'])}</code> — fingerprint <code>{escape(view['fingerprint'])}</code>.</p>" + (
        f"<p>{escape(card.get('summary', ''))}</p><pre>{escape(json.dumps(card.get('recipe', {})))}</pre>"
        if card
        else ""
    )


def render(view: dict) -> Page:
    """The page from ``quirky_elk``'s view."""
    target, scored_sets = view["target"], set(view["scored_sets"])

    def cell_colour(column: str, value: object) -> str | None:
        return auroc_shade(value, bad=0.6) if column in scored_sets else None

    targets = targets_table(view["methods"], view["split_layers"], _probe_at(view, target), view["output"][target])
    acc_rows = [{"subset": k, "accuracy": v} for k, v in view["accuracy"].items()]
    sections = [
        Section("Summary", _headline(view) + table_html(targets) + table_html(acc_rows, digits=4)),
        Section(
            "AUROC vs layer",
            _chart(view) + "<p class='note'>Each layer's probe is fitted on Alice-easy statements of the val split "
            "and scored on the test split, which shares no operand pair with it. 0.5 = chance; below 0.5 means the "
            "reading is anti-correlated with the truth (the model's output on disagreements is by design).</p>",
        ),
        Section(
            "All scores",
            table_html(view["auroc"], highlight=cell_colour)
            + "<p class='note'>Rows: the probe at each residual site, the model's own output log-odds, and surface "
            "heuristics of the shown result c (sign fitted on the training rows). Columns: AUROC vs truth on each "
            "evaluation subset; n/a where a subset has one class only.</p>",
        ),
        *method_sections(view["methods"]),
        *([glance_section(view["real_lm"])] if view["real_lm"] else []),
        Section("Evaluation subsets", table_html(view["subsets"])),
        Section("Model", _model(view)),
        Section(
            "Reproduce",
            f"<pre>elk-lens run {escape(view['config_path'])}</pre><p class='note'>Timings: "
            f"{escape(str(view['timings']))}. Probe fitting uses training rows only; no sign, "
            "threshold or normalization is fitted on evaluation rows.</p>",
        ),
    ]
    return Page(
        title=f"elk-lens: latent knowledge in {view['spec']}",
        intro="<p class='note'>Quirky arithmetic: Alice labels sums by the truth, Bob by a sloppy sum. Does the "
        "model represent the truth where its output follows Bob?</p>",
        sections=sections,
    )
