"""Walk a `Trajectory`: refit reporters at every checkpoint and measure how the concept moves.

At each checkpoint and site: reporters refitted on a fixed training set (e.g. Alice-easy), their
AUROC vs truth on fixed evaluation sets, the initial reporter's AUROC, the readout ``w`` and concept
vector ``v`` (cosines to the first and previous checkpoint), principal angles between the
checkpoint's and the first checkpoint's concept subspaces (spanned by every method's direction),
linear CKA and Procrustes distance of the evaluation residuals to the first checkpoint's, and the
probe-transfer matrix. Noise floors come from checkpoint 0: directions refitted on two disjoint
halves of the training rows (the fits are deterministic, so this resample floor is also the fit's
only randomness), and the half-sample spread of the final CKA estimate.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from elk_lens._checks import check_number
from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.distributed import spread
from elk_lens.drift import (
    cosine,
    cosine_series,
    linear_cka,
    noise_floor,
    principal_angles,
    procrustes_distance,
    transfer_matrix,
)
from elk_lens.drift_result import DriftResult
from elk_lens.lm_output import output_log_odds
from elk_lens.metrics import auroc_columns
from elk_lens.reporters import Reporter
from elk_lens.reporters.registry import METHODS, fit_method
from elk_lens.sites import Site, parse_sites
from elk_lens.trajectory import Trajectory

__all__ = ["trajectory_drift"]


def _auroc(scores: Tensor, labels: Tensor) -> float:
    return round(float(auroc_columns(scores[:, None], labels, nan_if_one_class=True)[0]), 4)


def trajectory_drift(
    trajectory: Trajectory,
    train: StatementSet,
    evals: dict[str, StatementSet],
    sites: Sequence[str],
    *,
    methods: tuple[str, ...] = ("logistic", "mean_diff"),
    transfer_eval: str | None = None,
    floor_resamples: int = 10,
    answers: tuple[str, str] = ("True", "False"),
    batch_size: int = 512,
    fixed: dict[str, Reporter] | None = None,
) -> DriftResult:
    """Drift of every (method, site) along ``trajectory`` (sites as :class:`~elk_lens.sites.Site` or names).

    ``train`` (with its ``truth``) refits the reporters at each checkpoint; ``evals`` are scored against
    their ``truth``. Every set stays the same along the trajectory (their fingerprints are recorded).
    ``fixed`` reporters (e.g. one transported from a smaller model through a growth map) are scored at
    every checkpoint beside the refitted ones (``auroc_fixed``), with the cosine of their readout to
    each method's refitted readout at their site (``cos_fixed_refit``) and of their concept vector to
    the refitted concept vector (``cos_v_fixed_refit``). The concept vector is the one to compare:
    readouts of separable classes differ with the regularizer's basis, class-mean differences do not.
    """
    _check_inputs(trajectory, train, evals, sites, methods, fixed)
    sites = [s.name for s in parse_sites(sites)]
    check_number("floor_resamples", floor_resamples, kind=int, low=2)
    check_number("batch_size", batch_size, kind=int, low=1)
    fixed = fixed or {}
    off_sites = {name: r.site for name, r in fixed.items() if Site.parse(r.site).name not in sites}
    if off_sites:
        raise ValueError(f"fixed reporters read sites that are not among the drift sites: {off_sites}")
    bad = [m for m in methods if METHODS.get(m) is None or METHODS[m].reads != "statement" or METHODS[m].needs_polarity]
    if bad:
        raise ValueError(f"drift refits statement reporters without polarity; {bad} are not such methods")
    transfer_eval = transfer_eval or next(iter(evals))
    if transfer_eval not in evals:
        raise ValueError(f"transfer_eval {transfer_eval!r} is not one of the evaluation sets {sorted(evals)}")
    keys = [(m, s) for m in methods for s in sites]

    def at_checkpoint(t: int, first: dict | None) -> dict:
        """Checkpoint ``t``'s refitted reporters, AUROCs and transfer-set activations; ``first`` is
        checkpoint 0's (None at checkpoint 0 itself), whose reporters are also scored here."""
        model = trajectory.model_at(t)
        here = [model.cfg.n_layers, model.cfg.d_model]
        if first is not None and here != first["shape"]:
            raise ValueError(
                f"checkpoint {t} (step {trajectory.steps[t]}) has n_layers, d_model = {tuple(here)}, checkpoint 0 "
                f"has {tuple(first['shape'])}: directions of different architectures compare only through a "
                "growth map"
            )
        acts = capture(model, train, sites, batch_size=batch_size)
        evs = {e: capture(model, s, sites, batch_size=batch_size) for e, s in evals.items()}
        reporters = [fit_method(m, train.truth, site=site, statement=acts.at(sites.index(site))) for m, site in keys]

        def aurocs(r: Reporter) -> dict[str, float]:
            i = sites.index(Site.parse(r.site).name)
            return {e: _auroc(r(evs[e].at(i)), s.truth) for e, s in evals.items()}

        refit = [aurocs(r) for r in reporters]
        return {
            "shape": here,
            "reporters": reporters,
            "refit": refit,
            "initial": refit if first is None else [aurocs(r) for r in first["reporters"]],
            "output": {
                e: _auroc(output_log_odds(model, s, answers=answers, batch_size=batch_size), s.truth)
                for e, s in evals.items()
            },
            "transfer_acts": [evs[transfer_eval].at(i).double() for i in range(len(sites))],
            "fixed": {name: aurocs(r) for name, r in fixed.items()},
            "train_acts": [acts.at(i) for i in range(len(sites))] if first is None else [],
        }

    # checkpoint 0 first (its reporters are scored at every checkpoint), then the others, spread over the
    # ranks under torchrun (elk_lens/distributed.py): each equals what one process computes
    first = at_checkpoint(0, None)
    walk = [first, *spread(range(1, len(trajectory)), lambda t: at_checkpoint(t, first))]
    reporters = {k: [c["reporters"][j] for c in walk] for j, k in enumerate(keys)}
    w_hist = {k: [r.w for r in rs] for k, rs in reporters.items()}
    v_hist = {k: [r.v for r in rs] for k, rs in reporters.items()}
    refit = {k: {e: [c["refit"][j][e] for c in walk] for e in evals} for j, k in enumerate(keys)}
    initial_auroc = {k: {e: [c["initial"][j][e] for c in walk] for e in evals} for j, k in enumerate(keys)}
    output = {e: [c["output"][e] for c in walk] for e in evals}
    eval_acts = {site: [c["transfer_acts"][i] for c in walk] for i, site in enumerate(sites)}
    fixed_auroc = {name: {e: [c["fixed"][name][e] for c in walk] for e in evals} for name in fixed}
    fixed_cos, fixed_cos_v = {}, {}
    for name, r in fixed.items():
        site = Site.parse(r.site).name
        fixed_cos[name] = {m: [round(cosine(r.w, w), 5) for w in w_hist[(m, site)]] for m in methods}
        fixed_cos_v[name] = [round(cosine(r.v, v), 5) for v in v_hist[(methods[0], site)]]
    labels = evals[transfer_eval].truth
    out = {
        "steps": trajectory.steps,
        "sites": sites,
        "methods": list(methods),
        "transfer_eval": transfer_eval,
        "data": {"train": train.fingerprint, **{e: s.fingerprint for e, s in evals.items()}},
        "auroc_refit": _nest(refit),
        "auroc_initial": _nest(initial_auroc),
        "output_auroc": output,
        "auroc_fixed": fixed_auroc,
        "cos_fixed_refit": fixed_cos,
        "cos_v_fixed_refit": fixed_cos_v,
        "cos_w": {},
        "cos_v": {},
        "transfer": {},
        "subspace_angle_deg": {},
        "cka_to_first": {},
        "procrustes_to_first": {},
        "floors": {"cos_w": {}, "cos_v": {}, "cka_final": {}},
    }
    x0 = first["train_acts"]  # checkpoint 0's training activations, per site: the floors resample them

    def w_floor(k: tuple[str, str]) -> dict[str, float]:
        method, site = k
        fit = lambda rows: fit_method(method, rows[1], site=site, statement=rows[0]).w  # noqa: E731
        xy = (x0[sites.index(site)].double(), train.truth)
        return noise_floor(lambda a, b: cosine(fit(a), fit(b)), xy, n_resamples=floor_resamples)

    def site_floors(i: int) -> dict[str, dict[str, float]]:
        a0, a_last = eval_acts[sites[i]][0], eval_acts[sites[i]][-1]
        diff = lambda a, b: cosine(_mean_diff(*a), _mean_diff(*b))  # noqa: E731
        return {
            "cos_v": noise_floor(diff, (x0[i].double(), train.truth), n_resamples=floor_resamples),
            "cka_final": noise_floor(
                lambda a, b: linear_cka(*a) - linear_cka(*b), (a0, a_last), n_resamples=floor_resamples
            ),
        }

    # the floors refit on resampled halves: the costliest part after the captures, spread like the checkpoints
    w_floors, floors_at = spread(keys, w_floor), spread(range(len(sites)), site_floors)
    for k, floor in zip(keys, w_floors, strict=True):
        method, site = k
        ws = cosine_series(torch.stack(w_hist[k]))
        out["cos_w"].setdefault(method, {})[site] = {n: _floats(x) for n, x in ws.items()}
        m = transfer_matrix(reporters[k], eval_acts[site], labels)
        out["transfer"].setdefault(method, {})[site] = [_floats(row) for row in m]
        out["floors"]["cos_w"].setdefault(method, {})[site] = {q: round(v, 4) for q, v in floor.items()}
    for site, floors in zip(sites, floors_at, strict=True):
        k = (methods[0], site)
        # v, the class-mean difference, is the same for every method: one series and floor per site
        out["cos_v"][site] = {n: _floats(x) for n, x in cosine_series(torch.stack(v_hist[k])).items()}
        out["floors"]["cos_v"][site] = {q: round(v, 4) for q, v in floors["cos_v"].items()}
        finals = [
            torch.stack([r.w for r in (reporters[(m, site)][t] for m in methods)], 1) for t in range(len(trajectory))
        ]
        out["subspace_angle_deg"][site] = [_largest_angle(finals[0], f) for f in finals]
        a0 = eval_acts[site][0]
        out["cka_to_first"][site] = [round(linear_cka(a0, a), 5) for a in eval_acts[site]]
        out["procrustes_to_first"][site] = [round(procrustes_distance(a0, a), 5) for a in eval_acts[site]]
        out["floors"]["cka_final"][site] = {q: round(v, 5) for q, v in floors["cka_final"].items()}
    return DriftResult.from_dict(out)


def _check_inputs(trajectory, train, evals, sites, methods, fixed) -> None:
    """The arguments' types, before any checkpoint is loaded (a bare string would be read letter by letter)."""
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory must be a Trajectory; got {type(trajectory).__name__}")
    if not isinstance(train, StatementSet):
        raise TypeError(f"train must be a StatementSet; got {type(train).__name__}")
    if len(train) < 4:  # the noise floors split the training rows in two halves of >= 2
        raise ValueError(f"train needs >= 4 statements for the noise floors; got {len(train)}")
    if not isinstance(evals, dict) or not evals or not all(isinstance(s, StatementSet) for s in evals.values()):
        raise TypeError(f"evals must be a non-empty dict of name -> StatementSet; got {evals!r:.80}")
    for name, value, kinds in (("sites", sites, (str, Site)), ("methods", methods, str)):
        if isinstance(value, (str, Site)) or not value or not all(isinstance(v, kinds) for v in value):
            raise TypeError(f"{name} must be a non-empty list of names; got {value!r}")
    if fixed is not None and not (isinstance(fixed, dict) and all(isinstance(r, Reporter) for r in fixed.values())):
        raise TypeError("fixed must map names to Reporter objects")


def _largest_angle(first: Tensor, now: Tensor) -> float:
    """Largest principal angle (degrees) between the methods' spans; NaN where the methods' directions
    are linearly dependent (a span of lower dimension than the method count has no k angles)."""
    try:
        return round(float(principal_angles(first, now).max()) * 180 / torch.pi, 3)
    except ValueError:
        return float("nan")


def _mean_diff(x: Tensor, y: Tensor) -> Tensor:
    return x[y].mean(0) - x[~y].mean(0)


def _floats(x: Tensor) -> list[float]:
    return [round(float(v), 5) for v in x]


def _nest(table: dict) -> dict:
    out: dict = {}
    for (method, site), value in table.items():
        out.setdefault(method, {})[site] = value
    return out
