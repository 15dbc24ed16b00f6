"""The circuits report: the smallest faithful circuit at every checkpoint, its drift against the noise
floor, per-component scores as heatmaps, and the top heads' attention drawn with circuitsvis offline."""

from html import escape

import torch

from elk_lens.circuits import CircuitTrajectory, layer_grid
from elk_lens.report.attention_vis import attention_heads_html, circuitsvis_script
from elk_lens.report.html import Page, Section, table_html
from elk_lens.report.svg import heatmap, line_chart

__all__ = ["render"]


def render(view: dict) -> Page:
    """The page from the circuits analysis's view: its ``spec``, the ``circuits`` result (a
    :class:`~elk_lens.circuits.CircuitTrajectory`) and the ``attention`` stage's, the checkpoint labels
    ``x``, the table ``rows``, and where the trajectory came from."""
    spec, scored, attention, x = view["spec"], view["circuits"], view["attention"], view["x"]
    c = spec.circuits
    source = view["trained_from"] or f"fine-tuned here: {view['train_labels']}, {spec.train.fine_tune.steps} steps"
    setup = (
        f"<p>{escape(str(source))}. Reporter: logistic, refitted at every checkpoint on Alice-easy statements at "
        f"{escape(scored.site_name)}. Pairs: {scored.pairs} twins said by {escape(c.character)}, "
        f"e.g. {escape(scored.example[0])} vs {escape(scored.example[1])}. Ablation outside the circuit: "
        f"{escape(c.ablation)}; target F &ge; {c.target}.</p>"
    )
    return Page(
        title=f"elk-lens: circuits, {view['name']}",
        intro="<p class='note'>Which heads and MLPs write the truth reporter's score, and how that moves.</p>",
        sections=[
            Section("Setup", setup),
            Section("The smallest faithful circuit at every checkpoint", table_html(view["rows"])),
            Section("Circuit drift", _drift(scored, x)),
            Section("Which components write the truth score", _scores(scored, x)),
            Section("Attention of the top heads", _attention(attention)),
        ],
    )


def _drift(scored: CircuitTrajectory, x: list[str]) -> str:
    """The drift series, with the band from the noise floor up to 1 and the growth steps marked."""
    floor = scored.floor
    lines = {
        "Jaccard to the previous": scored.similarity("jaccard", to="prev"),
        "Jaccard to the first": scored.similarity("jaccard"),
        "weighted Jaccard to the first": scored.similarity("weighted_jaccard"),
        "EWMA change": scored.change_rate,
    }
    bands = {
        "Jaccard to the first": (floor.jaccard, 1.0),
        "weighted Jaccard to the first": (floor.weighted_jaccard, 1.0),
    }
    marks = {x[i]: "grown" for i in scored.grown_at}
    chart = line_chart(
        lines, x, title="Circuit drift (node sets at the faithfulness target)", y_label="", bands=bands, marks=marks
    )
    floor_text = (
        f"Noise floor at step {scored.steps[0]} (two disjoint halves of the pairs): Jaccard "
        f"{floor.jaccard:.3f}, weighted Jaccard {floor.weighted_jaccard:.3f}, edit distance "
        f"{floor.edit_distance} (halves: {floor.halves[0]} vs {floor.halves[1]})."
    )
    return chart + f"<p class='note'>{escape(floor_text)} Shaded: from the floor up to 1; a drop below it is drift.</p>"


def _scores(scored: CircuitTrajectory, x: list[str]) -> str:
    """Exact scores as layer-by-head grids at the first, middle and last checkpoint, then every component
    over all checkpoints (as shares of the gap, in the last checkpoint's names)."""
    grids = ""
    for i in sorted({0, len(scored.at) // 2, scored.end}):
        values, row_labels, col_labels = layer_grid(scored.at[i].exact)
        grids += heatmap(values, row_labels, col_labels, title=f"exact patching score, step {x[i]}")
    names = scored.final_components
    over = heatmap(
        [scored.share_series(n) for n in names],
        names,
        x,
        title="exact patching score / M_diff per component over checkpoints (last checkpoint's names)",
    )
    return (
        grids
        + over
        + (
            "<p class='note'>Exact patching: the change of the reporter's score when one component's "
            "output is replaced by its output on the twin (mean over pairs).</p>"
        )
    )


def _attention(attention: dict) -> str:
    """The circuitsvis bundle once, then one figure per checkpoint drawn."""
    figures = "".join(
        f"<h3>step {escape(step)}</h3>" + attention_heads_html(torch.tensor(p), attention["tokens"], attention["heads"])
        for step, p in attention["patterns"].items()
    )
    return (
        circuitsvis_script()
        + figures
        + (
            f"<p class='note'>Heads with the largest |score| at the last "
            f"checkpoint, on {escape(attention['text'])}.</p>"
        )
    )
