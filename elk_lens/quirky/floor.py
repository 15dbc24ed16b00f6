"""The random-direction floor beside the probe: does a probe read more than random readouts of the same
residual do, at the same site and on the same rows?

The Bob-hard disagreements of quirky arithmetic only ask "the sum, or the sum with the leading digit plus
one", so where a residual encodes the leading digit most random directions separate them too (on
``zoo:quirky-arith`` about half of 1,000 score >= 0.9 at ``blocks.3.hook_resid_pre``). A probe's AUROC
there means little until it is set beside this floor, on the disagreements and on the control subset
(``BH_control``, no leading-digit shortcut). The floor is :func:`elk_lens.reporters.random_direction_baseline`:
Gaussian directions, each one's sign fixed on the probe's own training rows, never on the rows scored
(docs/methods/elk_methods.md §3.9, §9). The margin is the probe's AUROC minus the floor's 99th percentile.
"""

from jaxtyping import Bool
from torch import Tensor

from elk_lens.activations import Activations
from elk_lens.distributed import spread
from elk_lens.reporters import random_direction_baseline
from elk_lens.sites import Site

__all__ = ["above_floor", "floor_margins", "random_floor"]


def random_floor(
    train: Activations,
    train_truth: Bool[Tensor, " batch"],
    test: Activations,
    test_truth: Bool[Tensor, " n_test"],
    masks: dict[str, Bool[Tensor, " n_test"]],
    sites: list[Site],
    *,
    seed: int,
) -> dict[str, list[dict]]:
    """Per subset (a name and its test-row mask), one row per site: the floor's mean and quantiles (4 decimals).

    The first site is left out: ``blocks.0.hook_resid_pre`` at the read position is the name token's
    embedding, the same for every statement of a character, so every direction scores 0.5 there.
    """

    def floor(job: tuple[str, int]) -> dict:
        name, i = job
        mask = masks[name]
        baseline = random_direction_baseline(train.at(i), train_truth, test.at(i)[mask], test_truth[mask], seed=seed)
        return {"site": sites[i].name, **{k: round(v, 4) for k, v in baseline.items()}}

    # under torchrun the (subset, site) floors spread over the ranks (elk_lens/distributed.py)
    rows = iter(spread([(name, i) for name in masks for i in range(1, len(sites))], floor))
    return {name: [next(rows) for _ in sites[1:]] for name in masks}


def floor_margins(floor: dict[str, list[dict]], probe: dict[str, dict[str, float]]) -> list[dict]:
    """The probe beside its floor: a row per site and subset (the subsets of a site side by side).

    Args:
        floor: :func:`random_floor`'s rows per subset.
        probe: The probe's AUROC vs truth per site name, then per subset name.
    """
    by_site: dict[str, list[dict]] = {}
    for subset, rows in floor.items():
        for r in rows:
            auroc = probe[r["site"]][subset]
            by_site.setdefault(r["site"], []).append(
                {
                    "site": r["site"],
                    "subset": subset,
                    "probe": auroc,
                    "random median": r["q0.5"],
                    "random q95": r["q0.95"],
                    "random q99": r["q0.99"],
                    "margin over q99": round(auroc - r["q0.99"], 4),
                }
            )
    return [row for rows in by_site.values() for row in rows]


def above_floor(margins: list[dict]) -> list[str]:
    """Sites whose probe beats the floor's 99th percentile on every subset it is set beside it on."""
    beats: dict[str, bool] = {}
    for r in margins:
        beats[r["site"]] = beats.get(r["site"], True) and r["margin over q99"] > 0
    return [site for site, ok in beats.items() if ok]
