"""The growth analysis end to end on a tiny scenario: an exact growth keeps every small-model number at
the growth step, the non-preserving contrast jumps, the run resumes, bad specs fail before any work."""

import json
import re

import pytest
import torch
from browser import assert_renders, needs_browser

from elk_lens.analyses.growth import GrowSpec, _grow
from elk_lens.growth import GrowthResult
from elk_lens.models import fingerprint, load_model
from elk_lens.runner import load_spec, run_analysis
from elk_lens.sites import Site
from elk_lens.zoo import gguf as zoo_gguf

SPEC = """
name = "{name}"
analysis = "growth"
[grow]
{grow}
[train]
rows = 300
steps = 1
batch_size = 16
[anchor]
on = "all"
[drift]
methods = ["mean_diff"]
eval_rows = 200
probe_rows = 600
"""
# the transported reporter's scores equal the small model's up to float32 rounding (|Δ| ~1e-5 on
# log-odds of size ~10), which can reorder two nearly tied rows: at most one pair of 200-odd rows flips
AUROC_TIE_TOL = 1e-3
COSINE_TOL = 1e-5  # float32 residuals of width 160 averaged over ~100 rows
EXACT_OUTPUT_TOL = 1e-4  # the float32 bound on |Δlogit|, applied to the output log-odds


def _run(tmp_path, name, grow):
    spec = tmp_path / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, grow=grow))
    return spec, run_analysis(spec, runs_root=tmp_path / "runs")


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("growth"), "grow-tiny", "n_layers = 5\nd_model = 160")


def test_exact_growth_keeps_the_small_models_numbers_at_the_growth_step(exact):
    _, run = exact
    m = json.loads((run / "metrics.json").read_text())
    assert m["grow"]["exact"] and m["grow"]["max_abs_output_log_odds_change"] < EXACT_OUTPUT_TOL
    assert m["grow"]["grown"]["d_model"] == 160 and m["grow"]["grown"]["n_layers"] == 5
    for name, site in m["fixed_sites"].items():
        small = name.removeprefix("transported from ")
        assert m["auroc_fixed"][name]["BH_disagree"][0] == pytest.approx(
            m["grow"]["small_auroc"][small], abs=AUROC_TIE_TOL
        )
        assert site in m["sites"]
        # a class-mean difference is linear in the residual: P v is the grown model's own at the growth step
        assert m["cos_v_fixed_refit"][name][0] == pytest.approx(1.0, abs=COSINE_TOL)
    assert m["output_auroc"]["BH_disagree"][0] == pytest.approx(m["grow"]["small_output_auroc"], abs=AUROC_TIE_TOL)
    for row in m["fitted_map"].values():
        assert 0 <= row["fit residual"] < 1
    html = (run / "report.html").read_text()
    for title in (
        "Scenario",
        "Does the reporter stay truthful?",
        "Which layers hold truth",
        "A map fitted on activations (no exact map)",
    ):
        assert f"<h2>{title}</h2>" in html
    assert ">grown</text>" in html  # the growth step is marked on the charts


def test_the_growth_result_looks_up_what_the_metrics_hold(exact):
    _, run = exact
    m = json.loads((run / "metrics.json").read_text())
    g = GrowthResult.from_stages(m["grow"], m, m["fitted_map"])
    for name, site in m["fixed_sites"].items():
        small = name.removeprefix("transported from ")
        short = f"resid_pre.{Site.parse(small).layer}" if small.endswith("resid_pre") else small
        assert g.transported_auroc(short) == m["auroc_fixed"][name]["BH_disagree"]
        assert g.step.reporter_auroc(Site.parse(small)) == m["grow"]["small_auroc"][small]
        assert g.from_small(site) == small and g.grown_site(small) == site
    assert list(g) == list(m["grow"]["small_auroc"]) == list(m["fitted_map"])
    # the stages' saved JSON is each result's to_dict, keys in the same order
    for stage, result in (("grow", g.step), ("fitted_map", g.fitted_map)):
        saved = json.loads((run / "stages" / f"{stage}.json").read_text())["result"]
        assert json.dumps(result.to_dict()) == json.dumps(saved)


@needs_browser
def test_the_growth_report_opens_in_a_browser_without_console_output(exact):
    assert_renders(
        exact[1] / "report.html", ("Scenario", "Does the reporter stay truthful?", "Which layers hold truth")
    )


def test_second_run_resumes(exact):
    spec, run = exact
    before = (run / "metrics.json").read_text()
    run_analysis(spec, runs_root=run.parent)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_stages"] == ["grow", "fine_tune", "drift", "task_loss", "fitted_map"]
    assert (run / "metrics.json").read_text() == before


def test_stacking_is_the_discontinuous_contrast(tmp_path):
    _, run = _run(tmp_path, "stack-tiny", 'op = "stack"')
    m = json.loads((run / "metrics.json").read_text())
    assert not m["grow"]["exact"] and m["grow"]["grown"]["n_layers"] == 8
    assert m["grow"]["max_abs_output_log_odds_change"] > 1.0
    assert "grown (not preserving)" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    "grow, message",
    [
        ('op = "shrink"', "'grow.op' must be one of"),
        ('op = "grow"', "op 'grow' needs at least one of"),
        ('op = "random_blocks"', "op 'random_blocks' needs grow.n_layers"),
    ],
)
def test_bad_specs_fail_before_any_work(tmp_path, grow, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.format(name="bad", grow=grow))
    with pytest.raises(ValueError, match=re.escape(message)):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs" / "bad" / "stages").exists()


def test_an_hf_llama_grows_through_its_exact_native_copy(llama_dir):
    """The growth stage on an HF-booted Llama (SmolLM2's block): copied into a native model, grown, and the
    composed map starts at the HF model, so the small model's reporters transport (tests/growth/test_convert.py
    checks the copy itself)."""
    hf = load_model(str(llama_dir))
    grown, growth = _grow(GrowSpec(n_layers=3, n_heads=6, d_mlp=80), hf)
    assert growth.ops[0] == "to_native(LlamaForCausalLM)" and growth.exact
    assert growth.source == fingerprint(hf) and growth.target == fingerprint(grown)
    assert (grown.cfg.n_layers, grown.cfg.n_heads, grown.cfg.n_key_value_heads, grown.cfg.d_mlp) == (3, 6, 2, 80)
    tokens = hf.to_tokens(["the cat sat.", "paris is in france."])
    with torch.no_grad():
        err = float((grown(tokens) - hf(tokens)).abs().max())
    assert err <= EXACT_OUTPUT_TOL, f"max |Δlogit| {err:.2e}"


@pytest.mark.parametrize("fixture", ["gemma3_dir", "neox_dir"])
def test_gemma3_and_neox_grow_on_their_hf_modules(fixture, request):
    """The growth stage on architectures with no exact native copy: grown on their HF modules
    (tests/growth/test_hf_modules.py checks each operator), the map starting at the HF model."""
    hf = load_model(str(request.getfixturevalue(fixture)))
    grown, growth = _grow(GrowSpec(n_layers=hf.cfg.n_layers + 1, d_mlp=160), hf)
    assert (
        growth.ops[0].startswith("widen_mlp") and growth.exact and type(grown.original_model) is type(hf.original_model)
    )
    assert growth.source == fingerprint(hf) and growth.target == fingerprint(grown)
    tokens = hf.to_tokens(["the cat sat.", "paris is in france."])
    with torch.no_grad():
        err = float((grown(tokens) - hf(tokens)).abs().max())
    assert err <= EXACT_OUTPUT_TOL, f"max |Δlogit| {err:.2e}"


@pytest.mark.parametrize("n_heads", [8, 10])
def test_a_gguf_base_keeps_whole_key_value_groups_checked_before_any_work(tmp_path, n_heads):
    """SmolLM2 (9 query heads in 3 key/value groups) read from its GGUF header at the spec check; 12 passes."""
    try:
        zoo_gguf.gguf_file("smollm2-135m")
    except ValueError as e:
        pytest.skip(str(e))
    body = (
        'name = "g"\nanalysis = "growth"\n[model]\nbase = "zoo:smollm2-135m"\n[data]\ntask = "cities_hemisphere"\n'
        '[train]\nrows = 4000\nanswers = [" True", " False"]\n[anchor]\nsite = "blocks.25.hook_resid_pre"\n'
        "[drift]\neval_rows = 400\nprobe_rows = 1000\n[grow]\nn_heads = {}\n"
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(body.format(n_heads))
    with pytest.raises(
        ValueError,
        match=rf"config key 'grow.n_heads' must be at least zoo:smollm2-135m's 9 query heads and a multiple of its 3 "
        rf"key/value heads .*got {n_heads}",
    ):
        load_spec(spec)
    spec.write_text(body.format(12))
    assert load_spec(spec)[0].grow.n_heads == 12


@pytest.mark.parametrize(
    ("fixture", "n_heads", "message"),
    [
        ("llama_dir", 5, r"must be at least .*'s 4 query heads and a multiple of its 2 key/value heads .*got 5"),
        ("neox_dir", 8, r"cannot grow .* \(GPTNeoXForCausalLM\): HF GPT-NeoX derives head_size .*got 8"),
        ("llama_dir", 6, None),
    ],
)
def test_a_local_hf_base_has_its_heads_checked_before_any_work(tmp_path, request, fixture, n_heads, message):
    """A local HF directory's config.json gives its heads and key/value groups at the spec check."""
    body = (
        f'name = "g"\nanalysis = "growth"\n[model]\nbase = "{request.getfixturevalue(fixture)}"\n'
        '[data]\ntask = "cities_hemisphere"\n[train]\nrows = 4000\nanswers = [" True", " False"]\n'
        f"[drift]\neval_rows = 400\nprobe_rows = 1000\n[grow]\nn_heads = {n_heads}\n"
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(body)
    if message is None:
        assert load_spec(spec)[0].grow.n_heads == n_heads
        return
    with pytest.raises(ValueError, match=message):
        load_spec(spec)
