"""``fit_logistic`` against scikit-learn at the same optimum (a script, not a test).

Problems shaped like the probes elk-lens fits: residual-like features (correlated, unequal scales) with a
noisy linear truth label, at (n, d) = (480, 576) (a SmolLM2 layer, 800 rows of a truth set, train split),
(4096, 128) and (4096, 384) (issue 18's quirky-arith and MiniLM shapes). Each solver fits the same
standardized features with C = 1:

- elk-lens ``logistic_regression`` (Newton-Cholesky, gradient tolerance 1e-10 on the objective / nC);
- scikit-learn ``lbfgs`` at ``tol=1e-10`` (matched: both stop near machine precision) and at its defaults;
- scikit-learn ``newton-cholesky`` at ``tol=1e-10``.

Reported per solver: CPU seconds (median of ``--repeats``, one thread), the objective's excess over the
best of all solvers (relative), and the held-out AUROC (an independent test draw).

    .venv/bin/python benchmarks/logistic_fit.py [--repeats 5] [--out benchmarks/results/logistic_fit.json]

Run it at an older commit (``git worktree``) for the before figure; it uses only the public
``logistic_regression``.
"""

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from elk_lens.reporters.logistic import logistic_regression

SHAPES = [(480, 576), (4096, 128), (4096, 384)]


def problem(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test draws of correlated features and a noisy linear label, standardized on train."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) * rng.uniform(0.2, 3, d)
    w = rng.normal(size=d)

    def draw(rows: int):
        x = rng.normal(size=(rows, d)) @ mix + rng.normal(size=d)
        score = x @ w
        return x, score + rng.normal(size=rows) * score.std() > np.median(score)

    (x, y), (xt, yt) = draw(n), draw(n)
    mean, std = x.mean(0), x.std(0, ddof=1)
    return (x - mean) / std, y, (xt - mean) / std, yt


def objective(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, C: float) -> float:
    z = x @ w + b
    return 0.5 * w @ w + C * float(np.sum(np.logaddexp(0, z) - y * z))


def solvers(x: np.ndarray, y: np.ndarray) -> dict:
    def elk():
        w, b = logistic_regression(torch.as_tensor(x), torch.as_tensor(y))
        return w.numpy(), b

    def sk(**kw):
        def fit():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m = LogisticRegression(C=1.0, **kw).fit(x, y)
            return m.coef_[0], float(m.intercept_[0])

        return fit

    return {
        "elk_lens": elk,
        "sklearn_lbfgs_tol1e-10": sk(tol=1e-10, max_iter=100_000),
        "sklearn_lbfgs_default": sk(),
        "sklearn_newton_cholesky_tol1e-10": sk(solver="newton-cholesky", tol=1e-10, max_iter=1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/logistic_fit.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS under scikit-learn, as torch above
    rows = []
    for n, d in SHAPES:
        x, y, xt, yt = problem(n, d, seed=0)
        fits = solvers(x, y)
        times = {name: [] for name in fits}
        results = {}
        for _ in range(args.repeats):  # interleaved
            for name, fit in fits.items():
                t0 = time.process_time()
                results[name] = fit()
                times[name].append(time.process_time() - t0)
        objs = {name: objective(w, b, x, y, 1.0) for name, (w, b) in results.items()}
        best = min(objs.values())
        for name, (w, b) in results.items():
            rows.append(
                {
                    "n": n,
                    "d": d,
                    "solver": name,
                    "cpu_s": statistics.median(times[name]),
                    "objective_excess": (objs[name] - best) / abs(best),
                    "test_auroc": float(roc_auc_score(yt, xt @ w + b)),
                }
            )
            r = rows[-1]
            print(
                f"n={n:5d} d={d:4d} {name:34s} {r['cpu_s']:8.3f} s  excess {r['objective_excess']:.1e}  "
                f"test AUROC {r['test_auroc']:.4f}",
                flush=True,
            )
    for n, d in SHAPES:
        cpu = {r["solver"]: r["cpu_s"] for r in rows if (r["n"], r["d"]) == (n, d)}
        matched = cpu["elk_lens"] / cpu["sklearn_lbfgs_tol1e-10"]
        default = cpu["elk_lens"] / cpu["sklearn_lbfgs_default"]
        print(f"n={n} d={d}: elk-lens / sklearn lbfgs (matched tol) {matched:.2f}x, / sklearn defaults {default:.2f}x")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"repeats": args.repeats, "threads": 1, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
