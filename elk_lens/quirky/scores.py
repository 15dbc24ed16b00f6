"""The quirky-models protocol on an Alice/Bob model (Mallen et al., arXiv 2312.01037; docs/methods/elk_methods.md §6).

Reporters of every method are fitted per site on three training sets from the ``val`` split —
A (Alice, truth labels), AE (Alice easy) and B (Bob, Bob's labels) — and score the ``test`` split,
which shares no operand pair with it. The result is the test log-odds of every (training set,
method) at every site: all transfer AUROCs, layer choices, PGR and anomaly scores derive from it.
"""

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.capturing import capture
from elk_lens.contrast import capture_contrast
from elk_lens.data.statements import StatementSet
from elk_lens.distributed import spread
from elk_lens.lm_output import output_log_odds
from elk_lens.models import fingerprint
from elk_lens.quirky.subsets import TRAIN_SETS, subset_mask
from elk_lens.quirky.tasks import quirky_task
from elk_lens.reporters import Reporter
from elk_lens.reporters.registry import METHODS, fit_method
from elk_lens.sites import residual_sites

__all__ = ["QuirkyScores", "quirky_reporter_scores"]


@dataclass
class QuirkyScores:
    """Test-split log-odds, ``log_odds["AE/logistic"]`` of shape ``[n_test, n_sites]``, and what they came from
    (``task``: the name of the quirky task, ``elk_lens.quirky.tasks``)."""

    test: StatementSet
    sites: list[str]
    log_odds: dict[str, Float[Tensor, "n_test n_sites"]]
    output: Float[Tensor, " n_test"]
    reporters: dict[str, list[Reporter]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    task: str = "arithmetic"

    def labels(self, against: str) -> Bool[Tensor, " n_test"]:
        """``"truth"`` (Alice's labels) or ``"bob"`` (Bob's labels) for every test row."""
        column = {"truth": "alice_label", "bob": "bob_label"}
        if against not in column:
            raise ValueError(f"labels against {against!r}; valid: {sorted(column)}")
        return torch.as_tensor(self.test.column(column[against]))


def quirky_reporter_scores(
    model: TransformerBridge,
    *,
    methods: tuple[str, ...] = ("logistic", "mean_diff", "lda", "ccs", "crc", "vinc"),
    train_rows: int = 8000,
    test_rows: int = 4000,
    seed: int = 0,
    batch_size: int = 512,
    cache_dir=None,
    task: str = "arithmetic",
    answers: tuple[str, str] | None = None,
) -> QuirkyScores:
    """Fit every method on every training set at every residual site; score the test split.

    ``task`` names the quirky task (``elk_lens.quirky.tasks``); ``answers`` defaults to its answer pair.
    """
    quirky = quirky_task(task)
    answers = quirky.answers if answers is None else answers
    unknown = [m for m in methods if m not in METHODS or METHODS[m].needs_polarity]
    if unknown:
        valid = sorted(m for m, spec in METHODS.items() if not spec.needs_polarity)
        raise ValueError(f"methods {unknown} cannot run on quirky statements (no polarity column); valid: {valid}")
    val = quirky.statements(train_rows, split="val", seed=seed)
    test = quirky.statements(test_rows, split="test", seed=seed)
    sites = residual_sites(model)
    needs = {METHODS[m].reads for m in methods}
    statement = {s.name: capture(model, s, sites, batch_size=batch_size, cache_dir=cache_dir) for s in (val, test)}
    pairs = (
        {
            s.name: capture_contrast(model, s, sites, answers=answers, batch_size=batch_size, cache_dir=cache_dir)
            for s in (val, test)
        }
        if "contrast" in needs
        else {}
    )
    provenance = {
        "model": fingerprint(model),
        "train_data": val.fingerprint,
        "test_data": test.fingerprint,
        "seed": seed,
        "task": task,
        "answers": list(answers),
    }
    own_label = torch.as_tensor(val.column("label"))
    masks = {name: subset_mask(val, name) for name in TRAIN_SETS}

    def fit(job: tuple[str, str, int]) -> tuple[Reporter, Tensor]:
        """One (training set, method, site) reporter and its test log-odds."""
        train_name, method, i = job
        rows, labels, site = masks[train_name], own_label[masks[train_name]], sites[i].name
        where = dict(site=site, provenance={**provenance, "train_set": train_name})
        if METHODS[method].reads == "contrast":
            (xt, xf), (et, ef) = pairs[val.name].at(i), pairs[test.name].at(i)
            r = fit_method(method, labels, pair=(xt[rows], xf[rows]), **where)
            return r, r(et, ef)
        r = fit_method(method, labels, statement=statement[val.name].at(i)[rows], **where)
        return r, r(statement[test.name].at(i))

    jobs = [(t, m, i) for t in TRAIN_SETS for m in methods for i in range(len(sites))]
    fitted = iter(spread(jobs, fit))  # torchrun: the fits spread over the ranks (elk_lens/distributed.py)
    log_odds, reporters = {}, {}
    for train_name in TRAIN_SETS:
        for method in methods:
            key = f"{train_name}/{method}"
            fits = [next(fitted) for _ in sites]
            reporters[key] = [r for r, _ in fits]
            log_odds[key] = torch.stack([column for _, column in fits], 1).double()
    output = output_log_odds(model, test, answers=answers, batch_size=batch_size).double()
    return QuirkyScores(test, [s.name for s in sites], log_odds, output, reporters, provenance, task)
