"""Farquhar et al.'s rigor checks (arXiv 2312.10029, docs/methods/elk_methods.md §9) for contrast-pair methods.

Theorem 1 there: any binary feature of the question that flips with the appended answer is as good an
optimum of the CCS loss as truth. The distractor variant plants one: after each pair's answer comes
one of two words, assigned by a coin independent of the label and swapped between the two halves
(``x_true`` gets word 1 iff the coin is heads, ``x_false`` then gets word 2), so the word is a
negation-consistent nuisance feature. A method that reads the coin instead of truth has found the
distractor; the table puts it beside supervised logistic regression on the same pairs.
"""

import numpy as np
import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_labels, check_number
from elk_lens.capturing import capture
from elk_lens.contrast import ContrastActivations
from elk_lens.data.statements import StatementSet
from elk_lens.distributed import spread
from elk_lens.lm_output import check_answers
from elk_lens.metrics import auroc_columns
from elk_lens.reporters.ccs import fit_ccs
from elk_lens.reporters.registry import METHODS, fit_method

__all__ = ["capture_distractor_pairs", "distractor_coin", "distractor_table", "seed_stability"]


def distractor_coin(statements: StatementSet, seed: int) -> Tensor:
    """The label-independent coin: whether ``x_true`` carries the first distractor word."""
    return torch.as_tensor(np.random.default_rng(seed).random(len(statements)) < 0.5)


def capture_distractor_pairs(
    model: TransformerBridge,
    statements: StatementSet,
    sites,
    *,
    answers: tuple[str, str] = ("True", "False"),
    words: tuple[str, str] = ("Carol", ";"),
    seed: int = 0,
    batch_size: int = 512,
    cache_dir=None,
) -> tuple[ContrastActivations, Tensor]:
    """Pairs ``statement + answer + word``, read at the word; returns the pairs and the coin."""
    check_answers(answers)
    if isinstance(words, str) or len(words) != 2 or not all(isinstance(w, str) and w for w in words):
        raise TypeError(f"words must be a pair of non-empty strings (the two distractor words); got {words!r}")
    check_number("seed", seed, kind=int)
    coin = distractor_coin(statements, seed).numpy()
    halves = []
    for answer, first in ((answers[0], coin), (answers[1], ~coin)):
        texts = [t + answer + (words[0] if c else words[1]) for t, c in zip(statements.texts, first, strict=True)]
        halves.append(StatementSet(texts, statements.truth, statements.meta, f"{statements.name}+{answer}+word"))
    acts = [capture(model, h, sites, batch_size=batch_size, cache_dir=cache_dir) for h in halves]
    return ContrastActivations(acts[0], acts[1], answers), torch.as_tensor(coin)


def distractor_table(
    train: ContrastActivations,
    train_labels: Tensor,
    test: ContrastActivations,
    test_truth: Tensor,
    test_coin: Tensor,
    *,
    methods: tuple[str, ...] = ("ccs", "crc", "vinc"),
) -> list[dict]:
    """Per method and site: AUROC vs truth and vs the distractor coin on the test pairs.

    Logistic regression on the pair differences (supervised with truth) is the reference row.
    """
    if isinstance(methods, str):
        raise TypeError(f"methods must be a tuple of method names, got the string {methods!r}; write ({methods!r},)")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown reporter methods {unknown}; valid methods: {sorted(METHODS)}")
    check_labels("train_labels", train_labels, n=len(train.true))
    test_truth = check_labels("test_truth", test_truth, n=len(test.true))
    test_coin = check_labels("test_coin", test_coin, n=len(test.true))

    def row(job: tuple[str, int]) -> dict:
        name, i = job
        site = train.sites[i].name
        (xt, xf), (et, ef) = train.at(i), test.at(i)
        if name == "logistic":
            scores = fit_method("logistic", train_labels, site=site, statement=(xt - xf).double())((et - ef).double())
        else:
            scores = fit_method(name, train_labels, site=site, pair=(xt, xf))(et, ef)
        truth_auc, coin_auc = auroc_columns(scores[:, None].expand(-1, 2), torch.stack([test_truth, test_coin], 1))
        return {
            "method": name,
            "site": site,
            "auroc vs truth": round(float(truth_auc), 4),
            "auroc vs distractor": round(float(coin_auc), 4),
        }

    # under torchrun the (method, site) fits spread over the ranks (elk_lens/distributed.py)
    return spread([(name, i) for name in (*methods, "logistic") for i in range(len(train.sites))], row)


def seed_stability(
    train: ContrastActivations,
    train_labels: Tensor,
    test: ContrastActivations,
    targets: dict[str, Tensor],
    *,
    site: int,
    seeds: range = range(10),
) -> list[dict]:
    """CCS refitted with each seed (10 restarts each): AUROC vs every target, to see bimodality."""
    check_number("site", site, kind=int, low=0, high=len(train.sites) - 1)
    seeds = list(seeds)
    for i, seed in enumerate(seeds):
        check_number(f"seeds[{i}]", seed, kind=int)
    check_labels("train_labels", train_labels, n=len(train.true))
    targets = {name: check_labels(f"targets[{name!r}]", t, n=len(test.true)) for name, t in targets.items()}
    for name, t in targets.items():
        if t.all() or not t.any():
            raise ValueError(f"targets[{name!r}] needs both classes for an AUROC; got all {bool(t[0])}")
    (xt, xf), (et, ef) = train.at(site), test.at(site)
    labels = torch.stack(list(targets.values()), 1)

    def row(seed: int) -> dict:
        scores = fit_ccs(xt, xf, train_labels, site=train.sites[site].name, seed=seed)(et, ef)
        values = auroc_columns(scores[:, None].expand(-1, len(targets)), labels)
        return {"seed": seed, **{f"auroc vs {k}": round(float(v), 4) for k, v in zip(targets, values, strict=True)}}

    return spread(seeds, row)  # under torchrun the seeds spread over the ranks (elk_lens/distributed.py)
