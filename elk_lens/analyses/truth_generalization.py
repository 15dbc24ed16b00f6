"""Where does a pretrained model hold truth, and does one dataset's truth direction read another's?

Builds the Marks & Tegmark-style datasets offline (:mod:`elk_lens.data.truth_datasets`), captures every
layer's residual at each statement's final period, fits every reporter (LR, mean-difference, CCS, TTPD)
per layer on one dataset's train split, scores it on every dataset's test split, and reports the
generalization matrix at the layer chosen on the training dataset's own val split, beside the
random-direction floor of every layer. On a language model it also asks the model itself (zero-shot,
few-shot, its chat template: :mod:`elk_lens.knowledge_gap`) and compares other read positions.
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
from elk_lens.data.statements import StatementSet
from elk_lens.data.truth_datasets import TRUTH_SETS, truth_set, truth_set_card
from elk_lens.data.truth_facts import source_versions
from elk_lens.generalization import DEFAULT_METHODS, Generalization, generalization_study, random_floor
from elk_lens.knowledge_gap import PROMPTS, gap_rows, model_answers, prompt_for
from elk_lens.models import load_model
from elk_lens.report.html import Section, table_html
from elk_lens.report.rundir import RunDir
from elk_lens.report.svg import heatmap, line_chart
from elk_lens.reporters.registry import METHODS
from elk_lens.sites import short_name

__all__ = ["KEYS", "check_config", "run"]


def _position(value: str | int) -> str | int | None:
    """``"content"`` (the final period; None lets the study pick per model), ``"last"``, ``"answer"``
    (the last token of ``"<statement> This statement is:"``, where a decoder says its answer: read
    ``"last"`` of the statements with the question appended, :func:`_at_answer`), or an int (written
    as a number or as a string)."""
    if value in ("content", "last", "answer"):
        return None if value == "content" else "last"
    return int(value)


def _position_problem(value: str | int) -> str | None:
    try:
        _position(value)
    except ValueError:
        return "must be 'content', 'last', 'answer' or an integer"
    return None


def _positions_problem(values: list) -> str | None:
    return next((f"{v!r} {p}" for v in values if (p := _position_problem(v))), None)


def _prompts_problem(values: list[str]) -> str | None:
    return some_of(PROMPTS, "prompts")(values) if values else None


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
    "probe.positions": Setting([], list[str | int], _positions_problem),  # more read positions, logistic only
    "contrast.answers": Setting([" True", " False"], list[str], _answers_problem),
    "answer.prompts": Setting([], list[str], _prompts_problem),  # ask the model: zero_shot, few_shot, chat
    "answer.question": Setting(" This statement is:", str, None),
    "answer.answers": Setting([" True", " False"], list[str], _answers_problem),
    "answer.chat_answers": Setting(["True", "False"], list[str], _answers_problem),
    "answer.k_shot": Setting(4, int, at_least(2)),
    "answer.batch_size": Setting(32, int, at_least(1)),
    "eval.n_boot": Setting(1000, int, at_least(1)),
    "eval.n_random": Setting(200, int, at_least(1)),  # random directions per layer for the floor
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


def _at_answer(sets: dict[str, StatementSet], question: str) -> dict[str, StatementSet]:
    """The statements with the question appended: read at their last token, where the model answers."""
    return {n: StatementSet([t + question for t in d.texts], d.truth, d.meta, d.name) for n, d in sets.items()}


class _Loaded:
    """The model and the datasets, built once and only if a stage has to run."""

    def __init__(self, s: dict):
        self.s = s
        self._model = self._sets = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.s["model.spec"])
        return self._model

    def sets(self, position: str | int = "content") -> dict[str, StatementSet]:
        if self._sets is None:
            self._sets = _sets(self.s)
        return _at_answer(self._sets, self.s["answer.question"]) if position == "answer" else self._sets


def _study(s: dict, run: RunDir, loaded: _Loaded) -> tuple[Generalization, list[dict]]:
    """One stage per method (a killed run redoes only the method it was in; activations stay cached)."""
    position = s["capture.position"]

    def one(method: str) -> dict:
        return generalization_study(
            loaded.model, loaded.sets(position), methods=[method], position=_position(position),
            answers=tuple(s["contrast.answers"]), batch_size=s["capture.batch_size"], cache_dir=run.path / "cache",
            n_boot=s["eval.n_boot"], seed=s["data.seed"],
        ).__dict__  # fmt: skip

    parts = [run.stage(f"study-{m}", lambda m=m: one(m)) for m in s["probe.methods"]]
    cards = run.stage("datasets", lambda: {"cards": [truth_set_card(n, seed=s["data.seed"], statements=d)
                                                     for n, d in loaded.sets().items()]})["cards"]  # fmt: skip
    merged = {**parts[0], "per_site": [r for p in parts for r in p["per_site"]],
              "chosen": [r for p in parts for r in p["chosen"]]}  # fmt: skip
    return Generalization(**merged), cards


def _floor(s: dict, run: RunDir, loaded: _Loaded) -> list[dict]:
    position = s["capture.position"]
    return run.stage("floor", lambda: {"rows": random_floor(
        loaded.model, loaded.sets(position), position=_position(position), batch_size=s["capture.batch_size"],
        cache_dir=run.path / "cache", n_directions=s["eval.n_random"], seed=s["data.seed"])})["rows"]  # fmt: skip


def _other_positions(s: dict, run: RunDir, loaded: _Loaded) -> dict[str, Generalization]:
    """The logistic probe read at each of ``probe.positions`` (its own stage each)."""

    def one(position: str | int) -> dict:
        return generalization_study(
            loaded.model, loaded.sets(position), methods=["logistic"], position=_position(position),
            batch_size=s["capture.batch_size"], cache_dir=run.path / "cache", n_boot=s["eval.n_boot"],
            seed=s["data.seed"],
        ).__dict__  # fmt: skip

    return {str(p): Generalization(**run.stage(f"position-{p}", lambda p=p: one(p))) for p in s["probe.positions"]}


def _answers(s: dict, run: RunDir, loaded: _Loaded) -> list[dict]:
    """The model's own answers, one stage per prompt."""

    def one(kind: str) -> dict:
        sets = loaded.sets()
        prompts = {n: {kind: prompt_for(kind, loaded.model, d, k_shot=s["answer.k_shot"], seed=s["data.seed"],
                                        question=s["answer.question"], answers=tuple(s["answer.answers"]),
                                        chat_answers=tuple(s["answer.chat_answers"]))}
                   for n, d in sets.items()}  # fmt: skip
        return {"rows": model_answers(loaded.model, sets, prompts, batch_size=s["answer.batch_size"],
                                      n_boot=s["eval.n_boot"], seed=s["data.seed"])}  # fmt: skip

    return [r for kind in s["answer.prompts"] for r in run.stage(f"answers-{kind}", lambda k=kind: one(k))["rows"]]


def _matrix_section(g: Generalization, method: str) -> str:
    sources, values = g.matrix(method)
    chosen = {r["train"]: short_name(r["site"]) for r in g.chosen if r["method"] == method}
    labels = [f"{src} @ {chosen[src]}" for src in sources]
    return heatmap(values, labels, g.tests, title=f"{method}: AUROC vs truth (rows: trained on; columns: tested on)",
                   cell=46, center=0.5, value_range=(0.0, 1.0), scale_label="AUROC")  # fmt: skip


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


def _own(g: Generalization, method: str) -> dict[str, list[float]]:
    """In-distribution AUROC by layer (trained and tested on the same dataset) of ``method``, per dataset."""
    return {t: g.by_layer(method, t, t) for t in g.tests if any(r["train"] == t for r in g.chosen
                                                                  if r["method"] == method)}  # fmt: skip


def _layers_section(g: Generalization, floor: list[dict]) -> str:
    """Which layers hold truth: each dataset's own probe by layer beside the random-direction floor."""
    method = "logistic" if any(r["method"] == "logistic" for r in g.chosen) else g.chosen[0]["method"]
    series = _own(g, method)
    q95 = {}
    for r in floor:
        q95[r["site"]] = max(q95.get(r["site"], 0.0), r["q0.95"])
    series["random directions (q95, max over datasets)"] = [q95[site] for site in g.sites]
    chart = line_chart(series, [short_name(x) for x in g.sites], title=f"{method}: in-distribution test AUROC by "
                       "layer, and the random-direction floor", y_label="AUROC vs truth")  # fmt: skip
    by = {(r["dataset"], r["site"]): r for r in floor}
    rows = [{"dataset": r["test"], "layer (chosen on val)": short_name(r["site"]), "AUROC": r["auroc"],
             "95% CI": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
             "random q95 at that layer": by[(r["test"], r["site"])]["q0.95"],
             "best layer on test (for reading only)": short_name(g.sites[max(range(len(g.sites)),
                                                                             key=lambda i: series[r["test"]][i])]),
             "best test AUROC": max(series[r["test"]])}
            for r in g.chosen if r["method"] == method and r["train"] == r["test"]]  # fmt: skip
    return (chart + table_html(rows) + "<p class='note'>The random floor: test AUROC of random directions, "
            "each signed on the train split, at the same layer and rows (95th percentile). The 'best layer on "
            "test' column is shown for reading the chart only; no reported number is chosen with it.</p>")  # fmt: skip


def _gap_section(gap: list[dict], answers: list[dict]) -> str:
    knows = [r["dataset"] for r in gap if r["knows_more"]]
    lead = (f"<p><b>The probe reads more than the model says</b> (its 95% interval above every prompt's) on "
            f"{len(knows)} of {len(gap)} datasets: {escape(', '.join(knows)) or 'none'}.</p>")  # fmt: skip
    detail = [{k: v for k, v in r.items() if k != "prompt_text"} for r in answers]
    texts = "".join(f"<li><b>{escape(r['dataset'])} / {escape(r['prompt'])}</b>: <code>{escape(r['prompt_text'])}"
                    f"</code></li>" for r in answers if r["dataset"] == answers[0]["dataset"])  # fmt: skip
    return (lead + table_html(gap) + "<h3>The model's own answers</h3>" + table_html(detail)
            + "<p class='note'>AUROC of log-odds(true answer) − log-odds(false answer) on the test split; "
            "calibrated accuracy thresholds it at the val split's median (never the test rows'); 'says_true' is "
            "how often the true answer is the likelier one. Few-shot examples are drawn from the train split. "
            f"Prompts (first dataset):</p><ul>{texts}</ul>")  # fmt: skip


def _positions_section(g: Generalization, others: dict[str, Generalization], where: str) -> str:
    curves = {where: _own(g, "logistic")} if any(r["method"] == "logistic" for r in g.chosen) else {}
    curves.update({p: _own(o, "logistic") for p, o in others.items()})
    mean = {p: [sum(c[t][i] for t in c) / len(c) for i in range(len(g.sites))] for p, c in curves.items()}
    rows = [{"dataset": t, **{p: max(c[t]) for p, c in curves.items()}} for t in g.tests]
    return (line_chart(mean, [short_name(x) for x in g.sites], title="logistic: in-distribution test AUROC by layer, "
                       "mean over datasets, per read position", y_label="AUROC vs truth")
            + "<p>Best layer's test AUROC per position (for comparing positions, not a chosen-layer result):</p>"
            + table_html(rows))  # fmt: skip


def run(cfg: dict, run: RunDir) -> AnalysisResult:
    s = _settings(cfg)
    loaded = _Loaded(s)
    g, cards = _study(s, run, loaded)
    floor = _floor(s, run, loaded)
    others = _other_positions(s, run, loaded)
    answers = _answers(s, run, loaded)
    gap = gap_rows([r for r in g.chosen if r["method"] == "logistic" and r["train"] == r["test"]], answers)
    methods = list(dict.fromkeys(r["method"] for r in g.chosen))
    card_rows = [{"dataset": c["name"], "rows": c["rows"], "true": c["true"], "false": c["false"],
                  "train / val / test": " / ".join(str(c["splits"][k]) for k in ("train", "val", "test")),
                  "template": c["template"],
                  "sources": ", ".join(f"{x['package']} {x['version']} ({x['licence']})" for x in c["sources"])}
                 for c in cards]  # fmt: skip
    rules = "".join(f"<li><b>{escape(c['name'])}</b>: {escape(TRUTH_SETS[c['name']].rules)} "
                    f"<i>e.g.</i> “{escape(c['example'])}”</li>" for c in cards)  # fmt: skip
    position = g.provenance["position"]
    where = ("the last token of the statement followed by " + repr(s["answer.question"])
             if s["capture.position"] == "answer" else "the statement's final period"
             + (" (the token before [SEP])" if position == -2 else ""))  # fmt: skip
    extra = []
    if answers:
        extra.append(Section("The knowledge/output gap: the probe beside the model's own answer",
                             _gap_section(gap, answers)))  # fmt: skip
    if others:
        extra.append(Section("Read positions", _positions_section(g, others, str(s["capture.position"]))))
    sections = [
        Section(
            "Summary",
            _findings(g) + "<p class='note'>Each cell: a reporter trained on the row's train split, "
            "scored on the column's test split; items (a city, a word pair, a number pair) never cross splits. "
            "0.5 = chance; below 0.5 the reading is anti-correlated with truth. The layer is chosen on the "
            "row's own val split (earliest informative layer), never on a test set.</p>",
        ),  # fmt: skip
        Section("Which layers hold truth", _layers_section(g, floor)),
        *extra,
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
        metrics={
            "chosen": g.chosen,
            "per_site": g.per_site,
            "datasets": cards,
            "floor": floor,
            "answers": answers,
            "gap": gap,
            "positions": {p: o.chosen for p, o in others.items()},
        },
        tables={
            "generalization": g.chosen,
            "generalization_per_site": g.per_site,
            "datasets": card_rows,
            "random_floor": floor,
            "model_answers": answers,
            "knowledge_gap": gap,
            **{f"position_{p}": o.per_site for p, o in others.items()},
        },
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
