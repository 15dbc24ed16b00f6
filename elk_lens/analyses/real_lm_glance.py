"""A glance at a real language model for the demo report: a probe by layer on a sample of one truth
dataset, beside the model's own answer (zero-shot, few-shot) and the random-direction floor (drawn by
``elk_lens.report.pages.real_lm_glance``).

Small on purpose (a few hundred statements, every few layers: about a minute on 2 cores); the full
study is the ``truth_generalization`` analysis (``analyses/smollm2_truth.toml``, docs/real-models.md).
"""

from dataclasses import dataclass

from elk_lens.analyses.model_checks import model_spec
from elk_lens.analyses.spec import at_least, one_of, setting, some_of
from elk_lens.data.truth_datasets import TRUTH_SETS, truth_set
from elk_lens.generalization import generalization_study, random_floor
from elk_lens.knowledge_gap import PROMPTS, gap_rows, model_answers, prompt_for
from elk_lens.models import load_model
from elk_lens.report.rundir import RunDir
from elk_lens.sites import every_nth, residual_sites

__all__ = ["RealLMSpec", "glance"]


@dataclass(frozen=True)
class RealLMSpec:
    """``[real_lm]``: a glance at a real LM beside the quirky model (``spec = ""`` leaves it out)."""

    spec: str = setting("", lambda v: model_spec(v) if v else None)
    dataset: str = setting("cities", one_of(TRUTH_SETS))
    rows: int = setting(300, at_least(40))
    every: int = setting(3, at_least(1))  # read every k-th layer (and the last)
    prompts: tuple[str, ...] = setting(("zero_shot", "few_shot"), some_of(PROMPTS, "prompts"))
    seed: int = setting(0, at_least(0))


_N_BOOT, _N_RANDOM = 200, 100


def glance(s: RealLMSpec, run: RunDir) -> dict | None:
    """The ``real-lm`` stage (None when ``real_lm.spec`` is empty)."""
    if not s.spec:
        return None

    def compute() -> dict:
        model = load_model(s.spec)
        name, seed = s.dataset, s.seed
        data = {name: truth_set(name, seed=seed).sample(s.rows, seed=seed)}
        every = residual_sites(model)
        sites = every_nth(every, s.every)
        common = dict(sites=sites, cache_dir=run.path / "cache", batch_size=32)
        study = generalization_study(model, data, methods=["logistic"], n_boot=_N_BOOT, seed=seed, **common)
        floor = random_floor(model, data, n_directions=_N_RANDOM, seed=seed, **common)
        prompts = {name: {k: prompt_for(k, model, data[name], seed=seed) for k in s.prompts}}
        answers = model_answers(model, data, prompts, n_boot=_N_BOOT, seed=seed)
        return {
            "spec": s.spec,
            "dataset": name,
            "rows": len(data[name]),
            "sites": study.sites,
            "by_layer": study.by_layer("logistic", name, name),
            "floor": [r["q0.95"] for r in floor],
            "answers": answers,
            "gap": gap_rows(study.chosen, answers),
        }

    return run.stage("real-lm", compute)
