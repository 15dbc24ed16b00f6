"""The demo report's glance at a real language model (``elk_lens.analyses.real_lm_glance``): a probe by
layer beside the model's own answers and the random-direction floor, and whether it knows more than it says."""

from html import escape

from elk_lens.report.html import Section, table_html
from elk_lens.report.svg import line_chart
from elk_lens.sites import short_name

__all__ = ["glance_section"]


def glance_section(res: dict) -> Section:
    """The section drawn from the ``real-lm`` stage's result."""
    layers = [short_name(x) for x in res["sites"]]
    n = len(layers)
    series = {"probe (logistic, trained on train)": res["by_layer"], "random directions (q95)": res["floor"]}
    series |= {f"model says ({a['prompt']})": [a["auroc"]] * n for a in res["answers"]}
    dashed = frozenset(k for k in series if k.startswith("model says"))
    chart = line_chart(
        series,
        layers,
        title=f"{res['spec']} on {res['dataset']}: test AUROC vs truth by layer",
        y_label="AUROC vs truth",
        dashed=dashed,
    )
    gap = res["gap"][0]
    says = ", ".join(f"{a['prompt']} {a['auroc']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]" for a in res["answers"])
    lead = (
        f"<p>A probe at {escape(short_name(gap['probe_site']))} (layer chosen on val) reads truth at AUROC "
        f"{gap['probe_auroc']:.3f} [{gap['probe_ci'][0]:.3f}, {gap['probe_ci'][1]:.3f}]; asked, the model "
        f"scores {escape(says)}. "
        + (
            "The probe's interval lies above every prompt's: it knows more than it says."
            if gap["knows_more"]
            else "The intervals overlap: no gap shown on this sample."
        )
        + "</p>"
    )
    rows = [{k: v for k, v in a.items() if k != "prompt_text"} for a in res["answers"]]
    return Section(
        f"A real model: {res['spec']}",
        lead + chart + table_html(rows) + f"<p class='note'>{res['rows']} statements of {escape(res['dataset'])} "
        "(train / val / test by item). Answers: log-odds of ' True' vs ' False' after ' This statement is:'; "
        "few-shot examples from the train split. Full study: <code>elk-lens run analyses/smollm2_truth.toml"
        "</code>.</p>",
    )
