"""The seed protocol: fit a reporter on the small truthful model, grow the model, train on, and check
whether the reporter (transported through the growth map) still reads truth.

Stages: ``grow`` (reporters fitted on the small model at every site, the small model's own numbers,
the grown model and its map, the jump at the growth step), ``fine_tune`` (the grown model trained on
the scenario, optionally anchoring the transported reporter), ``drift`` (refitted vs transported
reporters at every checkpoint), ``task_loss``, and ``fitted_map`` (a map fitted on paired activations
of the small model and the final model, as one would across sizes with no exact map).
"""

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from elk_lens.analyses.model_checks import ModelLayout, model_layout
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.scenario import LABELS, Scenario, ScenarioSpec, drift_sites
from elk_lens.analyses.spec import SEED, in_range, one_of, setting, spec_dict
from elk_lens.capturing import capture
from elk_lens.growth import (
    FittedMap,
    FittedMapResult,
    GrowthMap,
    GrowthResult,
    GrowthStep,
    fit_growth_map,
    grow,
    hf_modules,
    insert_blocks,
    stack_blocks,
    to_native,
)
from elk_lens.lm_output import output_log_odds
from elk_lens.metrics import auroc
from elk_lens.models import fingerprint, load_model, save_model
from elk_lens.report.rundir import RunDir
from elk_lens.reporters import Reporter, fit_logistic
from elk_lens.trajectory import Trajectory
from elk_lens.zoo import gguf as zoo_gguf
from elk_lens.zoo.gguf_header import read_metadata

__all__ = ["Spec", "check", "run"]

log = logging.getLogger(__name__)

OPS = {
    "grow": "function-preserving growth (elk_lens.growth.grow)",
    "stack": "G_stack: the block stack repeated (not function-preserving)",
    "random_blocks": "new blocks with random writers (not function-preserving)",
}
_SIZES = ("n_layers", "d_model", "d_mlp", "n_heads", "d_head")


@dataclass(frozen=True)
class GrowSpec:
    """``[grow]``: the growth operator and the grown model's sizes (0 keeps the small model's size)."""

    # bounded well above any model grown on one machine (a 70B model: 80 layers, d_model 8,192, d_mlp 28,672,
    # 64 heads of 128): the check lists the grown model's parameter names, 2**40 layers exhausted its memory
    op: str = setting("grow", one_of(sorted(OPS)))
    n_layers: int = setting(0, in_range(0, 1024))
    d_model: int = setting(0, in_range(0, 65536))
    d_mlp: int = setting(0, in_range(0, 262144))
    n_heads: int = setting(0, in_range(0, 1024))
    d_head: int = setting(0, in_range(0, 1024))
    seed: int = setting(0, SEED)

    @property
    def sizes(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _SIZES}


@dataclass(frozen=True, kw_only=True)
class Spec(ScenarioSpec):
    """A growth spec: the scenario's tables and ``[grow]`` (``analyses/growth_*.toml``)."""

    grow: GrowSpec = GrowSpec()


def check(spec: Spec) -> None:
    g, sizes = spec.grow, spec.grow.sizes
    if g.op == "grow" and not any(sizes.values()):
        raise ValueError(
            "config key 'grow.op': op 'grow' needs at least one of grow.n_layers, d_model, d_mlp, n_heads, d_head (> 0)"
        )
    if g.op == "random_blocks" and not sizes["n_layers"]:
        raise ValueError("config key 'grow.op': op 'random_blocks' needs grow.n_layers (the grown depth)")
    small = model_layout(spec.model.base)
    if small is None:
        _check_heads(spec.model.base, g.n_heads)
        Scenario(spec).check(None)
        return
    for k, new in sizes.items():
        if new and new < getattr(small, k):
            raise ValueError(
                f"config key 'grow.{k}' must be 0 (keep) or at least {small.spec}'s {getattr(small, k)} "
                f"(growth never shrinks); got {new}"
            )
    if g.op == "grow" and not any(new > getattr(small, k) for k, new in sizes.items()):
        raise ValueError(
            f"config key 'grow.op': op 'grow' needs one of grow.{', '.join(_SIZES)} larger than "
            f"{small.spec}'s {dict((k, getattr(small, k)) for k in _SIZES)}; got {sizes}"
        )
    if g.op == "random_blocks" and sizes["n_layers"] <= small.n_layers:
        raise ValueError(
            f"config key 'grow.n_layers' must be deeper than {small.spec}'s {small.n_layers} for op "
            f"'random_blocks' (it adds blocks); got {sizes['n_layers']}"
        )
    # the anchor and the report read the small model's reporters, fitted at its drift sites
    sites = drift_sites(small.n_layers)
    if spec.anchor.site not in sites:
        raise ValueError(
            f"config key 'anchor.site' must be one of {sites} (the small model's sites with a "
            f"reporter to transport); got {spec.anchor.site!r}"
        )
    Scenario(spec).check(small, _grown_params(small, _grown_depth(spec.grow, small)))


def _heads_of(base: str) -> tuple[int, int, str | None] | None:
    """(query heads, key/value heads, HF architecture) of a zoo GGUF model, read from its header, or of a
    local HF directory, read from its config.json; None where neither (a native model, or a hub name)."""
    name = base.removeprefix("zoo:")
    if base.startswith("zoo:") and name in zoo_gguf.GGUF_MODELS:
        try:
            path = zoo_gguf.gguf_file(name)
        except ValueError:  # its package is not installed: loading the model says so
            return None
        arch = read_metadata(path, {"general.architecture"})["general.architecture"]
        keys = {f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv"}
        heads, kv = (int(read_metadata(path, keys)[k]) for k in sorted(keys))
        return heads, kv, None
    config = Path(base).expanduser() / "config.json"
    if base.startswith("zoo:") or not config.is_file():
        return None
    cfg = json.loads(config.read_text(encoding="utf-8"))
    heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    if not isinstance(heads, int):
        return None
    return heads, cfg.get("num_key_value_heads") or heads, (cfg.get("architectures") or [None])[0]


def _check_heads(base: str, n_heads: int) -> None:
    """An HF base (a zoo GGUF model such as SmolLM2, or a local HF directory) with grouped-query attention:
    ``grow.n_heads`` must keep whole groups; GPT-NeoX's heads cannot grow. Read before any model loads
    (``model_layout`` reads native models only)."""
    found = _heads_of(base) if n_heads else None
    if found is None:
        return
    heads, kv, arch = found
    if n_heads > heads and arch in hf_modules.LAYOUTS and "add_heads" in hf_modules.LAYOUTS[arch].refused:
        raise ValueError(
            f"config key 'grow.n_heads' cannot grow {base} ({arch}): {hf_modules.LAYOUTS[arch].refused['add_heads']}; "
            f"got {n_heads}, leave it 0"
        )
    if n_heads < heads or n_heads % kv:
        raise ValueError(
            f"config key 'grow.n_heads' must be at least {base}'s {heads} query heads and a multiple of its {kv} "
            f"key/value heads (grouped-query attention: every group gets the same number of query heads); "
            f"got {n_heads}"
        )


def _grown_depth(g: GrowSpec, small: ModelLayout) -> int:
    if g.op == "stack":
        return 2 * small.n_layers
    return g.n_layers or small.n_layers


def _grown_params(small: ModelLayout, n_layers: int) -> list[str]:
    """The grown model's parameter names: the small model's, with blocks ``0..n_layers-1``."""
    block = re.compile(r"^blocks\.\d+\.")
    return sorted({block.sub(f"blocks.{i}.", p) for p in small.params for i in range(n_layers)})


def _grow(g: GrowSpec, small) -> tuple:
    """The grown model and its map from ``small``. An HF-booted Llama (SmolLM2) is first copied exactly
    into a native model (`to_native`), whose identity map heads the composed one; Gemma 3 and GPT-NeoX
    grow on their HF modules (`elk_lens.growth.hf_modules`)."""
    if small.cfg.architecture != "TransformerLensNative" and hf_modules.layout(small) is None:
        native, conversion = to_native(small)
        grown, growth = _grow(g, native)
        return grown, conversion.then(growth)
    op, n = g.op, small.cfg.n_layers
    if op == "stack":
        return stack_blocks(small)
    if op == "random_blocks":
        new = g.n_layers - n
        return insert_blocks(
            small, [min(n, (j + 1) * n // max(new, 1)) for j in range(new)], preserve=False, seed=g.seed
        )
    return grow(small, **{k: v or None for k, v in g.sizes.items()}, seed=g.seed)


def _small_reporters(scenario: Scenario, small) -> dict[str, Reporter]:
    """Reporters fitted where the small model was trained: the 3-digit task, whatever the grown model
    goes on to learn (a harder task, ``data.digits = 4``, is then a test of the reporter)."""
    spec = scenario.spec
    if spec.data.digits != 3:
        scenario = Scenario(replace(spec, data=replace(spec.data, digits=3)))
    probe_set = scenario.probe_set
    sites = drift_sites(small.cfg.n_layers)
    acts = capture(small, probe_set, sites, batch_size=spec.capture.batch_size)
    return {
        site: fit_logistic(acts.at(i), probe_set.truth, site=site, provenance={"model": fingerprint(small)})
        for i, site in enumerate(sites)
    }


def _grow_stage(scenario: Scenario, run: RunDir) -> GrowthStep:
    spec = scenario.spec
    small = load_model(spec.model.base)
    reporters = _small_reporters(scenario, small)
    # overwrite: a stage killed after these saves reruns into its own run directory
    for site, r in reporters.items():
        r.save(run.path / "small_reporters" / site, overwrite=True)
    grown, growth = _grow(spec.grow, small)
    save_model(grown, run.path / "grown", overwrite=True)
    growth.save(run.path / "growth_map", overwrite=True)
    bob = scenario.eval_sets["BH_disagree"]
    read = {"answers": spec.train.fine_tune.answers, "batch_size": spec.capture.batch_size}  # the task's tokens
    small_out = output_log_odds(small, bob, **read)
    jump = float((output_log_odds(grown, bob, **read) - small_out).abs().max())
    acts = capture(small, bob, list(reporters), batch_size=spec.capture.batch_size)
    return GrowthStep(
        ops=list(growth.ops),
        exact=growth.exact,
        layers=list(growth.layers),
        small={"n_layers": small.cfg.n_layers, "d_model": small.cfg.d_model},
        grown={
            "n_layers": grown.cfg.n_layers,
            "d_model": grown.cfg.d_model,
            "d_mlp": grown.cfg.d_mlp,
            "n_heads": grown.cfg.n_heads,
            "d_head": grown.cfg.d_head,
        },
        max_abs_output_log_odds_change=jump,
        small_auroc={site: auroc(r(acts.at(i)), bob.truth) for i, (site, r) in enumerate(reporters.items())},
        small_output_auroc=auroc(small_out, bob.truth),
        small_accuracy=scenario.output_accuracy(small),
        answer_loss={
            "small": scenario.held_out_answer_loss(small),
            "grown": scenario.held_out_answer_loss(grown),
        },
    )


def _transported(run: RunDir) -> dict[str, Reporter]:
    """The small model's reporters (by their small-model site) moved through the growth map."""
    growth = GrowthMap.load(run.path / "growth_map")
    saved = sorted((run.path / "small_reporters").rglob("reporter.json"))
    return {r.site: growth.transport(r) for r in (Reporter.load(p.parent) for p in saved)}


def _fine_tune(scenario: Scenario, run: RunDir) -> dict:
    grown = load_model(str(run.path / "grown"))
    anchor = scenario.spec.anchor
    reporter = _transported(run)[anchor.site] if anchor.on != "none" else None
    return scenario.fine_tune(grown, str(run.path / "grown"), run.path / "trajectory", reporter)


def _drift(scenario: Scenario, run: RunDir) -> dict:
    traj = Trajectory.load(run.path / "trajectory")
    transported = _transported(run)
    sites = drift_sites(traj.model_at(0).cfg.n_layers)
    sites += [r.site for r in transported.values() if r.site not in sites]
    fixed = {f"transported from {small}": r for small, r in transported.items()}
    out = scenario.walk(traj, sites, fixed)
    out["fixed_sites"] = {name: r.site for name, r in fixed.items()}
    return out


def _fitted_map(scenario: Scenario, run: RunDir) -> FittedMapResult:
    """Small model -> final model, fitted on Alice-easy residuals; scored on Bob-hard disagreements."""
    traj = Trajectory.load(run.path / "trajectory")
    small, final = load_model(scenario.spec.model.base), traj.model_at(len(traj) - 1)
    growth = GrowthMap.load(run.path / "growth_map")
    probe_set, bob = scenario.probe_set, scenario.eval_sets["BH_disagree"]
    out = {}
    if len(probe_set) <= small.cfg.d_model:  # least squares would interpolate: no map to report
        log.warning(
            "fitted_map: %d Alice-easy statements (drift.probe_rows) cannot determine a %d-wide least-squares "
            "map; no map fitted (benchmarks/cross_size_map.py fits maps with a ridge chosen on val rows)",
            len(probe_set),
            small.cfg.d_model,
        )
        return FittedMapResult({})
    for small_site in drift_sites(small.cfg.n_layers):
        site = growth.site(small_site)
        a, b = (capture(m, probe_set, [x]).at(0) for m, x in ((small, small_site), (final, site)))
        fitted = fit_growth_map(
            a,
            b,
            source_site=small_site,
            target_site=site,
            source_model=fingerprint(small),
            target_model=fingerprint(final),
        )
        reporter = fit_logistic(a, probe_set.truth, site=small_site, provenance={"model": fingerprint(small)})
        refit = fit_logistic(b, probe_set.truth, site=site)
        bob_final = capture(final, bob, [site]).at(0)
        out[small_site] = FittedMap(
            target_site=site,
            fit_residual=round(fitted.info["residual"], 4),
            through_map=auroc(fitted.transport(reporter)(bob_final), bob.truth),
            refitted=auroc(refit(bob_final), bob.truth),
        )
    return FittedMapResult(out)


def run(spec: Spec, run: RunDir) -> AnalysisResult:
    scenario = Scenario(spec)
    grown = run.stage("grow", lambda: _grow_stage(scenario, run).to_dict())
    trained = run.stage("fine_tune", lambda: _fine_tune(scenario, run))
    d = run.stage("drift", lambda: _drift(scenario, run), collective=True)  # torchrun: captures split
    task_loss = run.stage("task_loss", lambda: scenario.task_loss(Trajectory.load(run.path / "trajectory")))
    fitted = run.stage("fitted_map", lambda: _fitted_map(scenario, run).to_dict())
    return _report(spec, GrowthResult.from_stages(grown, d, fitted), trained, d, task_loss)


def _report(spec: Spec, result: GrowthResult, trained, d, task_loss) -> AnalysisResult:
    rows = {
        "growth_layers": _layer_rows(result),
        "growth_step": _step_rows(result),
        "fitted_map": result.fitted_map.rows(),
    }
    return AnalysisResult(
        metrics={
            "grow": result.step.to_dict(),
            "fine_tune": trained,
            "task_loss": task_loss,
            "fitted_map": result.fitted_map.to_dict(),
            **d,
        },
        tables=rows,
        provenance={
            "model_spec": spec.model.base,
            "seeds": {"train": spec.train.fine_tune.seed, "grow": spec.grow.seed},
            "settings": spec_dict(spec),
        },
        view={
            "name": spec.name,
            "spec": spec,
            "op": OPS[spec.grow.op],
            "train_labels": LABELS[spec.train.labels],
            "growth": result,
            "final_accuracy": d["final_accuracy"],
            "task_loss": task_loss,
            "rows": rows,
        },
    )


def _layer_rows(g: GrowthResult) -> list[dict]:
    """Per grown-model site: the refitted reporter at the first and last checkpoint, and where a small
    model's reporter was transported to it, that reporter's numbers."""
    d = g.drift
    first, end = d.methods[0], d.end
    layers = []
    for x_ in d.sites:
        refit = d.auroc(first, x_, "BH_disagree")
        row = {"site": x_, f"{first} refit, step 0": refit[0], f"{first} refit, end": refit[end]}
        small = g.from_small(x_)
        if small is not None:
            row["transported from"] = small
            row["small model"] = g.step.reporter_auroc(small)
            row["transported, step 0"] = g.transported_auroc(small)[0]
            row["transported, end"] = g.transported_auroc(small)[end]
            row["cos concept vector to refit, end"] = g.cos_v_to_refit(small)[end]
        layers.append(row)
    return layers


def _step_rows(g: GrowthResult) -> list[dict]:
    """What the growth step did: the ops, whether it preserved the function, and the jumps it caused."""
    step, output = g.step, g.drift.output_auroc
    return [
        {"measure": "ops", "value": "; ".join(step.ops)},
        {"measure": "function-preserving", "value": str(step.exact)},
        {"measure": "small -> grown", "value": f"{step.small} -> {step.grown}"},
        {
            "measure": "max |change of the output log-odds| at the growth step",
            "value": f"{step.max_abs_output_log_odds_change:.2e}",
        },
        {
            "measure": "held-out answer loss: small -> grown step 0",
            "value": " -> ".join(f"{step.answer_loss[k]:.4f}" for k in ("small", "grown")),
        },
        {
            "measure": "output AUROC vs truth (Bob-hard disagreements): small -> grown step 0",
            "value": f"{step.small_output_auroc:.4f} -> {output['BH_disagree'][0]:.4f}",
        },
    ]
