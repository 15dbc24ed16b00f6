"""The closed-form reporters against the same arithmetic in numpy (issue 18, item 2; a script, not a test).

mean-diff, LDA, CRC-TPC and VINC written again in numpy float64, step for step (class means, covariances,
LEACE's pseudo-label erasure, ``eigh`` / ``pinv``, a Newton-fitted 1-D Platt scaling), timed against
``elk_lens.reporters`` on the same data, one thread each (torch's and numpy's BLAS), interleaved repeats,
the median of per-repeat ratios. The readout directions must agree (|cos| printed) or the timing means
nothing. Target: at numpy speed (ratio <= 1).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/closed_form_fits.py --out benchmarks/results/closed_form_fits.json
"""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from _timing import interleaved, paired

from elk_lens.reporters import fit_crc, fit_lda, fit_mean_diff, fit_vinc


def platt(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """1-D logistic regression ``sigmoid(a s + b)`` by Newton's method (C = 1e6: unpenalized in effect)."""
    a = b = 0.0
    t = y.astype(float)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(a * s + b)))
        g = np.array([((p - t) * s).sum() + a / 1e6, (p - t).sum()])
        w = p * (1 - p)
        h = np.array([[(w * s * s).sum() + 1 / 1e6, (w * s).sum()], [(w * s).sum(), w.sum()]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-12:
            break
    return a, b


def np_mean_diff(x, y):
    theta = x[y].mean(0) - x[~y].mean(0)
    return theta * platt(x @ theta, y)[0]


def np_lda(x, y):
    mu_t, mu_f = x[y].mean(0), x[~y].mean(0)
    centred = np.where(y[:, None], x - mu_t, x - mu_f)
    sigma = centred.T @ centred / len(x)
    vals, vecs = np.linalg.eigh(sigma)
    inv = np.where(vals > 1e-3, 1 / np.where(vals > 1e-3, vals, 1), 0)
    direction = (vecs * inv) @ (vecs.T @ (mu_t - mu_f))
    return direction * platt(x @ direction, y)[0]


def np_erasure(x_true, x_false):
    """LEACE's eraser of the binary pseudo-label (Belrose et al., arXiv 2306.03819), linear part."""
    x = np.concatenate([x_false, x_true])
    z = np.concatenate([np.zeros(len(x_false)), np.ones(len(x_true))])
    xc = x - x.mean(0)
    sigma = xc.T @ xc / len(x)
    cross = xc.T @ (z - z.mean()) / len(x)
    vals, vecs = np.linalg.eigh(sigma)
    keep = vals > vals.max() * len(vals) * np.finfo(vals.dtype).eps
    inv_sqrt = np.where(keep, 1 / np.sqrt(np.where(keep, vals, 1)), 0)
    sqrt = np.where(keep, np.sqrt(np.clip(vals, 0, None)), 0)
    whiten, unwhiten = (vecs * inv_sqrt) @ vecs.T, (vecs * sqrt) @ vecs.T
    u = whiten @ cross
    u /= np.linalg.norm(u)
    return np.eye(len(sigma)) - np.outer(whiten @ u, unwhiten @ u)  # x @ this: rows erased


def np_crc(x_true, x_false, y):
    erase = np_erasure(x_true, x_false)
    diff = x_true - x_false
    erased = diff @ erase
    erased -= erased.mean(0)
    _, vecs = np.linalg.eigh(erased.T @ erased / len(erased))
    direction = erase @ vecs[:, -1]
    return direction * platt(diff @ direction, y)[0]


def np_vinc(x_true, x_false, y):
    n = len(x_true)
    c_t, c_f = x_true - x_true.mean(0), x_false - x_false.mean(0)
    cross = c_f.T @ c_t / n
    objective = -0.5 * (cross + cross.T) / 2
    erase = np_erasure(x_true, x_false)
    _, vecs = np.linalg.eigh(erase.T @ objective @ erase)
    direction = erase @ vecs[:, -1]
    return direction * platt((x_true - x_false) @ direction, y)[0]


def data(n: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randn(d, generator=gen)
    y = torch.rand(n, generator=gen) > 0.5
    base = torch.randn(n, d, generator=gen) @ (torch.eye(d) + 0.1 * torch.randn(d, d, generator=gen))
    sign = torch.where(y, 1.0, -1.0)[:, None]
    x_true = base + sign * truth + 0.5 * torch.randn(n, d, generator=gen)
    x_false = base - sign * truth + 0.3 * torch.ones(d)
    return base + sign * truth, x_true, x_false, y


def measure_shape(n: int, d: int, repeats: int) -> dict:
    x, x_true, x_false, y = data(n, d)
    xn, tn, fn = (t.numpy() for t in (x, x_true, x_false))  # float32, as captured; both sides widen to float64
    yn = y.numpy()
    f64 = np.float64
    pairs = {
        "mean_diff": (lambda: fit_mean_diff(x, y, site="s").w, lambda: np_mean_diff(xn.astype(f64), yn)),
        "lda": (lambda: fit_lda(x, y, site="s").w, lambda: np_lda(xn.astype(f64), yn)),
        "crc": (lambda: fit_crc(x_true, x_false, y, site="s").w, lambda: np_crc(tn.astype(f64), fn.astype(f64), yn)),
        "vinc": (
            lambda: fit_vinc(x_true, x_false, y, site="s").w,
            lambda: np_vinc(tn.astype(f64), fn.astype(f64), yn),
        ),
    }
    rows = {}
    for name, (ours, ref) in pairs.items():
        w_ours, w_ref = ours().numpy(), ref()
        times = interleaved({"elk_lens": ours, "numpy": ref}, repeats)
        rows[name] = {
            "cos(elk_lens w, numpy w)": float(w_ours @ w_ref / np.linalg.norm(w_ours) / np.linalg.norm(w_ref)),
            "elk_lens ms": 1e3 * statistics.median(times["elk_lens"]),
            "numpy ms": 1e3 * statistics.median(times["numpy"]),
            "elk_lens / numpy": paired(times["elk_lens"], times["numpy"]),
        }
        print(f"{n}x{d}", name, json.dumps(rows[name]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["4096x128", "4096x576"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {}
    for shape in args.shapes:
        n, d = (int(v) for v in shape.split("x"))
        result[shape] = measure_shape(n, d, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
