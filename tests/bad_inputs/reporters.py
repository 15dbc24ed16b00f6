"""Bad inputs to the numerical API: reporter fits, metrics, erasure, interventions and causal checks.

Every error is raised before any fitting or forward pass and names the argument, the value and the valid
range. Labels outside {0, 1} and non-positive regularization are the battery's findings (issue 13).
"""

import torch

from bad_inputs import Case, Env
from elk_lens.causal import steering_direction
from elk_lens.data.statements import StatementSet
from elk_lens.erasure import fit_leace
from elk_lens.generalization import generalization_study
from elk_lens.interventions import erase, intervene, steer, steer_edit
from elk_lens.lm_output import output_log_odds
from elk_lens.metrics import accuracy, auroc, bootstrap_ci, calibrated_accuracy, ece
from elk_lens.quirky.anomaly import GaussianDetector
from elk_lens.reporters import (
    Reporter,
    fit_ccs,
    fit_crc,
    fit_lda,
    fit_logistic,
    fit_mean_diff,
    fit_ttpd,
    fit_vinc,
    random_direction_baseline,
)
from elk_lens.reporters.batched_lbfgs import batched_lbfgs
from elk_lens.reporters.registry import fit_method
from elk_lens.transfer import earliest_informative_layer, pgr_interval

N, D = 20, 4
SITE = "blocks.1.hook_resid_pre"


def _x(seed: int = 0, n: int = N, d: int = D) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _y(bad: float | None = None) -> torch.Tensor:
    """Alternating 0/1 labels as floats (a 0/1 float column is valid), with row 3 set to ``bad``."""
    y = (torch.arange(N) % 2).double()
    if bad is not None:
        y[3] = bad
    return y


def _polarity() -> torch.Tensor:
    return torch.arange(N) // 2 % 2 == 0  # every (truth, polarity) cell holds 5 rows


def _statement_reporter(env: Env, width: int | None = None) -> Reporter:
    w = torch.ones(width or env.model.cfg.d_model, dtype=torch.float64)
    return Reporter(w, 0.0, w.clone(), "logistic", SITE)


def _steer_into(env: Env, site: str, direction: torch.Tensor, *, alpha: float = 1.0, positions=None):
    tokens = env.model.tokenizer(["abc", "abd"], return_tensors="pt")["input_ids"]
    positions = torch.tensor([2, 2]) if positions is None else positions
    with steer(env.model, site, direction, alpha=alpha, positions=positions), torch.no_grad():
        env.model(tokens)


def _finite_pair(result, env: Env) -> None:
    low, high = result
    assert 0 <= low <= high <= 1, result


CASES = [
    # --- labels outside {0, 1}: each would silently become True (finding) --------------------------------
    Case(
        "reporters/logistic-label-2",
        lambda env: fit_logistic(_x(), _y(2), site=SITE),
        ValueError,
        r"labels must be bool or 0/1; got 2\.0 at index 3",
        finding=True,
    ),
    Case(
        "reporters/mean-diff-label-minus-1",
        lambda env: fit_mean_diff(_x(), _y(-1), site=SITE),
        ValueError,
        r"labels must be bool or 0/1; got -1\.0 at index 3",
        finding=True,
    ),
    Case(
        "reporters/lda-label-half",
        lambda env: fit_lda(_x(), _y(0.5), site=SITE),
        ValueError,
        r"labels must be bool or 0/1; got 0\.5 at index 3",
        finding=True,
    ),
    Case(
        "reporters/ccs-label-nan",
        lambda env: fit_ccs(_x(1), _x(2), _y(float("nan")), site=SITE, n_restarts=1),
        ValueError,
        r"labels contain NaN or inf",
        finding=True,
    ),
    Case(
        "reporters/crc-label-2-int",
        lambda env: fit_crc(_x(1), _x(2), _y(2).long(), site=SITE),
        ValueError,
        r"labels must be bool or 0/1; got 2 at index 3",
        finding=True,
    ),
    Case(
        "reporters/ttpd-label-minus-1",
        lambda env: fit_ttpd(_x(), _y(-1), _polarity(), site=SITE),
        ValueError,
        r"labels must be bool or 0/1; got -1\.0",
        finding=True,
    ),
    Case(
        "reporters/leace-label-2",
        lambda env: fit_leace(_x(), _y(2)),
        ValueError,
        r"labels must be bool or 0/1; got 2\.0",
        finding=True,
    ),
    Case(
        "reporters/fit-method-vinc-label-2",
        lambda env: fit_method("vinc", _y(2), site=SITE, pair=(_x(1), _x(2))),
        ValueError,
        r"labels must be bool or 0/1; got 2\.0",
        finding=True,
    ),
    Case(
        "reporters/auroc-label-2",
        lambda env: auroc(_x()[:, 0], _y(2)),
        ValueError,
        r"labels must be bool or 0/1; got 2\.0 at index 3",
        finding=True,
    ),
    Case(
        "reporters/accuracy-label-half",
        lambda env: accuracy(_x()[:, 0], _y(0.5)),
        ValueError,
        r"labels must be bool or 0/1; got 0\.5",
        finding=True,
    ),
    Case(
        "reporters/calibrated-accuracy-label-minus-1",
        lambda env: calibrated_accuracy(_x()[:, 0], _y(-1)),
        ValueError,
        r"labels must be bool or 0/1; got -1\.0",
        finding=True,
    ),
    Case(
        "reporters/bootstrap-label-2",
        lambda env: bootstrap_ci(auroc, _x()[:, 0], _y(2), n_resamples=10),
        ValueError,
        r"labels must be bool or 0/1; got 2\.0",
        finding=True,
    ),
    Case(
        "reporters/steering-direction-label-2",
        lambda env: steering_direction(_statement_reporter(env, D), _x(), _y(2)),
        ValueError,
        r"y_train must be bool or 0/1; got 2\.0",
        finding=True,
    ),
    # --- non-positive regularization (finding) and other hyperparameters ----------------------------------
    Case(
        "reporters/logistic-C-zero",
        lambda env: fit_logistic(_x(), _y(), site=SITE, C=0),
        ValueError,
        r"C must lie in \(0, inf\); got 0",
        finding=True,
    ),
    Case(
        "reporters/logistic-C-negative",
        lambda env: fit_logistic(_x(), _y(), site=SITE, C=-1.0),
        ValueError,
        r"C must lie in \(0, inf\); got -1\.0",
        finding=True,
    ),
    Case(
        "reporters/logistic-C-nan",
        lambda env: fit_logistic(_x(), _y(), site=SITE, C=float("nan")),
        ValueError,
        r"C must be finite; got nan",
    ),
    Case(
        "reporters/ccs-weight-decay-negative",
        lambda env: fit_ccs(_x(1), _x(2), _y(), site=SITE, weight_decay=-1.0),
        ValueError,
        r"weight_decay must lie in \[0, inf\); got -1\.0",
        finding=True,
    ),
    Case(
        "reporters/ccs-n-restarts-zero",
        lambda env: fit_ccs(_x(1), _x(2), _y(), site=SITE, n_restarts=0),
        ValueError,
        r"n_restarts must be >= 1, got 0",
    ),
    Case(
        "reporters/ccs-n-restarts-float",
        lambda env: fit_ccs(_x(1), _x(2), _y(), site=SITE, n_restarts=2.5),
        TypeError,
        r"n_restarts must be an int; got 2\.5",
    ),
    Case(
        "reporters/ccs-seed-string",
        lambda env: fit_ccs(_x(1), _x(2), _y(), site=SITE, seed="7"),
        TypeError,
        r"seed must be an int; got '7'",
    ),
    Case(
        "reporters/vinc-var-weight-negative",
        lambda env: fit_vinc(_x(1), _x(2), _y(), site=SITE, var_weight=-0.5),
        ValueError,
        r"var_weight must lie in \[0, inf\); got -0\.5",
    ),
    Case(
        "reporters/leace-svd-tol-negative",
        lambda env: fit_leace(_x(), _y(), svd_tol=-1.0),
        ValueError,
        r"svd_tol must lie in \[0, inf\); got -1\.0",
    ),
    Case(
        "reporters/random-baseline-no-directions",
        lambda env: random_direction_baseline(_x(), _y(), _x(1), _y(), n_directions=0),
        ValueError,
        r"n_directions must lie in \[1, inf\); got 0",
    ),
    Case(
        "reporters/random-baseline-eval-label-2",
        lambda env: random_direction_baseline(_x(), _y(), _x(1), _y(2), n_directions=5),
        ValueError,
        r"eval_y must be bool or 0/1; got 2\.0",
    ),
    # --- shapes, dtypes, classes ---------------------------------------------------------------------------
    Case(
        "reporters/one-class-labels",
        lambda env: fit_logistic(_x(), torch.ones(N, dtype=torch.bool), site=SITE),
        ValueError,
        r"needs both classes in the training labels; got all True",
    ),
    Case(
        "reporters/integer-activations",
        lambda env: fit_mean_diff(_x().long(), _y(), site=SITE),
        TypeError,
        r"activations at blocks\.1\.hook_resid_pre must be a floating tensor; got Tensor torch\.int64",
    ),
    Case(
        "reporters/pair-halves-differ-in-width",
        lambda env: fit_crc(_x(1), _x(2, d=D + 1), _y(), site=SITE),
        ValueError,
        r"pair halves differ in shape, \(20, 4\) vs \(20, 5\)",
    ),
    Case(
        "reporters/ttpd-float-groups",
        lambda env: fit_ttpd(_x(), _y(), _polarity(), site=SITE, groups=torch.full((N,), 0.5)),
        TypeError,
        r"groups must hold integer dataset ids; got dtype torch\.float32",
    ),
    Case(
        "reporters/applied-to-wrong-width",
        lambda env: _statement_reporter(env, D)(_x(d=D + 1)),
        ValueError,
        r"d_model=4 .* width 5",
    ),
    # --- metrics -------------------------------------------------------------------------------------------
    Case(
        "reporters/accuracy-nan-scores",
        lambda env: accuracy(torch.tensor([0.3, float("nan")]), [True, False]),
        ValueError,
        r"scores contain NaN or inf",
    ),
    Case(
        "reporters/ece-nan-probabilities",
        lambda env: ece(torch.tensor([0.2, float("nan"), 0.9]), [0, 1, 1]),
        ValueError,
        r"probabilities in \[0, 1\].*NaN",
    ),
    Case(
        "reporters/ece-p-zero",
        lambda env: ece(torch.tensor([0.2, 0.4, 0.9]), [0, 1, 1], p=0),
        ValueError,
        r"p must be one of \[1, 2\]; got 0",
    ),
    Case(
        "reporters/bootstrap-level-as-percent",
        lambda env: bootstrap_ci(auroc, _x()[:, 0], _y(), level=95),
        ValueError,
        r"level must lie in \(0, 1\); got 95",
    ),
    Case(
        "reporters/bootstrap-no-resamples",
        lambda env: bootstrap_ci(auroc, _x()[:, 0], _y(), n_resamples=0),
        ValueError,
        r"n_resamples must lie in \[1, inf\); got 0",
    ),
    Case(
        "reporters/bootstrap-level-one-half",  # a valid narrow interval: accepted, and correct
        lambda env: bootstrap_ci(auroc, _x()[:, 0], _y(), level=0.5, n_resamples=50),
        check=_finite_pair,
    ),
    Case(
        "reporters/pgr-interval-label-2",
        lambda env: pgr_interval((_x()[:, 0], _y(2)), (_x(1)[:, 0], _y()), (_x(2)[:, 0], _y()), n_resamples=5),
        ValueError,
        r"transfer labels must be bool or 0/1; got 2\.0",
    ),
    Case(
        "reporters/eil-threshold-as-percent",
        lambda env: earliest_informative_layer([0.6, 0.9], threshold=95),
        ValueError,
        r"threshold must lie in \[0, 1\]; got 95",
    ),
    Case(
        "reporters/anomaly-score-width",
        lambda env: GaussianDetector(_x(d=3))(_x(d=4)),
        ValueError,
        r"the detector was fitted on 3 features per row; got shape \(20, 4\)",
    ),
    Case(
        "reporters/fit-method-unknown",
        lambda env: fit_method("svm", _y(), site=SITE, statement=_x()),
        ValueError,
        r"unknown reporter method 'svm'; valid methods: \['ccs', 'crc', 'lda'",
    ),
    Case(
        "reporters/lbfgs-history-zero",
        lambda env: batched_lbfgs(lambda p: (p.square().sum(1), 2 * p), torch.ones(2, 3), history_size=0),
        ValueError,
        r"history_size must lie in \[1, inf\); got 0",
    ),
    Case(
        "reporters/generalization-methods-string",
        lambda env: generalization_study(
            env.model, {"s": StatementSet(["abc", "abd"], torch.tensor([True, False]))}, methods="ccs"
        ),
        TypeError,
        r"methods must be a list of method names, got the string 'ccs'; write \['ccs'\]",
    ),
    # --- interventions and the model's own answer ---------------------------------------------------------
    Case(
        "reporters/steer-alpha-nan",
        lambda env: steer_edit(torch.ones(32), float("nan")),
        ValueError,
        r"alpha must be finite; got nan",
    ),
    Case(
        "reporters/steer-direction-nan",
        lambda env: steer_edit(torch.tensor([1.0, float("nan")]), 1.0),
        ValueError,
        r"steering direction contains NaN or inf",
    ),
    Case(
        "reporters/steer-layer-out-of-range",
        lambda env: _steer_into(env, "resid_pre.7", torch.ones(32)),
        KeyError,
        r"blocks\.7\.hook_resid_pre.*do not exist.*layers 0\.\.1",
    ),
    Case(
        "reporters/steer-direction-width",
        lambda env: _steer_into(env, SITE, torch.ones(5)),
        ValueError,
        r"steering direction has width 5 but blocks\.1\.hook_resid_pre has width 32",
    ),
    Case(
        "reporters/erase-direction-list",
        lambda env: erase(env.model, SITE, [1.0, 0.0], positions=torch.tensor([0])),
        TypeError,
        r"erased direction must be a floating tensor \[d_model\]; got list",
    ),
    Case(
        "reporters/intervene-positions-list",
        lambda env: intervene(env.model, SITE, steer_edit(torch.ones(32), 1.0), [2.5, 1.0]).__enter__(),
        ValueError,
        r"positions must be an integer tensor, got torch\.float32",
    ),
    Case(
        "reporters/output-log-odds-answers-string",
        lambda env: output_log_odds(env.model, ["abc"], answers="yn"),
        TypeError,
        r"answers must be a pair of strings \(true answer, false answer\); got 'yn'",
    ),
    Case(
        "reporters/output-log-odds-batch-size-zero",
        lambda env: output_log_odds(env.model, ["abc"], answers=("y", "n"), batch_size=0),
        ValueError,
        r"batch_size must lie in \[1, inf\); got 0",
    ),
    Case(
        "reporters/output-log-odds-bare-string",
        lambda env: output_log_odds(env.model, "abc", answers=("y", "n")),
        TypeError,
        r"statements must be a list of statements, got a single str",
    ),
    Case(
        "reporters/output-log-odds-float-offsets",
        lambda env: output_log_odds(
            env.model, StatementSet(["abc"], torch.tensor([True])), answers=("y", "n"), positions_from_end=(0.5,)
        ),
        TypeError,
        r"positions_from_end\[0\] must be an int; got 0\.5",
    ),
]
