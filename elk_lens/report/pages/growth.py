"""The growth report: the scenario and the growth step, the transported reporter against a refitted one
and the model's output over training (the growth step marked), truth by layer, and a fitted map."""

from html import escape

from elk_lens.growth.result import GrowthResult
from elk_lens.report.html import Page, Section, table_html
from elk_lens.report.svg import line_chart

__all__ = ["render"]

_TRUTH_NOTE = (
    "'small' is the small model before growth; the red line marks the growth step. Transported: the small model's "
    "logistic reporter moved through the growth map (readout as a covector); refitted: fitted anew on Alice-easy "
    "statements at each checkpoint. Cosines: the concept vector (class-mean difference) moved as a vector, and the "
    "logistic readout moved as a covector, each against its refit; refitted readouts of separable classes depend on "
    "the regularizer's basis, so the concept vector is the one to read."
)
_FITTED_NOTE = (
    "An affine map fitted by least squares from the small model's residuals to the final model's, on Alice-easy "
    "statements; the small reporter goes through it and is scored on Bob-hard disagreements. The fit residual is "
    "the share of the target's variation the map does not explain."
)


def render(view: dict) -> Page:
    """The page from the growth analysis's view: its spec, the growth ``op`` and ``train_labels``
    described, the ``growth`` result (a :class:`~elk_lens.growth.GrowthResult`), the final model's
    ``final_accuracy``, the ``task_loss`` stage result, and the CSV ``rows``."""
    spec, g, rows = view["spec"], view["growth"], view["rows"]
    tune, anchor = spec.train.fine_tune, spec.anchor
    scenario = (
        f"{view['op']}; then trained on {view['train_labels']} with {spec.data.digits}-digit operands, "
        f"lr {tune.lr}, {tune.steps} steps, seed {tune.seed}; anchor: {anchor.on}"
    )
    if anchor.on != "none":
        scenario += f" (the transported reporter from {anchor.site}, weight {anchor.weight})"
    setup = table_html(rows["growth_step"]) + table_html(_accuracy(g, view["final_accuracy"], view["task_loss"]))
    return Page(
        title=f"elk-lens: growth, {view['name']}",
        intro="<p class='note'>A reporter fitted on the small truthful model, the model grown and trained on: "
        "does the reporter still read truth?</p>",
        sections=[
            Section("Scenario", f"<p>{escape(scenario)}</p>{setup}"),
            Section("Does the reporter stay truthful?", _charts(anchor.site, g) + _note(_TRUTH_NOTE)),
            Section("Which layers hold truth", table_html(rows["growth_layers"])),
            Section("A map fitted on activations (no exact map)", table_html(rows["fitted_map"]) + _note(_FITTED_NOTE)),
        ],
    )


def _note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>"


def _charts(anchor: str, g: GrowthResult) -> str:
    """AUROC on Bob-hard disagreements (the small model, then every checkpoint) and the transported
    reporter's cosines to its refit, the growth step marked on both."""
    d = g.drift
    steps, first = d.steps, d.methods[0]
    site, small = g.grown_site(anchor), g.step.reporter_auroc(anchor)
    lines = {
        f"transported ({anchor} -> {site})": [small, *g.transported_auroc(anchor)],
        f"refitted at {site}": [small, *d.auroc(first, site, "BH_disagree")],
        "model output": [g.step.small_output_auroc, *d.output_auroc["BH_disagree"]],
    }
    marks = {"0": "grown" + ("" if g.step.exact else " (not preserving)")}
    auroc_title = "AUROC vs truth on Bob-hard disagreements (small model, then the grown one)"
    charts = line_chart(
        lines, ["small", *(str(t) for t in steps)], title=auroc_title, y_label="AUROC vs truth", marks=marks
    )
    cosines = {"concept vector": g.cos_v_to_refit(anchor)}
    cosines |= {f"readout ({m})": g.cos_w_to_refit(anchor, m) for m in d.methods}
    charts += line_chart(
        cosines,
        [str(t) for t in steps],
        title=f"Transported vs refitted at {site}, grown basis",
        y_label="cosine",
        y_range=(-1.0, 1.0),
        reference=0.0,
        marks={"0": "grown"},
    )
    return charts


def _accuracy(g: GrowthResult, final_accuracy: dict, task_loss: dict) -> list[dict]:
    """The small model's and the final model's accuracies and held-out answer losses, one row each."""
    small = g.step.small_accuracy
    rows = [{"measure": f"small model accuracy, {k}", "value": round(v, 4)} for k, v in small.items()]
    rows += [{"measure": f"end accuracy, {k}", "value": round(v, 4)} for k, v in final_accuracy.items()]
    return rows + [{"measure": f"held-out answer loss, {k}", "value": round(v, 5)} for k, v in task_loss.items()]
