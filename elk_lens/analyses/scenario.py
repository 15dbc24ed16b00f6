"""The fine-tuning scenario the drift, growth and circuits analyses share: its spec tables and its data.

Scenarios are spec settings: which labels the model learns (each character's own — the quirk — or
Bob's for everybody — the quirk flip), how (the answer token after each statement, or next-token
training on a raw token stream of the statements with their answers written out), the fine-tuning
hyperparameters (a :class:`~elk_lens.train.FineTuneConfig`, its keys in the ``[train]`` table), and
optional concept anchoring of a reporter fitted on the base model. :class:`Scenario` builds each of the
scenario's datasets once per run and runs its steps on them: fine-tune, walk the trajectory, score the
answers. The protocol is ``docs/methods/drift_growth_circuits.md``.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from elk_lens.analyses.model_checks import ModelLayout, check_prefixes, check_site, model_spec
from elk_lens.analyses.spec import SEED_MAX, AnalysisSpec, at_least, in_range, one_of, setting, some_of
from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.drift_study import trajectory_drift
from elk_lens.lm_output import output_log_odds
from elk_lens.lora import LoraConfig
from elk_lens.models import fingerprint
from elk_lens.quirky.data import DIGITS
from elk_lens.quirky.subsets import subset_mask
from elk_lens.quirky.tasks import TASKS, quirky_task
from elk_lens.reporters import Reporter, fit_logistic
from elk_lens.reporters.registry import METHODS
from elk_lens.token_stream import TokenStream
from elk_lens.train import FineTuneConfig, anchor_to, answer_loss, fine_tune
from elk_lens.trajectory import Trajectory

__all__ = ["LABELS", "OBJECTIVES", "Scenario", "ScenarioSpec", "drift_sites"]

LABELS = {
    "label": "each character's own label (Bob sloppy: the quirk)",
    "bob_label": "Bob's sloppy label for everybody (the quirk flip)",
    "alice_label": "the true label for everybody (the base model's own task)",
}
OBJECTIVES = {
    "answer": "the answer token after each statement",
    "stream": "next tokens of a raw stream of the statements, each followed by its answer",
}
ANCHORS = ("none", "all", "alice")
# drift refits these at every checkpoint: statement reporters that need no polarity pairs
DRIFT_METHODS = tuple(m for m, x in METHODS.items() if x.reads == "statement" and not x.needs_polarity)
_MIN_PER_CLASS = 2


@dataclass(frozen=True)
class BaseModelSpec:
    """``[model]``: the model fine-tuned."""

    base: str = setting("zoo:quirky-arith-base", model_spec)


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: the quirky statements (``docs/methods/quirky_real_lm.md``): ``task``, and the operand
    ``digits`` of the toy's arithmetic."""

    task: str = setting("arithmetic", one_of(tuple(TASKS)))
    digits: int = setting(3, one_of(DIGITS))

    def __post_init__(self) -> None:
        if self.task != "arithmetic" and self.digits != 3:
            raise ValueError(f"config key 'data.digits' applies to task 'arithmetic' only; task is {self.task!r}")

    def statements(self, n: int, split: str, seed: int) -> StatementSet:
        """``n`` items of ``split`` (each an Alice and a Bob statement) of the task."""
        return quirky_task(self.task).statements(n, split=split, seed=seed, digits=self.digits)


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: what the model learns, from how many rows, and the fine-tuning hyperparameters
    (every :class:`~elk_lens.train.FineTuneConfig` field, in this same table)."""

    labels: str = setting("label", one_of(sorted(LABELS)))
    objective: str = setting("answer", one_of(sorted(OBJECTIVES)))
    rows: int = setting(10000, at_least(1))
    fine_tune: FineTuneConfig = setting(FineTuneConfig(steps=600), flatten=True)

    def __post_init__(self) -> None:
        if self.fine_tune.seed > SEED_MAX:  # it also seeds the training rows' generator
            raise ValueError(f"config key 'train.seed' must lie in [0, {SEED_MAX}]; got {self.fine_tune.seed!r}")


@dataclass(frozen=True)
class AnchorSpec:
    """``[anchor]``: concept anchoring (``elk_lens.train.anchor_to``) of a logistic reporter fitted on the
    base model's Alice-easy statements at ``site``, on ``all`` training rows or Alice's only."""

    on: str = setting("none", one_of(ANCHORS))
    weight: float = setting(1.0, in_range(0, None, low_open=True))
    site: str = "blocks.3.hook_resid_pre"  # checked against the model by Scenario.check


FIXED_ROWS_MAX = 100_000


@dataclass(frozen=True)
class DriftSpec:
    """``[drift]``: the reporters refitted along the trajectory and the sizes of the fixed data."""

    methods: tuple[str, ...] = setting(("mean_diff", "logistic"), some_of(DRIFT_METHODS, "methods"))
    # at most FIXED_ROWS_MAX: the spec check builds both sets to count their classes (100,000 items take ~10 s;
    # 2**40 exhausted the memory of the machine running the check)
    eval_rows: int = setting(4000, in_range(1, FIXED_ROWS_MAX))
    probe_rows: int = setting(8000, in_range(1, FIXED_ROWS_MAX))


@dataclass(frozen=True)
class LoraSpec:
    """``[lora]``: train LoRA adapters on the blocks' projections instead of the weights, every checkpoint
    the merged model (``docs/methods/lora.md``); off unless ``on``. The other keys are
    :class:`~elk_lens.lora.LoraConfig`'s (``rank``, ``alpha``, ``dropout``, ``targets``)."""

    on: bool = False
    config: LoraConfig = setting(LoraConfig(), flatten=True)


@dataclass(frozen=True)
class CaptureSpec:
    """``[capture]``: statements per forward pass."""

    batch_size: int = setting(512, at_least(1))


@dataclass(frozen=True, kw_only=True)
class ScenarioSpec(AnalysisSpec):
    """The tables every fine-tuning analysis reads (drift, growth, circuits)."""

    model: BaseModelSpec = BaseModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    anchor: AnchorSpec = AnchorSpec()
    drift: DriftSpec = DriftSpec()
    capture: CaptureSpec = CaptureSpec()
    lora: LoraSpec = LoraSpec()


def drift_sites(n_layers: int) -> list[str]:
    """Every block's input residual past the embedding, and the last block's output."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(1, n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


class Scenario:
    """A scenario's datasets, each built once, and its steps on them."""

    def __init__(self, spec: ScenarioSpec):
        self.spec = spec

    @cached_property
    def train_set(self) -> StatementSet:
        s = self.spec
        return s.data.statements(s.train.rows, "train", s.train.fine_tune.seed)

    @cached_property
    def probe_set(self) -> StatementSet:
        """Alice-easy validation statements: the anchored reporter's and the drift refits' training set."""
        s = self.spec
        return s.data.statements(s.drift.probe_rows, "val", 0).where(character="Alice", easy=True)

    @cached_property
    def test_set(self) -> StatementSet:
        s = self.spec
        return s.data.statements(s.drift.eval_rows, "test", 0)

    @cached_property
    def eval_sets(self) -> dict[str, StatementSet]:
        """The fixed evaluation sets: Bob-hard disagreements, Alice-easy, and the Bob-hard control."""
        test = self.test_set
        return {name: test.subset(subset_mask(test, name).numpy()) for name in ("BH_disagree", "AE", "BH_control")}

    def check(self, layout: ModelLayout | None, params: list[str] | None = None) -> None:
        """The keys that depend on the model trained (``layout``; ``params``: its parameter names where they
        differ from the layout's, e.g. a grown model's): the anchor's site and the frozen prefixes; and
        enough rows of each class in every subset (too few would fail only after training)."""
        s = self.spec
        check_site("anchor.site", s.anchor.site, layout)
        check_prefixes("train.frozen", list(s.train.fine_tune.frozen), layout, params or ())
        answers = quirky_task(s.data.task).answers
        if tuple(s.train.fine_tune.answers) != answers:
            raise ValueError(
                f"config key 'train.answers' = {list(s.train.fine_tune.answers)}, but task {s.data.task!r} is "
                f"answered with {list(answers)} (elk_lens.quirky.tasks): set train.answers = {list(answers)}"
            )
        if s.lora.on and s.train.fine_tune.frozen:
            raise ValueError(
                f"config keys 'lora.on' and 'train.frozen' = {list(s.train.fine_tune.frozen)}: LoRA trains only its "
                "adapters and leaves every weight as it is, so there is nothing to freeze; drop one of them"
            )
        eval_rows = ("drift.eval_rows", s.drift.eval_rows)
        subsets = {f"{name} evaluation": (data, *eval_rows) for name, data in self.eval_sets.items()}
        subsets["Alice-easy probe"] = (self.probe_set, "drift.probe_rows", s.drift.probe_rows)
        for name, (data, key, value) in subsets.items():
            n_true = int(data.truth.sum())
            if min(n_true, len(data) - n_true) < _MIN_PER_CLASS:
                raise ValueError(
                    f"config key {key!r} = {value} leaves {len(data)} rows ({n_true} true) in the {name} "
                    f"subset; it needs >= {_MIN_PER_CLASS} of each class (the noise floor splits it in "
                    f"halves): raise {key!r}"
                )

    def anchor_reporter(self, model) -> Reporter:
        """The reporter anchoring keeps truthful: logistic on Alice-easy statements at ``anchor.site``."""
        site = self.spec.anchor.site
        acts = capture(model, self.probe_set, [site]).at(0)
        return fit_logistic(acts, self.probe_set.truth, site=site, provenance={"model": fingerprint(model)})

    def fine_tune(self, model, base_spec: str, out, reporter: Reporter | None) -> dict:
        """Fine-tune ``model`` (loaded from ``base_spec``) on the scenario's data into ``out``, anchoring
        ``reporter`` (which must read ``model``) when the spec asks for it."""
        s, train = self.spec, self.train_set
        labels: Tensor | None = torch.as_tensor(train.column(s.train.labels))
        config = s.train.fine_tune
        anchor = None
        if s.anchor.on != "none":
            rows = None if s.anchor.on == "all" else train.column("character") == "Alice"
            anchor = anchor_to(model, train, reporter, rows=rows, weight=s.anchor.weight)
        if s.train.objective == "stream":
            answers = np.array(config.answers)[np.where(labels.numpy(), 0, 1)]
            texts = [t + a for t, a in zip(train.texts, answers, strict=True)]
            data, labels = TokenStream.from_texts(model, texts), None
        else:
            data = train
        lora = s.lora.config if s.lora.on else None
        traj = fine_tune(model, data, labels, out, base_spec=base_spec, config=config, anchor=anchor, lora=lora)
        return {"steps": traj.steps, "history": traj.info.get("history", []), "seconds": traj.info["seconds_this_run"]}

    def output_accuracy(self, model) -> dict:
        """Each character's answer accuracy on the test split, vs the trained labels and vs truth."""
        s, test = self.spec, self.test_set
        log_odds = output_log_odds(model, test, answers=s.train.fine_tune.answers, batch_size=s.capture.batch_size)
        says_true = (log_odds > 0).numpy()
        out = {}
        for who in ("Alice", "Bob"):
            rows = test.column("character") == who
            out[f"{who} vs the trained labels"] = float((says_true == test.column(s.train.labels))[rows].mean())
            out[f"{who} vs truth"] = float((says_true == test.column("alice_label"))[rows].mean())
        return out

    def held_out_answer_loss(self, model) -> float:
        """The task loss: answer cross-entropy on the test split against the trained labels."""
        s, test = self.spec, self.test_set
        labels = test.column(s.train.labels)
        return answer_loss(model, test, labels, answers=s.train.fine_tune.answers, batch_size=s.capture.batch_size)

    def task_loss(self, traj: Trajectory) -> dict:
        """Held-out answer loss at the first and the last checkpoint."""
        return {f"step {traj.steps[i]}": self.held_out_answer_loss(traj.model_at(i)) for i in (0, len(traj) - 1)}

    def walk(self, traj: Trajectory, sites: list[str], fixed: dict | None = None) -> dict:
        """`trajectory_drift` on the scenario's probe and evaluation sets, plus the final answer accuracy."""
        s = self.spec
        drift = trajectory_drift(
            traj,
            self.probe_set,
            self.eval_sets,
            sites,
            methods=s.drift.methods,
            answers=s.train.fine_tune.answers,
            batch_size=s.capture.batch_size,
            fixed=fixed,
        )
        out = drift.to_dict()  # the stage's JSON
        out["final_accuracy"] = self.output_accuracy(traj.model_at(len(traj) - 1))
        return out
