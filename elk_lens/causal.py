"""Is the found direction causal? Steer or erase it and measure the model's own answer.

Following geometry-of-truth (docs/methods/elk_methods.md §8.2): the reporter's unit direction, rescaled so that
adding it moves the mean false statement's projection onto the mean true one's (both means from the
training rows), is added to false statements (false→true) or subtracted from true ones (true→false)
at the read position. The normalized indirect effect (NIE) is the fraction of the clean true/false
gap in the answer's log-odds that the edit closes; a random direction of equal norm is the control.
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_labels, check_number
from elk_lens.data.statements import StatementSet
from elk_lens.interventions import erase, nie, random_direction_like, steer
from elk_lens.lm_output import check_answers, check_offsets, output_log_odds
from elk_lens.metrics import auroc
from elk_lens.reporters import Reporter

__all__ = ["erasure_effect", "log_odds_shift", "steering_direction", "steering_effect"]

_ANY_ROW = torch.zeros(1, dtype=torch.long)  # building an intervention checks its inputs; only entering it edits


def steering_direction(
    reporter: Reporter, x_train: Float[Tensor, "batch d_model"], y_train: Bool[Tensor, " batch"]
) -> Float[Tensor, " d_model"]:
    """``((mu_true - mu_false) . w_hat) w_hat``: the reporter's axis, scaled to the class-mean gap on train."""
    if not isinstance(x_train, Tensor) or not x_train.is_floating_point() or x_train.ndim != 2:
        raise TypeError(
            f"x_train must be a floating tensor [n, d_model]; got {type(x_train).__name__} "
            f"{tuple(getattr(x_train, 'shape', ()))} {getattr(x_train, 'dtype', '')}"
        )
    if x_train.shape[1] != reporter.w.shape[0]:
        raise ValueError(f"x_train has width {x_train.shape[1]} but the reporter reads d_model={reporter.w.shape[0]}")
    x_train = x_train.to(torch.float64)
    # bool masks: 0/1 integers would index rows instead of masking them, and 2 or 0.5 would cast to True
    y_train = check_labels("y_train", y_train, n=x_train.shape[0])
    if y_train.all() or not y_train.any():
        raise ValueError(f"steering_direction needs true and false training rows; got all {bool(y_train[0])}")
    w = reporter.w.to(torch.float64)
    w_hat = w / w.norm()
    gap = x_train[y_train].mean(0) - x_train[~y_train].mean(0)
    return (gap @ w_hat) * w_hat


def steering_effect(
    model: TransformerBridge,
    statements: StatementSet,
    site: str,
    direction: Float[Tensor, " d_model"],
    *,
    alpha: float = 1.0,
    positions_from_end: tuple[int, ...] = (0,),
    n_random: int = 10,
    seed: int = 0,
    batch_size: int = 512,
    answers: tuple[str, str] = ("True", "False"),
    metric: str = "prob_diff",
) -> dict[str, float]:
    """NIE of adding ``alpha * direction`` to false statements and subtracting it from true ones,
    beside the same for ``n_random`` random directions of equal norm (mean and largest |NIE|: one
    random direction alone can be lucky or unlucky), at the last ``positions_from_end`` tokens.

    The answer metric PD is GoT's ``P(true answer) - P(false answer)`` at the last token
    (``metric="log_odds"`` uses the logit difference instead; there a disruptive edit that only makes a
    confident answer less confident already closes part of the gap, so the random control grows).
    """
    _check_statements(statements)
    steer(model, site, direction, alpha=alpha, positions=_ANY_ROW)  # checks direction, alpha and site (not entered)
    check_number("n_random", n_random, kind=int, low=0)
    check_number("seed", seed, kind=int)
    check_offsets(positions_from_end)
    check_answers(answers)
    if float(direction.norm()) == 0:
        raise ValueError(f"the steering direction at {site} is zero (a site whose training activations are constant)")
    truth = statements.truth
    if truth.all() or not truth.any():
        raise ValueError("steering_effect needs true and false statements (the NIE is a fraction of their gap)")
    clean = output_log_odds(model, statements, answers=answers, batch_size=batch_size, metric=metric).double()
    pd_true, pd_false = float(clean[truth].mean()), float(clean[~truth].mean())
    false_rows, true_rows = statements.subset(~truth.numpy()), statements.subset(truth.numpy())
    out = {"pd_true_clean": pd_true, "pd_false_clean": pd_false, "direction_norm": float(direction.norm())}

    def nie_of(vector: Tensor, toward: str) -> float:
        rows, sign = (false_rows, 1.0) if toward == "true" else (true_rows, -1.0)

        def edit(positions: Tensor):
            return steer(model, site, vector.float(), alpha=sign * alpha, positions=positions)

        moved = output_log_odds(
            model,
            rows,
            answers=answers,
            batch_size=batch_size,
            intervention=edit,
            positions_from_end=positions_from_end,
            metric=metric,
        ).double()
        return nie(pd_true, pd_false, float(moved.mean()), toward=toward)

    randoms = [random_direction_like(direction, seed=seed + k) for k in range(n_random)]
    for toward in ("true", "false"):
        out[f"nie_truth_to_{toward}"] = nie_of(direction, toward)
        if randoms:
            values = torch.tensor([nie_of(r, toward) for r in randoms], dtype=torch.float64)
            out[f"nie_random_to_{toward}_mean"] = float(values.mean())
            out[f"nie_random_to_{toward}_max_abs"] = float(values.abs().max())
    return out


def log_odds_shift(
    model: TransformerBridge,
    statements: StatementSet,
    site: str,
    direction: Float[Tensor, " d_model"],
    *,
    alpha: float = 1.0,
    batch_size: int = 512,
    answers: tuple[str, str] = ("True", "False"),
) -> dict[str, float]:
    """Mean answer log-odds (true - false answer) before and after adding ``alpha * direction`` at the
    last token, for the true and the false statements separately: e.g. on Bob's prompts, does pushing
    the truth direction move his answers toward "True" whatever the truth?"""
    _check_statements(statements)
    steer(model, site, direction, alpha=alpha, positions=_ANY_ROW)  # checks direction, alpha and site (not entered)
    check_answers(answers)
    clean = output_log_odds(model, statements, answers=answers, batch_size=batch_size).double()

    def edit(positions: Tensor):
        return steer(model, site, direction.float(), alpha=alpha, positions=positions)

    moved = output_log_odds(model, statements, answers=answers, batch_size=batch_size, intervention=edit).double()
    truth = statements.truth
    out = {}
    for name, rows in (("true", truth), ("false", ~truth)):
        if rows.any():
            out[f"log_odds_{name}_clean"] = float(clean[rows].mean())
            out[f"log_odds_{name}_steered"] = float(moved[rows].mean())
    return out


def erasure_effect(
    model: TransformerBridge,
    statements: StatementSet,
    site: str,
    eraser,
    *,
    batch_size: int = 512,
    answers: tuple[str, str] = ("True", "False"),
) -> dict[str, float]:
    """The answer's AUROC vs truth before and after erasing the concept at the last token, and the mean
    absolute change of its log-odds (``eraser``: a LEACE eraser or a direction to project out)."""
    _check_statements(statements)
    erase(model, site, eraser, positions=_ANY_ROW)  # checks the eraser and the site (not entered)
    check_answers(answers)
    clean = output_log_odds(model, statements, answers=answers, batch_size=batch_size).double()

    def edit(positions: Tensor):
        return erase(model, site, eraser, positions=positions)

    erased = output_log_odds(model, statements, answers=answers, batch_size=batch_size, intervention=edit).double()
    truth = statements.truth
    return {
        "output_auroc_clean": auroc(clean, truth),
        "output_auroc_erased": auroc(erased, truth),
        "mean_abs_change": float((erased - clean).abs().mean()),
    }


def _check_statements(statements: object) -> None:
    if not isinstance(statements, StatementSet):
        raise TypeError(f"statements must be a StatementSet (texts with truth labels); got {type(statements).__name__}")
