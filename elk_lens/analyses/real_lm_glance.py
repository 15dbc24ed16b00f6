"""A glance at a real language model for the demo report: a probe by layer on a sample of one truth
dataset, beside the model's own answer (zero-shot, few-shot) and the random-direction floor (drawn by
``elk_lens.report.pages.real_lm_glance``).

Small on purpose (a few hundred statements, every few layers: about a minute on 2 cores); the full
study is the ``truth_generalization`` analysis (``analyses/smollm2_truth.toml``, docs/real-models.md).
"""

from elk_lens.analyses.result import Setting, at_least, model_spec, one_of, some_of
from elk_lens.data.truth_datasets import TRUTH_SETS, truth_set
from elk_lens.generalization import generalization_study, random_floor
from elk_lens.knowledge_gap import PROMPTS, gap_rows, model_answers, prompt_for
from elk_lens.models import load_model
from elk_lens.report.rundir import RunDir
from elk_lens.sites import residual_sites

__all__ = ["SETTINGS", "glance"]

SETTINGS = {
    "real_lm.spec": Setting("", str, lambda v: model_spec(v) if v else None),  # "" = no real-LM section
    "real_lm.dataset": Setting("cities", str, one_of(TRUTH_SETS)),
    "real_lm.rows": Setting(300, int, at_least(40)),
    "real_lm.every": Setting(3, int, at_least(1)),  # read every k-th layer (and the last)
    "real_lm.prompts": Setting(["zero_shot", "few_shot"], list[str], some_of(PROMPTS, "prompts")),
    "real_lm.seed": Setting(0, int, at_least(0)),
}
_N_BOOT, _N_RANDOM = 200, 100


def glance(s: dict, run: RunDir) -> dict | None:
    """The ``real-lm`` stage (None when ``real_lm.spec`` is empty)."""
    if not s["real_lm.spec"]:
        return None

    def compute() -> dict:
        model = load_model(s["real_lm.spec"])
        name, seed = s["real_lm.dataset"], s["real_lm.seed"]
        data = {name: truth_set(name, seed=seed).sample(s["real_lm.rows"], seed=seed)}
        every = residual_sites(model)
        sites = every[:: s["real_lm.every"]] + ([every[-1]] if (len(every) - 1) % s["real_lm.every"] else [])
        common = dict(sites=sites, cache_dir=run.path / "cache", batch_size=32)
        study = generalization_study(model, data, methods=["logistic"], n_boot=_N_BOOT, seed=seed, **common)
        floor = random_floor(model, data, n_directions=_N_RANDOM, seed=seed, **common)
        prompts = {name: {k: prompt_for(k, model, data[name], seed=seed) for k in s["real_lm.prompts"]}}
        answers = model_answers(model, data, prompts, n_boot=_N_BOOT, seed=seed)
        return {
            "spec": s["real_lm.spec"],
            "dataset": name,
            "rows": len(data[name]),
            "sites": study.sites,
            "by_layer": study.by_layer("logistic", name, name),
            "floor": [r["q0.95"] for r in floor],
            "answers": answers,
            "gap": gap_rows(study.chosen, answers),
        }

    return run.stage("real-lm", compute)
