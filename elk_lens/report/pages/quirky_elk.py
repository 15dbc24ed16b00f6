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

_CHART_SETS = ("AE", "AH", "BH", "B_disagree", "BH_disagree", "BH_control")


def _positive_control(view: dict) -> str:
    control = view["positive_control"]
    if not control:
        return ""
    return (
        f"<p><b>A positive control, not a finding.</b> <code>{escape(view['spec'])}</code> was fine-tuned from "
        f"the truthful base model with {escape(control['frozen'])} frozen, so every residual up to "
        f"<code>{escape(control['equal_to_base_through'])}</code> equals the truthful base model's. A probe "
        "trained on Alice-easy must read the truth there, on Bob's prompts too: a knowledge/output split up to "
        "that site is built in by the freezing. It checks the pipeline; no ELK method discovered it.</p>"
    )


def _headline(view: dict) -> str:
    split, output, target = view["split_layers"], view["output"], view["target"]
    if not split:
        return (
            "<p><b>No layer shows the knowledge/output split</b> (probe AUROC ≥ 0.90 on Bob-hard disagreements "
            "while the output AUROC vs truth ≤ 0.10).</p>"
        )
    above = view["split_above_floor"]
    control = {r["site"]: r["probe"] for r in view["random_floor"] if r["subset"] == "BH_control"}
    best = max((control[x] for x in split if x in control), default=float("nan"))
    return (
        f"<p><b>Knowledge/output split</b> at {', '.join(escape(x) for x in split)}: a probe trained on "
        f"Alice-easy reads the truth on Bob-hard disagreements (AUROC ≥ 0.90) while the model's own output "
        f"follows Bob (output AUROC vs truth {output[target]:.4f} on the disagreements, "
        f"{output['BH_control']:.4f} on the control subset). Set beside random directions at the same site "
        "and on the same rows, the probe beats their 99th percentile on both subsets at "
        f"{', '.join(escape(x) for x in above) if above else 'none of these sites'}."
        + (
            f" On the control subset the model's own output reads the truth better ({output['BH_control']:.4f}) "
            f"than the probe at any of these sites (at most {best:.4f})."
            if output["BH_control"] > best
            else ""
        )
        + "</p>"
    )


def _floor(view: dict) -> str:
    def margin_colour(column: str, value: object) -> str | None:
        if column != "margin over q99" or not isinstance(value, float):
            return None
        return "good" if value > 0 else "bad"

    return table_html(view["random_floor"], digits=4, highlight=margin_colour) + (
        "<p class='note'>Every site's probe beside the AUROC of 1000 random directions at the same site, on the "
        "same rows: the Bob-hard disagreements and the Bob-hard control subset ("
        + escape(view["task"]["control"])
        + "). Each direction's sign is fixed on the Alice-easy training rows, never on these. Margin = probe − "
        "random q99.</p>"
    )


def _realistic_case(view: dict) -> str:
    control = view["positive_control"]
    if not control:
        return ""
    probe = ", ".join(f"{escape(short_name(k))} {v:.4f}" for k, v in control["realistic_probe"].items())
    output = control["realistic_output"]
    return (
        f"<p>The realistic case is <code>{escape(control['realistic_case'])}</code>: the same quirk with every "
        "parameter fine-tuned. There, probes refitted on Alice-easy follow Bob instead of the truth (AUROC vs "
        f"truth on Bob-hard disagreements by layer, from its card: {probe}"
        f"{f'; output {output:.4f}' if output is not None else ''}).</p>"
    )


def _chart(view: dict) -> str:
    """Probe AUROC by layer on every chart subset, the output, and the random q99 on the two floored subsets
    (a gap at the first site, where the floor is not drawn)."""
    probe_rows = [r for r in view["auroc"] if r["scored"] in view["probe_sites"]]
    target = view["target"]
    q99 = {(r["site"], r["subset"]): r["random q99"] for r in view["random_floor"]}
    floors = {
        f"random q99: {subset}": [q99.get((r["scored"], subset), float("nan")) for r in probe_rows]
        for subset in dict.fromkeys(r["subset"] for r in view["random_floor"])
    }
    return line_chart(
        {name: [r[name] for r in probe_rows] for name in _CHART_SETS}
        | {f"model output: {target}": [view["output"][target]] * len(probe_rows)}
        | floors,
        [short_name(r["scored"]) for r in probe_rows],
        title="Probe AUROC vs truth by layer (logistic regression trained on Alice-easy)",
        y_label="AUROC vs truth",
        dashed=frozenset({f"model output: {target}", *floors}),
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

    split = {
        "sites": view["split_layers"],
        "above_floor": view["split_above_floor"],
        "margins": view["random_floor"],
        "built_in": bool(view["positive_control"]),
    }
    targets = targets_table(view["methods"], split, view["output"][target])
    acc_rows = [{"subset": k, "accuracy": v} for k, v in view["accuracy"].items()]
    summary = _positive_control(view) + _headline(view) + _floor(view) + _realistic_case(view)
    sections = [
        Section("Summary", summary + table_html(targets) + table_html(acc_rows, digits=4)),
        Section(
            "AUROC vs layer",
            _chart(view) + "<p class='note'>Each layer's probe is fitted on Alice-easy statements of the val split "
            "and scored on the test split, which shares no item with it. 0.5 = chance; below 0.5 means the "
            "reading is anti-correlated with the truth (the model's output on disagreements is by design). Dashed "
            "“random q99”: the 99th percentile of 1000 random directions at each site on the same rows (the "
            "summary's floor; not drawn at the first site, a constant there).</p>",
        ),
        Section(
            "All scores",
            table_html(view["auroc"], highlight=cell_colour)
            + "<p class='note'>Rows: the probe at each residual site, the model's own output log-odds, and the "
            "task's model-free surface heuristics (sign fitted on the training rows). Columns: AUROC vs truth on each "
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
        title=f"elk-lens: does {view['spec']} know more than it says?",
        intro=f"<p class='note'>{escape(view['task']['story'])} Does the model represent the truth where its "
        "output follows Bob?</p>",
        sections=sections,
    )
