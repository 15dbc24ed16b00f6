"""The reporter registry: ``fit_method`` hands each method what it reads, and fails loudly otherwise."""

import numpy as np
import pytest
import torch

from elk_lens.metrics import auroc
from elk_lens.reporters import Reporter, fit_ttpd
from elk_lens.reporters.registry import METHODS, fit_method

D, N = 8, 160
SITE = "blocks.0.hook_resid_post"
FITS_TRAIN = 0.9  # training AUROC on the planted problem (measured 1.0 for every method)


def _problem(seed: int = 0) -> dict[str, torch.Tensor]:
    """Orthonormal truth t, polarity t_p and answer-token axes; exactly balanced truth and polarity.

    Statements: ``x = tau t + tau p t_p + noise`` (TTPD's generative model, tau and p = +-1). Pairs:
    ``x_true = base + a + tau t``, ``x_false = base - a - tau t``, with a label-free ``base`` shared by
    both halves, and ``a`` the appended answer's own offset.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, 4)))
    t, t_p, a, nuisance = q.T
    tau = rng.permutation(np.where(np.arange(N) < N // 2, 1.0, -1.0))
    pol = np.where(rng.permutation(N) % 4 < 2, 1.0, -1.0)  # independent of tau, and balanced
    x = tau[:, None] * t + (tau * pol)[:, None] * t_p + 0.3 * rng.normal(size=(N, D))
    base = 3 * rng.normal(size=(N, 1)) * nuisance
    x_true = base + a + tau[:, None] * t + 0.1 * rng.normal(size=(N, D))
    x_false = base - a - tau[:, None] * t + 0.1 * rng.normal(size=(N, D))
    return {
        k: torch.as_tensor(v) for k, v in dict(x=x, x_true=x_true, x_false=x_false, y=tau > 0, polarity=pol > 0).items()
    }


def _inputs(name: str, p: dict) -> dict:
    """What ``fit_method`` needs for ``name``, per the registry's own description of the method."""
    method = METHODS[name]
    kw = {"pair": (p["x_true"], p["x_false"])} if method.reads == "contrast" else {"statement": p["x"]}
    if method.needs_polarity:
        kw["polarity"] = p["polarity"]
    return kw


def test_registry_names_are_consistent():
    assert all(m.name == name for name, m in METHODS.items())
    assert {m.reads for m in METHODS.values()} == {"statement", "contrast"}
    assert [n for n, m in METHODS.items() if m.needs_polarity] == ["ttpd"]
    assert {n for n, m in METHODS.items() if not m.supervised} == {"ccs", "crc", "vinc"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_fits_and_reads_what_the_registry_says(name):
    p = _problem()
    rep = fit_method(name, p["y"], site=SITE, provenance={"tag": "registry-test"}, **_inputs(name, p))
    assert isinstance(rep, Reporter)
    assert rep.reads == METHODS[name].reads and rep.method == name and rep.site == SITE
    assert rep.provenance["tag"] == "registry-test"
    scores = rep(p["x_true"], p["x_false"]) if rep.reads == "contrast" else rep(p["x"])
    assert auroc(scores, p["y"]) > FITS_TRAIN
    # fit_method is only dispatch: the same call to the method's own fit gives the same reporter
    method = METHODS[name]
    if method.reads == "contrast":
        direct = method.fit(p["x_true"], p["x_false"], p["y"], site=SITE, provenance={"tag": "registry-test"})
    elif method.needs_polarity:
        direct = method.fit(p["x"], p["y"], p["polarity"], site=SITE, provenance={"tag": "registry-test"})
    else:
        direct = method.fit(p["x"], p["y"], site=SITE, provenance={"tag": "registry-test"})
    assert torch.equal(direct.w, rep.w) and direct.b == rep.b


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if m.reads == "statement"))
def test_a_statement_method_given_only_a_pair_says_to_pass_statement(name):
    p = _problem()
    with pytest.raises(ValueError, match=f"{name} reads statement activations: pass statement=x"):
        fit_method(name, p["y"], site=SITE, pair=(p["x_true"], p["x_false"]), polarity=p["polarity"])


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if m.reads == "contrast"))
def test_a_pair_method_given_only_statements_says_to_pass_a_pair(name):
    p = _problem()
    with pytest.raises(ValueError, match=rf"{name} reads contrast pairs: pass pair=\(x_true, x_false\)"):
        fit_method(name, p["y"], site=SITE, statement=p["x"])


def test_an_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown reporter method 'cc'; valid methods: ") as err:
        fit_method("cc", torch.ones(4, dtype=torch.bool), site=SITE, statement=torch.zeros(4, D))
    assert all(repr(name) in str(err.value) for name in METHODS)


def test_ttpd_through_fit_method_needs_polarity():
    p = _problem()
    with pytest.raises(ValueError, match="TTPD needs a polarity column"):
        fit_method("ttpd", p["y"], site=SITE, statement=p["x"])
    rep = fit_method("ttpd", p["y"], site=SITE, statement=p["x"], polarity=p["polarity"])
    direct = fit_ttpd(p["x"], p["y"], p["polarity"], site=SITE)
    assert torch.equal(rep.w, direct.w) and rep.b == direct.b
