"""The drift report: the scenario, the drift curves over fine-tuning steps with their noise floors, the
end-of-training summary and the probe-transfer matrix; and the page of the catalogue across drift runs."""

from html import escape

from elk_lens.drift_result import DriftResult
from elk_lens.report.html import Page, Section, auroc_shade, render_page, table_html
from elk_lens.report.svg import line_chart

__all__ = ["catalogue_html", "render"]

_INTRO = (
    "<p class='note'>A truthful base model is fine-tuned; at every checkpoint reporters are refitted on "
    "Alice-easy statements and scored on Bob-hard disagreements, beside the reporter fitted at step 0.</p>"
)
_FLOOR_NOTE = (
    "<p class='note'>Shaded bands: the noise floor, from the 5% quantile of the same cosine between directions "
    "fitted on two disjoint halves of the step-0 probe set up to 1; drift counts only below it. On the CKA chart "
    "the band runs from 1 down by the 5% quantile of the difference between the final CKA computed on two "
    "disjoint halves of the evaluation rows.</p>"
)
_TRANSFER_NOTE = (
    "<p class='note'>Row: reporter fitted at that step; column: scored on that step's residuals; AUROC vs truth "
    "on Bob-hard disagreements. The diagonal is the refitted reporter.</p>"
)


def render(view: dict) -> Page:
    d, spec = view["drift"], view["spec"]
    first = d.methods[0]
    sections = [
        Section(
            "Scenario",
            f"<p>{escape(_scenario(view))}</p>"
            + table_html(_accuracy_rows(view))
            + f"<p class='note'>Fine-tuning took {escape(str(view['seconds']))} s for {spec.train.fine_tune.steps} "
            "steps.</p>",
        ),
        Section("Drift over steps", _charts(d) + _FLOOR_NOTE),
        Section("At the end", table_html(view["summary"])),
        Section(
            f"Probe transfer ({first}, {view['transfer_site']})",
            table_html(view["transfer"], highlight=_heat) + _TRANSFER_NOTE,
        ),
        Section("Noise floors", table_html(_floor_rows(d))),
    ]
    return Page(f"elk-lens: concept drift, {view['name']}", _INTRO, sections)


def _scenario(view: dict) -> str:
    """The scenario in one line of text (escaped by the caller)."""
    spec = view["spec"]
    tune, anchor = spec.train.fine_tune, spec.anchor
    weight = f" (weight {anchor.weight} at {anchor.site})" if anchor.on != "none" else ""
    return (
        f"labels: {view['labels']}; trained on: {view['objective']}; {spec.data.digits}-digit operands; "
        f"frozen: {', '.join(tune.frozen) or 'nothing'}; lr {tune.lr}; {tune.steps} steps; "
        f"seed {tune.seed}; anchor: {anchor.on}{weight}"
    )


def _accuracy_rows(view: dict) -> list[dict]:
    rows = [{"measure": f"accuracy, {k}", "value": round(v, 4)} for k, v in view["final_accuracy"].items()]
    return rows + [
        {"measure": f"held-out answer loss, {k}", "value": round(v, 5)} for k, v in view["task_loss"].items()
    ]


def _charts(d: DriftResult) -> str:
    """AUROC, concept-vector cosine and CKA against the step, each with its noise floor where it has one."""
    steps, sites, first = [str(x) for x in d.steps], d.sites, d.methods[0]
    charts = line_chart(
        {f"refit {x}": d.auroc(first, x, "BH_disagree") for x in sites}
        | {f"initial {x}": d.auroc(first, x, "BH_disagree", reporter="initial") for x in sites}
        | {"model output": d.output_auroc["BH_disagree"]},
        steps,
        title=f"AUROC vs truth on Bob-hard disagreements ({first}; initial = fitted at step 0)",
        y_label="AUROC vs truth",
        dashed=frozenset(f"initial {x}" for x in sites),
    )
    cos = {f"cos v {x}": d.cos_v_series(x) for x in sites}
    floor_bands = {f"cos v {x}": (d.floor("cos_v", x)["q05"], 1.0) for x in sites}
    charts += line_chart(
        cos,
        steps,
        title="Concept vector (class-mean difference on Alice-easy): cosine to step 0",
        y_label="cosine",
        y_range=(-1.0, 1.0),
        reference=0.0,
        bands=floor_bands,
    )
    # CKA's floor: how far two disjoint halves of the final evaluation rows disagree (5% quantile); a CKA
    # within that distance of 1 is not told apart from no change
    cka_bands = {f"CKA {x}": (1.0 + d.floor("cka_final", x)["q05"], 1.0) for x in sites}
    charts += line_chart(
        {f"CKA {x}": d.cka(x) for x in sites},
        steps,
        title="Linear CKA of Bob-hard-disagreement residuals to step 0",
        y_label="CKA",
        bands=cka_bands,
    )
    return charts


def _floor_rows(d: DriftResult) -> list[dict]:
    rows = [{"metric": f"{kind} {x}", **d.floor(kind, x)} for kind in ("cos_v", "cka_final") for x in d.sites]
    return rows + [{"metric": f"cos_w {m} {x}", **d.floor("cos_w", x, m)} for m in d.methods for x in d.sites]


def _heat(column: str, value: object) -> str | None:
    return None if column == "fitted at step" else auroc_shade(value)


def catalogue_html(rows: list[dict]) -> str:
    """The whole catalogue page: a row per finished drift run (``drift_catalogue.catalogue_rows``)."""
    note = (
        "<p class='note'>AUROC vs truth on Bob-hard disagreements at blocks.3.hook_resid_pre; the step-0 "
        "reporter was fitted on the model before fine-tuning.</p>"
    )
    return render_page("elk-lens: drift runs", note, [Section("Runs", table_html(rows))])
