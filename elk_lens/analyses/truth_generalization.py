"""Where does a pretrained model hold truth, and does one dataset's truth direction read another's?

Builds the Marks & Tegmark-style datasets offline (:mod:`elk_lens.data.truth_datasets`), captures every
layer's residual at each statement's final period, fits every reporter (LR, mean-difference, CCS, TTPD)
per layer on one dataset's train split, scores it on every dataset's test split, and reports the
generalization matrix at the layer chosen on the training dataset's own val split, beside the
random-direction floor of every layer. On a language model it also asks the model itself (zero-shot,
few-shot, its chat template: :mod:`elk_lens.knowledge_gap`) and compares other read positions.
"""

from dataclasses import dataclass

from elk_lens.analyses.model_checks import model_card, model_spec
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.spec import SEED, AnalysisSpec, at_least, setting, some_of, spec_dict
from elk_lens.data.statements import StatementSet
from elk_lens.data.truth_datasets import TRUTH_SETS, truth_set, truth_set_card
from elk_lens.data.truth_facts import source_versions
from elk_lens.generalization import (
    DEFAULT_METHODS,
    Generalization,
    capture_inputs,
    generalization_study,
    random_floor,
)
from elk_lens.knowledge_gap import PROMPTS, gap_rows, model_answers, prompt_for
from elk_lens.models import load_model
from elk_lens.report.rundir import RunDir
from elk_lens.reporters.registry import METHODS

__all__ = ["Spec", "check", "run"]


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


def _positions_problem(values: tuple) -> str | None:
    return next((f"{v!r} {p}" for v in values if (p := _position_problem(v))), None)


def _prompts_problem(values: tuple[str, ...]) -> str | None:
    return some_of(PROMPTS, "prompts")(values) if values else None


def _answers_problem(answers: tuple[str, ...]) -> str | None:
    if len(answers) != 2 or answers[0] == answers[1] or not all(answers):
        return "must be two different strings, neither empty"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: the model read."""

    spec: str = setting("zoo:minilm", model_spec)


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: the truth datasets (``elk_lens.data.truth_datasets``)."""

    sets: tuple[str, ...] = setting(tuple(TRUTH_SETS), some_of(TRUTH_SETS, "datasets"))
    seed: int = setting(0, SEED)
    max_rows: int = setting(0, at_least(0))  # 0 = every row


@dataclass(frozen=True)
class CaptureSpec:
    """``[capture]``: statements per forward pass and the read position."""

    batch_size: int = setting(128, at_least(1))
    position: str | int = setting("content", _position_problem)


@dataclass(frozen=True)
class ProbeSpec:
    """``[probe]``: the reporters fitted, and more read positions (logistic only)."""

    methods: tuple[str, ...] = setting(tuple(DEFAULT_METHODS), some_of(METHODS, "methods"))
    positions: tuple[str | int, ...] = setting((), _positions_problem)


@dataclass(frozen=True)
class ContrastSpec:
    """``[contrast]``: the answers appended to build contrast pairs (CCS, CRC-TPC, VINC)."""

    answers: tuple[str, ...] = setting((" True", " False"), _answers_problem)


@dataclass(frozen=True)
class AnswerSpec:
    """``[answer]``: asking the model itself (``elk_lens.knowledge_gap``): zero_shot, few_shot, chat."""

    prompts: tuple[str, ...] = setting((), _prompts_problem)
    question: str = " This statement is:"
    answers: tuple[str, ...] = setting((" True", " False"), _answers_problem)
    chat_answers: tuple[str, ...] = setting(("True", "False"), _answers_problem)
    k_shot: int = setting(4, at_least(2))
    batch_size: int = setting(32, at_least(1))


@dataclass(frozen=True)
class EvalSpec:
    """``[eval]``: bootstrap resamples and random directions per layer for the floor."""

    n_boot: int = setting(1000, at_least(1))
    n_random: int = setting(200, at_least(1))


@dataclass(frozen=True, kw_only=True)
class Spec(AnalysisSpec):
    """A truth-generalization spec (``analyses/*_truth.toml``)."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    capture: CaptureSpec = CaptureSpec()
    probe: ProbeSpec = ProbeSpec()
    contrast: ContrastSpec = ContrastSpec()
    answer: AnswerSpec = AnswerSpec()
    eval: EvalSpec = EvalSpec()


# the transfers GoT and TIU single out, drawn per layer where both sets are present
_KEY_TRANSFERS = (
    ("cities", "cities"),
    ("cities", "neg_cities"),
    ("neg_cities", "cities"),
    ("cities", "cities_conj"),
    ("cities", "cities_disj"),
    ("sp_en_trans", "neg_sp_en_trans"),
    ("larger_than", "smaller_than"),
    ("cities", "sp_en_trans"),
)


def check(s: Spec) -> None:
    """Refuse bad values (unknown datasets, methods or answers, ...) and a missing data package, before any
    model is loaded."""
    polar = [m for m in s.probe.methods if METHODS[m].needs_polarity]
    if polar and not any(f"neg_{n}" in s.data.sets for n in s.data.sets):
        raise ValueError(
            f"config key 'probe.methods': {polar} need a dataset and its negation in 'data.sets' "
            f"(e.g. 'cities' and 'neg_cities'); got {s.data.sets}"
        )
    source_versions(tuple(dict.fromkeys(p for n in s.data.sets for p in TRUTH_SETS[n].sources)))


def _sets(s: Spec) -> dict:
    sets = {n: truth_set(n, seed=s.data.seed) for n in s.data.sets}
    if s.data.max_rows:
        sets = {n: d.sample(s.data.max_rows, seed=s.data.seed) for n, d in sets.items()}
    return sets


def _at_answer(sets: dict[str, StatementSet], question: str) -> dict[str, StatementSet]:
    """The statements with the question appended: read at their last token, where the model answers."""
    return {n: StatementSet([t + question for t in d.texts], d.truth, d.meta, d.name) for n, d in sets.items()}


class _Loaded:
    """The model and the datasets, built once and only if a stage has to run."""

    def __init__(self, s: Spec):
        self.s = s
        self._model = self._sets = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.s.model.spec)
        return self._model

    def sets(self, position: str | int = "content") -> dict[str, StatementSet]:
        if self._sets is None:
            self._sets = _sets(self.s)
        return _at_answer(self._sets, self.s.answer.question) if position == "answer" else self._sets


def _study(s: Spec, run: RunDir, loaded: _Loaded) -> tuple[Generalization, list[dict]]:
    """One stage per method (a killed run redoes only the method it was in; activations stay cached)."""
    position = s.capture.position

    def one(method: str) -> dict:
        return generalization_study(
            loaded.model,
            loaded.sets(position),
            methods=[method],
            position=_position(position),
            answers=tuple(s.contrast.answers),
            batch_size=s.capture.batch_size,
            cache_dir=run.path / "cache",
            n_boot=s.eval.n_boot,
            seed=s.data.seed,
        ).to_dict()

    def capture_all() -> dict:
        _, _, x, pairs = capture_inputs(
            loaded.model,
            loaded.sets(position),
            s.probe.methods,
            None,
            _position(position),
            tuple(s.contrast.answers),
            s.capture.batch_size,
            run.path / "cache",
        )
        return {"statements": sorted(x), "pairs": sorted(pairs)}

    # the activations first, into the cache, with every rank's share of the shards under torchrun; then one
    # stage per method, the methods spread over the ranks (RunDir.stages), each reading the cache
    run.stage("activations", capture_all, collective=True)
    studies = run.stages({f"study-{m}": (lambda m=m: one(m)) for m in s.probe.methods})
    parts = list(studies.values())
    cards = run.stage(
        "datasets",
        lambda: {"cards": [truth_set_card(n, seed=s.data.seed, statements=d) for n, d in loaded.sets().items()]},
    )["cards"]
    merged = {
        **parts[0],
        "per_site": [r for p in parts for r in p["per_site"]],
        "chosen": [r for p in parts for r in p["chosen"]],
    }
    return Generalization(**merged), cards


def _floor(s: Spec, run: RunDir, loaded: _Loaded) -> list[dict]:
    position = s.capture.position
    return run.stage(
        "floor",
        lambda: {
            "rows": random_floor(
                loaded.model,
                loaded.sets(position),
                position=_position(position),
                batch_size=s.capture.batch_size,
                cache_dir=run.path / "cache",
                n_directions=s.eval.n_random,
                seed=s.data.seed,
            )
        },
    )["rows"]


def _other_positions(s: Spec, run: RunDir, loaded: _Loaded) -> dict[str, Generalization]:
    """The logistic probe read at each of ``probe.positions`` (its own stage each)."""

    def one(position: str | int) -> dict:
        return generalization_study(
            loaded.model,
            loaded.sets(position),
            methods=["logistic"],
            position=_position(position),
            batch_size=s.capture.batch_size,
            cache_dir=run.path / "cache",
            n_boot=s.eval.n_boot,
            seed=s.data.seed,
        ).to_dict()

    return {str(p): Generalization(**run.stage(f"position-{p}", lambda p=p: one(p))) for p in s.probe.positions}


def _answers(s: Spec, run: RunDir, loaded: _Loaded) -> list[dict]:
    """The model's own answers, one stage per prompt."""

    def one(kind: str) -> dict:
        sets = loaded.sets()
        prompts = {
            n: {
                kind: prompt_for(
                    kind,
                    loaded.model,
                    d,
                    k_shot=s.answer.k_shot,
                    seed=s.data.seed,
                    question=s.answer.question,
                    answers=tuple(s.answer.answers),
                    chat_answers=tuple(s.answer.chat_answers),
                )
            }
            for n, d in sets.items()
        }
        return {
            "rows": model_answers(
                loaded.model,
                sets,
                prompts,
                batch_size=s.answer.batch_size,
                n_boot=s.eval.n_boot,
                seed=s.data.seed,
            )
        }

    return [r for kind in s.answer.prompts for r in run.stage(f"answers-{kind}", lambda k=kind: one(k))["rows"]]


def _transfers(g: Generalization, method: str) -> dict[str, list[float]]:
    """AUROC by layer of the transfers in ``_KEY_TRANSFERS`` whose sets are present, keyed ``"source → test"``."""
    sources = g.sources(method)
    series = {}
    for train, test in _KEY_TRANSFERS:
        source = next((src for src in sources if train in src.split("+")), None)  # TTPD trains on a topic pair
        if source is not None and test in g.tests and f"{source} → {test}" not in series:
            series[f"{source} → {test}"] = g.by_layer(method, source, test)
    return series


def _method(g: Generalization, method: str) -> dict:
    """One method's matrix (train sources, AUROC rows over the tests) and its key transfers by layer."""
    sources, values = g.matrix(method)
    return {"sources": sources, "values": values, "transfers": _transfers(g, method)}


def _own(g: Generalization, method: str) -> dict[str, list[float]]:
    """In-distribution AUROC by layer (trained and tested on the same dataset) of ``method``, per dataset."""
    return {t: g.by_layer(method, t, t) for t in g.tests if t in g.sources(method)}


def _view(s: Spec, run: RunDir, g: Generalization, others: dict[str, Generalization], **rows) -> dict:
    """What the renderer (``elk_lens.report.pages.truth_generalization``) draws: plain data, no markup."""
    methods = g.methods
    layer_method = "logistic" if "logistic" in methods else methods[0]
    curves = {str(s.capture.position): _own(g, "logistic")} if "logistic" in methods else {}
    curves.update({p: _own(o, "logistic") for p, o in others.items()})
    return {
        "model_spec": s.model.spec,
        "model_card": model_card(s.model.spec),
        "fingerprint": g.provenance["model"],
        "position": g.provenance["position"],
        "answers_appended": g.provenance["answers"],
        "capture_position": s.capture.position,
        "question": s.answer.question,
        "config": str(run.path / "config.toml"),
        "sites": g.sites,
        "tests": g.tests,
        "chosen": g.chosen,
        "methods": {m: _method(g, m) for m in methods},
        "layers": {"method": layer_method, "curves": _own(g, layer_method)},
        "position_curves": curves if others else {},
        **rows,
    }


def run(s: Spec, run: RunDir) -> AnalysisResult:
    loaded = _Loaded(s)
    g, cards = _study(s, run, loaded)
    floor = _floor(s, run, loaded)
    others = _other_positions(s, run, loaded)
    answers = _answers(s, run, loaded)
    gap = gap_rows(g.rows("logistic", diagonal=True), answers)
    card_rows = [
        {
            "dataset": c["name"],
            "rows": c["rows"],
            "true": c["true"],
            "false": c["false"],
            "train / val / test": " / ".join(str(c["splits"][k]) for k in ("train", "val", "test")),
            "template": c["template"],
            "sources": ", ".join(f"{x['package']} {x['version']} ({x['licence']})" for x in c["sources"]),
        }
        for c in cards
    ]
    rules = [{"name": c["name"], "rules": TRUTH_SETS[c["name"]].rules, "example": c["example"]} for c in cards]
    view = _view(s, run, g, others, floor=floor, answers=answers, gap=gap, datasets=card_rows, rules=rules)
    return AnalysisResult(
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
            "model_spec": s.model.spec,
            "fingerprints": {"model": g.provenance["model"], "data": g.provenance["data"]},
            "seeds": {"data": s.data.seed},
            "settings": spec_dict(s),
        },
        view=view,
    )
