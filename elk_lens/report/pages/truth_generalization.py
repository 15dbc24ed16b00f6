"""The truth-generalization report: the findings, the layers that hold truth beside the random floor, the
model's own answers, read positions, one matrix per reporter, the datasets and how the model was read.

Draws the view the ``truth_generalization`` analysis returns; every string from a spec or a dataset
(the model spec, dataset names, prompts) is escaped here."""

import json
from html import escape

from elk_lens.report.html import Page, Section, table_html
from elk_lens.report.svg import heatmap, line_chart
from elk_lens.sites import short_name

__all__ = ["render"]

_INTRO = (
    "<p class='note'>Truth datasets in the style of Marks &amp; Tegmark, generated offline. Does a reporter "
    "trained on one dataset read truth on the others — under negation, in conjunctions, on another topic?</p>"
)
_SUMMARY_NOTE = (
    "<p class='note'>Each cell: a reporter trained on the row's train split, scored on the column's test split; "
    "items (a city, a word pair, a number pair) never cross splits. 0.5 = chance; below 0.5 the reading is "
    "anti-correlated with truth. The layer is chosen on the row's own val split (earliest informative layer), "
    "never on a test set.</p>"
)


def render(view: dict) -> Page:
    """The page of one finished run's ``view``."""
    extra = []
    if view["answers"]:
        extra.append(Section("The knowledge/output gap: the probe beside the model's own answer", _gap(view)))
    if view["position_curves"]:
        extra.append(Section("Read positions", _positions(view)))
    sections = [
        Section("Summary", _findings(view["chosen"]) + _SUMMARY_NOTE),
        Section("Which layers hold truth", _layers(view)),
        *extra,
        *(Section(f"Generalization matrix: {m}", _matrix(view, m) + _layer_chart(view, m)) for m in view["methods"]),
        Section("All cells with intervals", table_html(view["chosen"])),
        Section("Datasets", table_html(view["datasets"]) + _rules(view["rules"])),
        Section("Model and reading", _reading(view)),
        Section("Reproduce", f"<pre>elk-lens run {escape(view['config'])}</pre>"),
    ]
    return Page(f"elk-lens: truth generalization in {view['model_spec']}", _INTRO, sections)


def _labels(view: dict) -> list[str]:
    return [short_name(x) for x in view["sites"]]


def _findings(chosen: list[dict]) -> str:
    """What the matrix says, from its intervals: in-distribution reads, transfers, anti-transfers."""
    items = []
    for method in dict.fromkeys(r["method"] for r in chosen):
        rows = [r for r in chosen if r["method"] == method]
        own = [r for r in rows if r["test"] in r["train"].split("+")]
        above = [r for r in rows if r["ci_low"] > 0.5 and r not in own]
        below = [r for r in rows if r["ci_high"] < 0.5]
        best = max(own, key=lambda r: r["auroc"])
        items.append(
            f"<li><b>{escape(method)}</b>: in-distribution AUROC {min(r['auroc'] for r in own):.2f}–"
            f"{max(r['auroc'] for r in own):.2f} (best {escape(best['test'])}, {best['auroc']:.3f}); "
            f"{len(above)} of {len(rows) - len(own)} transfers above chance (95% CI), {len(below)} below it"
            + (
                f" — e.g. {escape(below[0]['train'])} → {escape(below[0]['test'])} {below[0]['auroc']:.3f}"
                if below
                else ""
            )
            + "</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _layers(view: dict) -> str:
    """Which layers hold truth: each dataset's own probe by layer beside the random-direction floor."""
    method, sites = view["layers"]["method"], view["sites"]
    series = dict(view["layers"]["curves"])
    q95 = {}
    for r in view["floor"]:
        q95[r["site"]] = max(q95.get(r["site"], 0.0), r["q0.95"])
    series["random directions (q95, max over datasets)"] = [q95[site] for site in sites]
    chart = line_chart(
        series,
        _labels(view),
        title=f"{method}: in-distribution test AUROC by layer, and the random-direction floor",
        y_label="AUROC vs truth",
    )
    by = {(r["dataset"], r["site"]): r for r in view["floor"]}
    rows = [
        {
            "dataset": r["test"],
            "layer (chosen on val)": short_name(r["site"]),
            "AUROC": r["auroc"],
            "95% CI": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            "random q95 at that layer": by[(r["test"], r["site"])]["q0.95"],
            "best layer on test (for reading only)": short_name(
                sites[max(range(len(sites)), key=lambda i: series[r["test"]][i])]
            ),
            "best test AUROC": max(series[r["test"]]),
        }
        for r in view["chosen"]
        if r["method"] == method and r["train"] == r["test"]
    ]
    return (
        chart + table_html(rows) + "<p class='note'>The random floor: test AUROC of random directions, "
        "each signed on the train split, at the same layer and rows (95th percentile). The 'best layer on "
        "test' column is shown for reading the chart only; no reported number is chosen with it.</p>"
    )


def _gap(view: dict) -> str:
    gap, answers = view["gap"], view["answers"]
    knows = [r["dataset"] for r in gap if r["knows_more"]]
    lead = (
        f"<p><b>The probe reads more than the model says</b> (its 95% interval above every prompt's) on "
        f"{len(knows)} of {len(gap)} datasets: {escape(', '.join(knows)) or 'none'}.</p>"
    )
    detail = [{k: v for k, v in r.items() if k != "prompt_text"} for r in answers]
    texts = "".join(
        f"<li><b>{escape(r['dataset'])} / {escape(r['prompt'])}</b>: <code>{escape(r['prompt_text'])}</code></li>"
        for r in answers
        if r["dataset"] == answers[0]["dataset"]
    )
    return (
        lead
        + table_html(gap)
        + "<h3>The model's own answers</h3>"
        + table_html(detail)
        + "<p class='note'>AUROC of log-odds(true answer) − log-odds(false answer) on the test split; "
        "calibrated accuracy thresholds it at the val split's median (never the test rows'); 'says_true' is "
        "how often the true answer is the likelier one. Few-shot examples are drawn from the train split. "
        f"Prompts (first dataset):</p><ul>{texts}</ul>"
    )


def _positions(view: dict) -> str:
    curves, n = view["position_curves"], len(view["sites"])
    mean = {p: [sum(c[t][i] for t in c) / len(c) for i in range(n)] for p, c in curves.items()}
    rows = [{"dataset": t, **{p: max(c[t]) for p, c in curves.items()}} for t in view["tests"]]
    return (
        line_chart(
            mean,
            _labels(view),
            title="logistic: in-distribution test AUROC by layer, mean over datasets, per read position",
            y_label="AUROC vs truth",
        )
        + "<p>Best layer's test AUROC per position (for comparing positions, not a chosen-layer result):</p>"
        + table_html(rows)
    )


def _matrix(view: dict, method: str) -> str:
    matrix = view["methods"][method]
    chosen = {r["train"]: short_name(r["site"]) for r in view["chosen"] if r["method"] == method}
    labels = [f"{src} @ {chosen[src]}" for src in matrix["sources"]]
    return heatmap(
        matrix["values"],
        labels,
        view["tests"],
        cell=46,
        center=0.5,
        value_range=(0.0, 1.0),
        title=f"{method}: AUROC vs truth (rows: trained on; columns: tested on)",
        scale_label="AUROC",
    )


def _layer_chart(view: dict, method: str) -> str:
    series = view["methods"][method]["transfers"]
    if not series:
        return ""
    return line_chart(series, _labels(view), title=f"{method}: AUROC vs truth by layer", y_label="AUROC vs truth")


def _rules(rules: list[dict]) -> str:
    items = "".join(
        f"<li><b>{escape(r['name'])}</b>: {escape(r['rules'])} <i>e.g.</i> “{escape(r['example'])}”</li>" for r in rules
    )
    return f"<ul>{items}</ul>"


def _reading(view: dict) -> str:
    """Which model, where it was read, and its zoo card (when it has one)."""
    if view["capture_position"] == "answer":
        where = "the last token of the statement followed by " + repr(view["question"])
    else:
        where = "the statement's final period" + (" (the token before [SEP])" if view["position"] == -2 else "")
    card = view["model_card"]
    card_html = (
        f"<p>{escape(card.get('summary', ''))}</p><pre>{escape(json.dumps(card.get('notes', {}), indent=1))}</pre>"
        if card
        else ""
    )
    return (
        f"<p><code>{escape(view['model_spec'])}</code> — fingerprint <code>{escape(view['fingerprint'])}</code>. "
        f"Read at {escape(where)} (position <code>{escape(str(view['position']))}</code>); contrast pairs append "
        f"{escape(repr(view['answers_appended']))}.</p>" + card_html
    )
