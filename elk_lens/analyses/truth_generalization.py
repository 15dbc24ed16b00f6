"""Where does a pretrained model hold truth, and does one dataset's truth direction read another's?

Builds the Marks & Tegmark-style datasets offline (:mod:`elk_lens.data.truth_datasets`), captures every
layer's residual at each statement's final period, fits every reporter (LR, mean-difference, CCS, TTPD)
per layer on one dataset's train split, scores it on every dataset's test split, and reports the
generalization matrix at the layer chosen on the training dataset's own val split.
"""

import json
from html import escape

from elk_lens.analyses.result import (
    SEED,
    AnalysisResult,
    Setting,
    at_least,
    model_card,
    model_spec,
    read_settings,
    some_of,
)
from elk_lens.data.truth_datasets import TRUTH_SETS, truth_set, truth_set_card
from elk_lens.data.truth_facts import source_versions
from elk_lens.generalization import DEFAULT_METHODS, Generalization, generalization_study
from elk_lens.models import load_model
from elk_lens.report.html import Section, table_html
from elk_lens.report.rundir import RunDir
from elk_lens.report.svg import heatmap, line_chart
from elk_lens.reporters.registry import METHODS
from elk_lens.sites import short_name

__all__ = ["KEYS", "check_config", "run"]


def _position(value: str | int) -> str | int | None:
    """``"content"`` (the final period; None lets the study pick per model), ``"last"``, or an int
    (written as a number or as a string)."""
    if value in ("content", "last"):
        return None if value == "content" else "last"
    return int(value)


def _position_problem(value: str | int) -> str | None:
    try:
        _position(value)
    except ValueError:
        return "must be 'content', 'last' or an integer"
    return None


def _answers_problem(answers: list[str]) -> str | None:
    if len(answers) != 2 or answers[0] == answers[1] or not all(answers):
        return "must be two different strings, neither empty"
    return None


_SETTINGS = {
    "model.spec": Setting("zoo:minilm", str, model_spec),
    "data.sets": Setting(list(TRUTH_SETS), list[str], some_of(TRUTH_SETS, "datasets")),
    "data.seed": Setting(0, int, SEED),
    "data.max_rows": Setting(0, int, at_least(0)),  # 0 = every row
    "capture.batch_size": Setting(128, int, at_least(1)),
    "capture.position": Setting("content", str | int, _position_problem),
    "probe.methods": Setting(list(DEFAULT_METHODS), list[str], some_of(METHODS, "methods")),
    "contrast.answers": Setting([" True", " False"], list[str], _answers_problem),
    "eval.n_boot": Setting(1000, int, at_least(1)),
}
KEYS = tuple(_SETTINGS)  # every config key this analysis reads (the runner refuses others)
# the transfers GoT and TIU single out, drawn per layer where both sets are present
_KEY_TRANSFERS = (("cities", "cities"), ("cities", "neg_cities"), ("neg_cities", "cities"),
                  ("cities", "cities_conj"), ("cities", "cities_disj"), ("sp_en_trans", "neg_sp_en_trans"),
                  ("larger_than", "smaller_than"), ("cities", "sp_en_trans"))  # fmt: skip


def _settings(cfg: dict) -> dict:
    return read_settings(cfg, _SETTINGS)


def check_config(cfg: dict) -> None:
    """Refuse bad values (unknown datasets, methods or answers, ...) and a missing data package, before any
    model is loaded."""
    s = _settings(cfg)
    polar = [m for m in s["probe.methods"] if METHODS[m].needs_polarity]
    if polar and not any(f"neg_{n}" in s["data.sets"] for n in s["data.sets"]):
        raise ValueError(f"config key 'probe.methods': {polar} need a dataset and its negation in 'data.sets' "
                         f"(e.g. 'cities' and 'neg_cities'); got {s['data.sets']}")  # fmt: skip
    source_versions(tuple(dict.fromkeys(p for n in s["data.sets"] for p in TRUTH_SETS[n].sources)))


def _sets(s: dict) -> dict:
    sets = {n: truth_set(n, seed=s["data.seed"]) for n in s["data.sets"]}
    if s["data.max_rows"]:
        sets = {n: d.sample(s["data.max_rows"], seed=s["data.seed"]) for n, d in sets.items()}
    return sets


def _study(s: dict, run: RunDir) -> tuple[Generalization, list[dict]]:
    """One stage per method (a killed run redoes only the method it was in; activations stay cached)."""
    loaded: dict = {}

    def sets() -> dict:  # built once, only if a stage has to run
        if "sets" not in loaded:
            loaded["sets"] = _sets(s)
        return loaded["sets"]

    def one(method: str) -> dict:
        if "model" not in loaded:
            loaded["model"] = load_model(s["model.spec"])
        return generalization_study(
            loaded["model"], sets(), methods=[method], position=_position(s["capture.position"]),
            answers=tuple(s["contrast.answers"]), batch_size=s["capture.batch_size"], cache_dir=run.path / "cache",
            n_boot=s["eval.n_boot"], seed=s["data.seed"],
        ).__dict__  # fmt: skip

    parts = [run.stage(f"study-{m}", lambda m=m: one(m)) for m in s["probe.methods"]]
    cards = run.stage("datasets", lambda: {"cards": [truth_set_card(n, seed=s["data.seed"], statements=d)
                                                     for n, d in sets().items()]})["cards"]  # fmt: skip
    merged = {**parts[0], "per_site": [r for p in parts for r in p["per_site"]],
              "chosen": [r for p in parts for r in p["chosen"]]}  # fmt: skip
    return Generalization(**merged), cards


def _matrix_section(g: Generalization, method: str) -> str:
    sources, values = g.matrix(method)
    chosen = {r["train"]: short_name(r["site"]) for r in g.chosen if r["method"] == method}
    labels = [f"{src} @ {chosen[src]}" for src in sources]
    return heatmap(values, labels, g.tests, title=f"{method}: AUROC vs truth (rows: trained on; columns: tested on)",
                   cell=46, center=0.5)  # fmt: skip


def _layer_chart(g: Generalization, method: str) -> str:
    sources = list(dict.fromkeys(r["train"] for r in g.chosen if r["method"] == method))
    series = {}
    for train, test in _KEY_TRANSFERS:
        source = next((src for src in sources if train in src.split("+")), None)  # TTPD trains on a topic pair
        if source is not None and test in g.tests and f"{source} → {test}" not in series:
            series[f"{source} → {test}"] = g.by_layer(method, source, test)
    if not series:
        return ""
    return line_chart(series, [short_name(x) for x in g.sites], title=f"{method}: AUROC vs truth by layer",
                      y_label="AUROC vs truth")  # fmt: skip


def _findings(g: Generalization) -> str:
    """What the matrix says, from its intervals: in-distribution reads, transfers, anti-transfers."""
    items = []
    for method in dict.fromkeys(r["method"] for r in g.chosen):
        rows = [r for r in g.chosen if r["method"] == method]
        own = [r for r in rows if r["test"] in r["train"].split("+")]
        above = [r for r in rows if r["ci_low"] > 0.5 and r not in own]
        below = [r for r in rows if r["ci_high"] < 0.5]
        best = max(own, key=lambda r: r["auroc"])
        items.append(
            f"<li><b>{escape(method)}</b>: in-distribution AUROC {min(r['auroc'] for r in own):.2f}–"
            f"{max(r['auroc'] for r in own):.2f} (best {escape(best['test'])}, {best['auroc']:.3f}); "
            f"{len(above)} of {len(rows) - len(own)} transfers above chance (95% CI), {len(below)} below it"
            + (f" — e.g. {escape(below[0]['train'])} → {escape(below[0]['test'])} {below[0]['auroc']:.3f}"
               if below else "")
            + "</li>"
        )  # fmt: skip
    return f"<ul>{''.join(items)}</ul>"


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    g, cards = _study(s, run)
    methods = list(dict.fromkeys(r["method"] for r in g.chosen))
    card_rows = [{"dataset": c["name"], "rows": c["rows"], "true": c["true"], "false": c["false"],
                  "train / val / test": " / ".join(str(c["splits"][k]) for k in ("train", "val", "test")),
                  "template": c["template"],
                  "sources": ", ".join(f"{x['package']} {x['version']} ({x['licence']})" for x in c["sources"])}
                 for c in cards]  # fmt: skip
    rules = "".join(f"<li><b>{escape(c['name'])}</b>: {escape(TRUTH_SETS[c['name']].rules)} "
                    f"<i>e.g.</i> “{escape(c['example'])}”</li>" for c in cards)  # fmt: skip
    position = g.provenance["position"]
    where = "the statement's final period" + (" (the token before [SEP])" if position == -2 else "")
    sections = [
        Section(
            "Summary",
            _findings(g) + "<p class='note'>Each cell: a reporter trained on the row's train split, "
            "scored on the column's test split; items (a city, a word pair, a number pair) never cross splits. "
            "0.5 = chance; below 0.5 the reading is anti-correlated with truth. The layer is chosen on the "
            "row's own val split (earliest informative layer), never on a test set.</p>",
        ),  # fmt: skip
        *(Section(f"Generalization matrix: {m}", _matrix_section(g, m) + _layer_chart(g, m)) for m in methods),
        Section("All cells with intervals", table_html(g.chosen)),
        Section("Datasets", table_html(card_rows) + f"<ul>{rules}</ul>"),
        Section(
            "Model and reading",
            f"<p><code>{escape(s['model.spec'])}</code> — fingerprint <code>{g.provenance['model']}</code>. "
            f"Read at {escape(where)} (position <code>{escape(str(position))}</code>); contrast pairs append "
            f"{escape(repr(g.provenance['answers']))}.</p>" + _card_html(s["model.spec"]),
        ),
        Section("Reproduce", f"<pre>elk-lens run {escape(str(run.path / 'config.toml'))}</pre>"),
    ]
    return AnalysisResult(
        title=f"elk-lens: truth generalization in {s['model.spec']}",
        intro="<p class='note'>Truth datasets in the style of Marks &amp; Tegmark, generated offline. Does a "
        "reporter trained on one dataset read truth on the others — under negation, in conjunctions, on "
        "another topic?</p>",
        sections=sections,
        metrics={"chosen": g.chosen, "per_site": g.per_site, "datasets": cards},
        tables={"generalization": g.chosen, "generalization_per_site": g.per_site, "datasets": card_rows},
        provenance={
            "model_spec": s["model.spec"],
            "fingerprints": {"model": g.provenance["model"], "data": g.provenance["data"]},
            "seeds": {"data": s["data.seed"]},
            "settings": s,
        },  # fmt: skip
    )


def _card_html(spec: str) -> str:
    card = model_card(spec)
    return (
        f"<p>{escape(card.get('summary', ''))}</p><pre>{escape(json.dumps(card.get('notes', {}), indent=1))}</pre>"
        if card
        else ""
    )
