"""Circuit scores: direct attribution is an exact decomposition, exact patching is a sound oracle,
attribution patching is its first-order estimate, and faithfulness has the right end points.

Math checks run on the tiny native model in float64 (named tolerances); the zoo model checks the
quirky-arithmetic setting the benchmark measures (benchmarks/circuits_bench.py).
"""

import pytest
import torch
from conftest import D_MODEL, boot_native

from elk_lens.capturing import capture
from elk_lens.circuits import (
    BIASES,
    attribution_patching,
    direct_attribution,
    edge_attribution_patching,
    exact_edge_patching,
    exact_patching,
    faithfulness,
    faithfulness_curve,
    mean_scores,
    smallest_circuit,
    spearman,
    upstream_components,
    upstream_edges,
)
from elk_lens.circuits._engine import Batch, patched_scores, record
from elk_lens.circuits._inputs import pair_tokens
from elk_lens.circuits.components import _components
from elk_lens.circuits.edges import _edge_scores, _edges, _writer_deltas
from elk_lens.circuits.ranking import rank
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.twins import sum_vs_sloppy_pairs
from elk_lens.reporters import Reporter, fit_logistic
from elk_lens.sites import Site

FP64_TOL = 1e-9  # identities that hold up to float64 rounding (measured ~1e-15)
FP32_TOL = 1e-4
ZOO_SITE = "blocks.3.hook_resid_pre"

# twins of equal length that differ in a few characters; different lengths across pairs (right padding)
CLEAN = ["the cat sat on a mat", "a dog ran", "one two three four", "is it true?", "abc def"]
CORRUPT = ["the cow sat on a hat", "a cat ran", "one six three four", "is it fals?", "abd daf"]


def _reporter(model, site: str, seed: int = 0) -> Reporter:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(model.cfg.d_model, generator=g, dtype=torch.float64)
    return Reporter(w, 0.3, w.clone(), "random", site, {"model": fingerprint(model)})


@pytest.fixture(scope="module")
def model64(char_tok_dir):
    return boot_native(char_tok_dir, dtype=torch.float64)


@pytest.fixture(scope="module")
def zoo():
    """The zoo model in float64 and a logistic reporter fitted on its Alice-easy statements."""
    model = load_model("zoo:quirky-arith", dtype=torch.float64)
    train = quirky_arithmetic(600, split="val", seed=0).where(character="Alice", easy=True)
    x = capture(model, train, [ZOO_SITE], dtype=torch.float64).at(0)
    reporter = fit_logistic(x, train.truth, site=ZOO_SITE, provenance={"model": fingerprint(model)})
    clean, corrupt = sum_vs_sloppy_pairs(32)
    return model, reporter, clean, corrupt


# ---------------------------------------------------------------- components


def test_upstream_components_follow_the_site_kind(model64):
    heads0 = [f"L0H{h}" for h in range(4)]
    heads1 = [f"L1H{h}" for h in range(4)]
    assert upstream_components(model64, "blocks.0.hook_resid_pre") == ["embed"]
    assert upstream_components(model64, "blocks.1.hook_resid_pre") == ["embed", *heads0, "L0MLP"]
    assert upstream_components(model64, "blocks.1.hook_resid_mid") == ["embed", *heads0, "L0MLP", *heads1]
    assert upstream_components(model64, "resid_post.1") == ["embed", *heads0, "L0MLP", *heads1, "L1MLP"]


# ---------------------------------------------------------------- direct attribution


@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"])
def test_direct_attribution_reconstructs_the_score_float64(model64, site):
    assert_direct_attribution_is_exact(model64, site)


def assert_direct_attribution_is_exact(model, site: str) -> None:
    """sum(DA) + biases + b == the reporter's score on the float64 ``model``, to FP64_TOL."""
    reporter = _reporter(model, site)
    da = direct_attribution(model, reporter, CLEAN)
    assert list(da) == [*upstream_components(model, site), BIASES]
    score = reporter(capture(model, CLEAN, [site], dtype=torch.float64).at(0))
    err = float((sum(da.values()) + reporter.b - score).abs().max())
    assert err < FP64_TOL, f"sum(DA) + biases + b differs from the score by {err:.2e}"


def test_direct_attribution_reconstructs_the_score_float32(char_tok_dir):
    model = boot_native(char_tok_dir)
    reporter = _reporter(model, "blocks.1.hook_resid_post")
    da = direct_attribution(model, reporter, CLEAN, batch_size=2)  # batches of uneven widths
    score = reporter(capture(model, CLEAN, [reporter.site]).at(0))
    err = float((sum(da.values()) + reporter.b - score).abs().max())
    assert err < FP32_TOL * float(score.abs().max()), f"float32 drift {err:.2e}"


def test_direct_attribution_reconstructs_the_zoo_score(zoo):
    model, reporter, clean, _ = zoo
    da = direct_attribution(model, reporter, clean)
    score = reporter(capture(model, clean, [ZOO_SITE], dtype=torch.float64).at(0))
    err = float((sum(da.values()) + reporter.b - score).abs().max())
    assert err < FP64_TOL, f"zoo model: identity error {err:.2e}"


def test_direct_attribution_components_subset(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    full = direct_attribution(model64, reporter, CLEAN)
    part = direct_attribution(model64, reporter, CLEAN, components=["L1H2", "embed"])
    assert list(part) == ["L1H2", "embed", BIASES]
    assert torch.equal(part["L1H2"], full["L1H2"]) and torch.equal(part[BIASES], full[BIASES])


# ---------------------------------------------------------------- exact patching (oracle)


def test_patching_a_run_with_its_own_activations_changes_nothing(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    delta = exact_patching(model64, reporter, CLEAN, CLEAN, max_rows=12)  # several components per forward
    assert all(torch.equal(v, torch.zeros_like(v)) for v in delta.values()), mean_scores(delta)


def test_the_default_rows_per_forward_is_the_size_measured_for_the_device(model64, monkeypatch):
    """max_rows=None stacks plans up to the measured size (benchmarks/patching_rows.py), one plan per forward
    from that many pairs on; the scores do not depend on how plans are stacked."""
    from elk_lens.circuits import _engine

    assert _engine.plans_per_forward(model64, 64, None) == _engine.ROWS_PER_FORWARD["cpu"] // 64
    assert _engine.plans_per_forward(model64, _engine.ROWS_PER_FORWARD["cpu"], None) == 1
    assert _engine.plans_per_forward(model64, 10, 25) == 2 and _engine.plans_per_forward(model64, 30, 25) == 1
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    stacked = exact_patching(model64, reporter, CLEAN, CORRUPT)
    monkeypatch.setitem(_engine.ROWS_PER_FORWARD, "cpu", 1)
    alone = exact_patching(model64, reporter, CLEAN, CORRUPT)
    assert all(torch.allclose(stacked[n], alone[n], rtol=0, atol=FP64_TOL) for n in alone)


def _runs(model, reporter, clean, corrupt):
    site = Site.parse(reporter.site)
    every = _components(model, site)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    rows = slice(0, len(clean_tok))
    clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
    dtype = torch.float64
    base = record(model, reporter, site, clean_b, every, dtype)
    twin = record(model, reporter, site, corrupt_b, every, dtype)
    return site, every, clean_b, base, twin


def test_patching_every_component_reproduces_the_corrupted_run(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    site, every, clean_b, base, twin = _runs(model64, reporter, CLEAN, CORRUPT)
    all_of_them = {c: c.take(twin.acts[c.hook]) for c in every}
    but_embed = {c: v for c, v in all_of_them.items() if c.name != "embed"}
    patched = patched_scores(model64, reporter, site, clean_b, [all_of_them, but_embed], torch.float64)
    assert float((patched[0] - twin.score).abs().max()) < FP64_TOL
    # the residual is a sum: with every writer but the embedding from the twin, only the embedding's
    # direct write differs from the corrupted run
    da_clean, da_corrupt = direct_attribution(model64, reporter, CLEAN), direct_attribution(model64, reporter, CORRUPT)
    expected = twin.score - da_corrupt["embed"] + da_clean["embed"]
    assert float((patched[1] - expected).abs().max()) < FP64_TOL
    assert float((twin.score - base.score).abs().max()) > 0.1  # the twins do differ


def test_exact_patching_finds_the_one_head_that_carries_the_difference(char_tok_dir):
    model = boot_native(char_tok_dir, dtype=torch.float64)
    with torch.no_grad():  # only L1H2 and the embedding can carry a difference to the site
        for layer in range(2):
            for head in range(4):
                if (layer, head) != (1, 2):
                    model.blocks[layer].attn.W_O[head].zero_()
            model.blocks[layer].mlp.W_out.zero_()
    reporter = _reporter(model, "blocks.1.hook_resid_post")
    exact = exact_patching(model, reporter, CLEAN, CORRUPT)
    ap = attribution_patching(model, reporter, CLEAN, CORRUPT)
    da = direct_attribution(model, reporter, CLEAN)
    others = [n for n in exact if n not in ("embed", "L1H2")]

    def largest(scores, names):
        return max(float(scores[n].abs().max()) for n in names)

    assert float(exact["L1H2"].abs().min()) > 1e-3, exact["L1H2"]  # every pair: signs differ across pairs
    assert largest(exact, others) == 0 and largest(ap, others) == 0, (mean_scores(exact), mean_scores(ap))
    assert float(ap["L1H2"].abs().min()) > 1e-4
    assert largest(da, [n for n in others if "MLP" not in n]) == 0  # an MLP still writes its constant b_out
    # each pair's twins end on the same character, so the embedding has no direct write at the read
    # position: its whole effect runs through L1H2
    assert float((exact["embed"] - exact["L1H2"]).abs().max()) < FP64_TOL


# ---------------------------------------------------------------- attribution patching


def test_attribution_patching_is_the_derivative_of_exact_patching(model64):
    assert_ap_is_the_derivative(model64, eps=1e-4, rtol=1e-6)


def assert_ap_is_the_derivative(model, *, eps: float, rtol: float) -> None:
    """Patch a + eps (a' - a): the central difference quotient must equal AP for every component, to
    ``rtol`` relative to the AP value (float64 ``model``)."""
    reporter = _reporter(model, "blocks.1.hook_resid_post")
    site, every, clean_b, base, twin = _runs(model, reporter, CLEAN, CORRUPT)

    def plans(sign):
        return [
            {c: c.take(base.acts[c.hook]) + sign * eps * (c.take(twin.acts[c.hook]) - c.take(base.acts[c.hook]))}
            for c in every
        ]

    up = patched_scores(model, reporter, site, clean_b, plans(1), torch.float64)
    down = patched_scores(model, reporter, site, clean_b, plans(-1), torch.float64)
    derivative = (up - down) / (2 * eps)
    ap = attribution_patching(model, reporter, CLEAN, CORRUPT)
    for i, c in enumerate(every):
        err = float((derivative[i] - ap[c.name]).abs().max())
        assert err < rtol * (1 + float(ap[c.name].abs().max())), f"{c.name}: AP off the derivative by {err:.2e}"


def test_attribution_patching_is_exact_for_a_write_straight_into_the_site(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_pre")  # L0MLP writes into it with nothing in between
    exact = exact_patching(model64, reporter, CLEAN, CORRUPT, components=["L0MLP"])["L0MLP"]
    ap = attribution_patching(model64, reporter, CLEAN, CORRUPT, components=["L0MLP"])["L0MLP"]
    direct = (
        direct_attribution(model64, reporter, CORRUPT)["L0MLP"] - direct_attribution(model64, reporter, CLEAN)["L0MLP"]
    )
    assert float((ap - exact).abs().max()) < FP64_TOL and float((direct - exact).abs().max()) < FP64_TOL


def test_integrated_gradients_steps(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    plain = attribution_patching(model64, reporter, CLEAN, CORRUPT)
    one = attribution_patching(model64, reporter, CLEAN, CORRUPT, ig_steps=1)
    assert all(torch.equal(plain[n], one[n]) for n in plain)
    # for the embedding, integrated gradients along the embedding path converge on exact patching
    exact = exact_patching(model64, reporter, CLEAN, CORRUPT, components=["embed"])["embed"]
    errors = [
        float((attribution_patching(model64, reporter, CLEAN, CORRUPT, ig_steps=m)["embed"] - exact).abs().max())
        for m in (1, 8, 64)
    ]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.05 * float(exact.abs().max()), errors
    with pytest.raises(ValueError, match="ig_steps must be >= 1"):
        attribution_patching(model64, reporter, CLEAN, CORRUPT, ig_steps=0)


def test_zoo_attribution_ranks_against_exact_patching(zoo):
    """On the zoo model plain AP ranks components poorly (digit swaps are far from linear; measured
    Spearman ~0.1), while a few integrated-gradient steps recover the exact ranking (~0.95)."""
    model, reporter, clean, corrupt = zoo
    exact = exact_patching(model, reporter, clean, corrupt)
    ig = attribution_patching(model, reporter, clean, corrupt, ig_steps=4)
    rho = spearman(ig, exact)
    assert rho >= 0.8, f"Spearman(AP-IG, exact) = {rho:.3f} over {len(exact)} components"
    ap = attribution_patching(model, reporter, clean, corrupt)
    last_mlp = float((ap["L2MLP"] - exact["L2MLP"]).abs().max())
    assert last_mlp < FP64_TOL, f"L2MLP writes straight into {ZOO_SITE}: AP must be exact, off by {last_mlp:.2e}"


# ---------------------------------------------------------------- faithfulness


def test_faithfulness_end_points(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    everything = upstream_components(model64, reporter.site)
    for ablation in ("twin", "mean"):
        full = faithfulness(model64, reporter, CLEAN, CORRUPT, everything, ablation=ablation)
        empty = faithfulness(model64, reporter, CLEAN, CORRUPT, [], ablation=ablation)
        assert abs(full - 1) < FP64_TOL and abs(empty) < FP64_TOL, (ablation, full, empty)
    curve = faithfulness_curve(model64, reporter, CLEAN, CORRUPT, everything[::-1], max_rows=7)
    assert curve.shape == (len(everything) + 1,)
    assert abs(float(curve[0])) < FP64_TOL and abs(float(curve[-1]) - 1) < FP64_TOL
    one = faithfulness(model64, reporter, CLEAN, CORRUPT, everything[::-1][:3])
    assert abs(float(curve[3]) - one) < FP64_TOL


def test_smallest_circuit_is_the_first_prefix_that_reaches_the_target(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    scores = exact_patching(model64, reporter, CLEAN, CORRUPT)
    for ablation in ("twin", "mean"):
        circuit = smallest_circuit(scores, model64, reporter, CLEAN, CORRUPT, target=0.8, ablation=ablation)
        means = mean_scores(scores)
        assert list(circuit.order) == sorted(means, key=lambda n: -abs(means[n]))
        assert circuit.curve[circuit.size] >= 0.8 and bool((circuit.curve[: circuit.size] < 0.8).all())
        assert circuit.components == circuit.order[: circuit.size] and circuit.ablation == ablation


# ---------------------------------------------------------------- bad input


def test_reporter_from_another_model_is_refused(model64, char_tok_dir):
    other = boot_native(char_tok_dir, dtype=torch.float64, seed=1)
    reporter = _reporter(other, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="fitted on model .* allow_other_model=True"):
        direct_attribution(model64, reporter, CLEAN)
    with pytest.raises(ValueError, match="fitted on model"):
        exact_patching(model64, reporter, CLEAN, CORRUPT)
    assert direct_attribution(model64, reporter, CLEAN, allow_other_model=True)  # on purpose: allowed
    wide = Reporter(torch.ones(D_MODEL + 1), 0.0, torch.ones(D_MODEL + 1), "x", "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="d_model=33 .* d_model=32"):
        attribution_patching(model64, wide, CLEAN, CORRUPT)
    pair = Reporter(torch.ones(D_MODEL), 0.0, torch.ones(D_MODEL), "ccs", "blocks.1.hook_resid_pre", reads="contrast")
    with pytest.raises(ValueError, match="statement reporter"):
        direct_attribution(model64, pair, CLEAN)


def test_twins_of_different_token_lengths_are_refused(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_pre")
    corrupt = [*CORRUPT[:2], "one six three fours", *CORRUPT[3:]]
    for method in (exact_patching, attribution_patching):
        with pytest.raises(ValueError, match=r"token length in 1 pair\(s\), e\.g\. pair 2: 19 vs 20 tokens"):
            method(model64, reporter, CLEAN, corrupt)
    with pytest.raises(ValueError, match="5 clean statements but 4 corrupted twins"):
        faithfulness(model64, reporter, CLEAN, CORRUPT[:4], ["embed"])


def test_unknown_components_are_named_with_the_valid_ones(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match=r"unknown component\(s\) \['L0H9'\] .* valid: \['embed', 'L0H0'"):
        exact_patching(model64, reporter, CLEAN, CORRUPT, components=["L0H9"])
    with pytest.raises(ValueError, match=r"\['L1H0'\] write after blocks.1.hook_resid_pre"):
        direct_attribution(model64, reporter, CLEAN, components=["L1H0"])
    with pytest.raises(ValueError, match="unknown component"):
        faithfulness(model64, reporter, CLEAN, CORRUPT, ["embed", "L0MPL"])
    with pytest.raises(ValueError, match=r"unknown ablation 'zero'; valid: \('twin', 'mean'\)"):
        faithfulness(model64, reporter, CLEAN, CORRUPT, ["embed"], ablation="zero")
    with pytest.raises(ValueError, match="scores name unknown component"):
        smallest_circuit({"L7MLP": 1.0}, model64, reporter, CLEAN, CORRUPT)


def test_a_post_ln_model_is_refused(bert_model):
    reporter = _reporter(bert_model, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="not the sum of the component writes"):
        direct_attribution(bert_model, reporter, CLEAN[:2])


# ---------------------------------------------------------------- helpers


def test_spearman_and_ranks():
    assert rank(torch.tensor([10.0, 30.0, 20.0, 30.0])).tolist() == [1.0, 3.5, 2.0, 3.5]
    a = {"x": torch.tensor([1.0, 3.0]), "y": 5.0, "z": -1.0, BIASES: 9.0}
    assert spearman(a, {"x": 0.0, "y": 1.0, "z": -3.0}) == pytest.approx(1.0)
    assert spearman(a, {"x": 0.0, "y": -1.0, "z": 3.0}) == pytest.approx(-1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    u, v = torch.randint(0, 5, (12,), generator=g).double(), torch.randn(12, generator=g, dtype=torch.float64)
    ours = spearman({str(i): u[i] for i in range(12)}, {str(i): v[i] for i in range(12)})
    assert ours == pytest.approx(scipy_stats.spearmanr(u.numpy(), v.numpy()).statistic, abs=1e-12)


def test_sum_vs_sloppy_pairs_are_aligned_twins(zoo):
    model, _, clean, corrupt = zoo
    assert len(clean) == len(corrupt) == 32 and len(set(clean)) == 32
    site = Site.parse(ZOO_SITE)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    assert torch.equal(clean_tok.mask, corrupt_tok.mask)
    for c, k in zip(clean, corrupt, strict=True):
        a, rest = c.split("+")
        b, shown = rest.split("=")
        assert int(shown[:4]) == int(a) + int(b) and k.startswith(c[:8]) and c.endswith("Alice:")


# ---------------------------------------------------------------- edges (EAP and its exact oracle)


def _eap_edges(L: int, H: int) -> int:
    """Edge count of docs/methods/drift_growth_circuits.md §2.1 (EAP-IG graph, the site in place of the logits)."""
    return L * (5 * H + 2) + 1 + (H + 1) * (3 * H + 1) * L * (L - 1) // 2


def test_edge_counts_match_the_eap_graph(model64, zoo):
    assert len(upstream_edges(model64, "blocks.1.hook_resid_post")) == _eap_edges(2, 4) == 110
    assert len(upstream_edges(zoo[0], "blocks.3.hook_resid_post")) == 479
    edges = upstream_edges(model64, "blocks.1.hook_resid_pre")
    assert "L0H1->L0MLP" in edges and "embed->L0H2.k" in edges and "L0MLP->site" in edges
    assert not any(e.startswith("L0H1->L0H") for e in edges)  # a head does not feed its own layer's heads


@pytest.mark.parametrize("ig_steps", [1, 3])
def test_edge_scores_sum_to_node_attribution_patching(model64, ig_steps):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    eap = edge_attribution_patching(model64, reporter, CLEAN, CORRUPT, ig_steps=ig_steps, batch_size=3)
    ap = attribution_patching(model64, reporter, CLEAN, CORRUPT, ig_steps=ig_steps)
    for writer, node in ap.items():
        total = sum(v for k, v in eap.items() if k.startswith(f"{writer}->"))
        err = float((total - node).abs().max())
        assert err < FP64_TOL * (1 + float(node.abs().max())), f"{writer}: sum over readers off AP by {err:.2e}"


def test_exact_edge_patching_oracles(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    own = exact_edge_patching(model64, reporter, CLEAN, CLEAN, max_rows=40)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in own.values())
    exact = exact_edge_patching(model64, reporter, CLEAN, CORRUPT)
    eap = edge_attribution_patching(model64, reporter, CLEAN, CORRUPT)
    da_clean, da_corrupt = direct_attribution(model64, reporter, CLEAN), direct_attribution(model64, reporter, CORRUPT)
    for writer in upstream_components(model64, reporter.site):  # the site reads linearly: all three agree
        direct = da_corrupt[writer] - da_clean[writer]
        edge = f"{writer}->site"
        assert (
            float((exact[edge] - direct).abs().max()) < FP64_TOL and float((eap[edge] - direct).abs().max()) < FP64_TOL
        )
    assert max(float(v.abs().max()) for v in exact.values()) > 0.01  # the edges do carry something


def test_patching_every_edge_out_of_a_writer_is_patching_the_writer(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    site, every, clean_b, base, twin = _runs(model64, reporter, CLEAN, CORRUPT)
    deltas = _writer_deltas(model64, every, base.acts, twin.acts)
    edges = _edges(model64, site)
    plans = [[(e.reader, deltas[w.name]) for e in edges if e.writer == w] for w in every]
    plans.append([(e.reader, deltas[e.writer.name]) for e in edges if e.reader.kind == "site"])
    patched = _edge_scores(model64, reporter, site, clean_b, plans, torch.float64) - base.score
    node = exact_patching(model64, reporter, CLEAN, CORRUPT)
    for i, w in enumerate(every):
        err = float((patched[i] - node[w.name]).abs().max())
        assert err < FP64_TOL, f"{w.name}: all out-edges vs node patching differ by {err:.2e}"
    assert float((patched[-1] - (twin.score - base.score)).abs().max()) < FP64_TOL  # all edges into the site


def test_eap_is_the_derivative_of_exact_edge_patching(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_post")
    site, every, clean_b, base, twin = _runs(model64, reporter, CLEAN, CORRUPT)
    deltas = _writer_deltas(model64, every, base.acts, twin.acts)
    edges = [e for e in _edges(model64, site) if e.reader.kind != "site"]
    eps = 1e-4
    up = _edge_scores(
        model64, reporter, site, clean_b, [[(e.reader, eps * deltas[e.writer.name])] for e in edges], torch.float64
    )
    down = _edge_scores(
        model64, reporter, site, clean_b, [[(e.reader, -eps * deltas[e.writer.name])] for e in edges], torch.float64
    )
    derivative = (up - down) / (2 * eps)
    eap = edge_attribution_patching(model64, reporter, CLEAN, CORRUPT, edges=[e.name for e in edges])
    for i, e in enumerate(edges):
        err = float((derivative[i] - eap[e.name]).abs().max())
        assert err < 1e-6 * (1 + float(eap[e.name].abs().max())), f"{e.name}: EAP off the derivative by {err:.2e}"


def test_unknown_edges_are_named(model64):
    reporter = _reporter(model64, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match=r"unknown edge\(s\) \['L0H1->L0H2.q'\] .* 'WRITER->READER'"):
        exact_edge_patching(model64, reporter, CLEAN, CORRUPT, edges=["L0H1->L0H2.q"])


def test_edge_scores_of_a_model_with_an_offloaded_block_equal_the_whole_models(gpt2_dir, tmp_path):
    """Edge scores rebuild each reader's input from its weights (LayerNorm, W_Q/W_K/W_V), read outside a
    forward: with block 0 offloaded to disk by a device map (elk_lens._placement) they must read the
    same weights and give the same scores, exactly."""
    whole = load_model(str(gpt2_dir))
    placed = {f"transformer.{m}": "cpu" for m in ("wte", "wpe", "h.1", "ln_f")} | {"transformer.h.0": "disk"}
    offloaded = load_model(str(gpt2_dir), device_map=placed | {"lm_head": "cpu"}, offload_folder=tmp_path)
    assert any(p.is_meta for p in offloaded.parameters())
    w = torch.linspace(-1, 1, whole.cfg.d_model)
    reporter = Reporter(w, 0.3, w, "random", "blocks.1.hook_resid_post")
    clean, corrupt = ["the cat sat", "a dog ran"], ["the cow sat", "a cat ran"]
    for method in (edge_attribution_patching, exact_edge_patching):
        scores = [method(m, reporter, clean, corrupt, allow_other_model=True) for m in (whole, offloaded)]
        assert scores[0].keys() == scores[1].keys() and all(torch.equal(scores[0][k], scores[1][k]) for k in scores[0])
