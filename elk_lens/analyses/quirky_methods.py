"""The reporter-methods part of the quirky ELK analysis: every method's transfer, EIL, PGR, anomaly
detection, the rigor battery and the causal checks, as resumable stages (drawn by
``elk_lens.report.pages.quirky_methods``)."""

from functools import cached_property
from typing import TYPE_CHECKING

from elk_lens.capturing import capture
from elk_lens.causal import erasure_effect, log_odds_shift, steering_direction, steering_effect
from elk_lens.data.statements import StatementSet
from elk_lens.distributed import spread
from elk_lens.erasure import fit_leace
from elk_lens.quirky.floor import random_floor
from elk_lens.quirky.position_sweep import position_sweep
from elk_lens.quirky.rigor import capture_distractor_pairs, distractor_table, seed_stability
from elk_lens.quirky.scores import QuirkyScores, quirky_reporter_scores
from elk_lens.quirky.subsets import TRAIN_SETS, subset_mask
from elk_lens.quirky.tables import anomaly_table, auroc_table, eil_table, feature_table, pgr_table
from elk_lens.quirky.tasks import quirky_task
from elk_lens.report.rundir import RunDir
from elk_lens.reporters import fit_logistic, fit_mean_diff
from elk_lens.sites import Site, every_nth, residual_sites

if TYPE_CHECKING:  # the spec's module runs these stages
    from elk_lens.analyses.quirky_elk import Spec

__all__ = ["method_stages"]

METHODS = ("logistic", "mean_diff", "lda", "ccs", "crc", "vinc")


class _Data:
    """The quirky statements the method stages read, each built once per run."""

    def __init__(self, s: "Spec"):
        self.s = s
        self.task = quirky_task(s.data.task)

    @cached_property
    def val(self) -> StatementSet:
        return self.task.statements(self.s.data.train_rows, split="val", seed=self.s.data.seed)

    @cached_property
    def test(self) -> StatementSet:
        return self.task.statements(self.s.data.test_rows, split="test", seed=self.s.data.seed)

    @cached_property
    def causal_test(self) -> StatementSet:
        return self.task.statements(self.s.causal.test_rows, split="test", seed=self.s.data.seed)


def _scores(model, s: "Spec", data: _Data, run: RunDir) -> QuirkyScores:
    def compute() -> dict:
        sc = quirky_reporter_scores(
            model,
            methods=METHODS,
            train_rows=s.data.train_rows,
            test_rows=s.data.test_rows,
            seed=s.data.seed,
            batch_size=s.capture.batch_size,
            cache_dir=run.path / "cache",
            task=s.data.task,
        )
        return {**{f"log_odds/{k}": v for k, v in sc.log_odds.items()}, "output": sc.output}

    tensors = run.tensor_stage("reporter_scores", compute, collective=True)  # torchrun: captures split
    test = data.test
    # safetensors returns keys sorted; rebuild the training-set x method order so a resumed run matches
    log_odds = {f"{t}/{m}": tensors[f"log_odds/{t}/{m}"] for t in TRAIN_SETS for m in METHODS}
    sites = [x.name for x in residual_sites(model)]
    return QuirkyScores(test, sites, log_odds, tensors["output"], task=s.data.task)


def _causal(model, s: "Spec", data: _Data, run: RunDir) -> dict:
    """Steering (NIE) and LEACE erasure at every ``causal.every``-th site past the embedding (and the last),
    on Alice test statements."""
    train = data.val.where(character="Alice", easy=True)
    test = data.causal_test
    alice = test.where(character="Alice")
    bob = test.subset(subset_mask(test, "BH_disagree").numpy())
    sites = residual_sites(model)
    acts = capture(model, train, sites, batch_size=s.capture.batch_size, cache_dir=run.path / "cache")
    kw = dict(answers=data.task.answers, batch_size=s.capture.batch_size)
    past_embedding = list(enumerate(sites))[1:]  # blocks.0.hook_resid_pre at the last token is a constant

    def at_site(job: tuple[int, Site]) -> list[dict]:
        i, site = job
        x, rows = acts.at(i), []
        for name, fit in (("logistic", fit_logistic), ("mean_diff", fit_mean_diff)):
            direction = steering_direction(fit(x, train.truth, site=site.name), x, train.truth)
            shift = log_odds_shift(model, bob, site.name, direction, **kw)
            effect = steering_effect(model, alice, site.name, direction, n_random=s.causal.n_random, **kw)
            rows.append(
                {
                    "site": site.name,
                    "direction": f"AE/{name}",
                    **{k: round(v, 4) for k, v in effect.items()},
                    **{f"BH_disagree {k}": round(v, 4) for k, v in shift.items()},
                }
            )
        erased = erasure_effect(model, alice, site.name, fit_leace(x, train.truth), **kw)
        rows.append({"site": site.name, "direction": "LEACE erasure", **{k: round(v, 4) for k, v in erased.items()}})
        return rows

    # under torchrun the sites spread over the ranks (elk_lens/distributed.py)
    return {"rows": [row for rows in spread(every_nth(past_embedding, s.causal.every), at_site) for row in rows]}


def _rigor(model, s: "Spec", data: _Data, run: RunDir, scores: QuirkyScores) -> dict:
    """Distractor battery and CCS seed stability on Alice pairs; the random-direction floor per site."""
    seed = s.data.seed
    train = data.val.where(character="Alice")
    test = data.test.where(character="Alice")
    sites = residual_sites(model)
    kw = dict(answers=data.task.answers, batch_size=s.capture.batch_size, cache_dir=run.path / "cache")
    p_train, _ = capture_distractor_pairs(model, train, sites, seed=seed + 1, **kw)
    p_test, coin = capture_distractor_pairs(model, test, sites, seed=seed + 2, **kw)
    table = distractor_table(p_train, train.truth, p_test, test.truth, coin)
    last = len(sites) - 1
    stability = seed_stability(
        p_train, train.truth, p_test, {"truth": test.truth, "distractor": coin}, site=last, seeds=range(5)
    )
    floor = _random_floor(model, s, data, run, scores, ("BH_disagree",))["BH_disagree"]
    return {"distractor": table, "seed_stability": stability, "random_floor": floor}


def _random_floor(model, s: "Spec", data: _Data, run: RunDir, scores: QuirkyScores, subsets: tuple[str, ...]) -> dict:
    """The random-direction floor of every site on each of ``subsets`` of the test split, each direction's
    sign fixed on the probe study's training rows (Alice-easy of the val split; cached activations)."""
    ae = data.val.where(character="Alice", easy=True)
    sites = residual_sites(model)
    kw = dict(batch_size=s.capture.batch_size, cache_dir=run.path / "cache")
    masks = {name: subset_mask(scores.test, name) for name in subsets}
    return random_floor(
        capture(model, ae, sites, **kw),
        ae.truth,
        capture(model, scores.test, sites, **kw),
        scores.labels("truth"),
        masks,
        sites,
        seed=s.data.seed,
    )


def _positions(model, s: "Spec", data: _Data) -> dict:
    """AUROC by token position at every site: AE-trained logistic regression, on AE and BH disagreements."""
    val, test = data.val, data.test
    evals = {name: test.subset(subset_mask(test, name).numpy()) for name in ("AE", "BH_disagree")}
    train = val.subset(subset_mask(val, "AE").numpy())
    return position_sweep(model, train, evals, residual_sites(model), batch_size=s.capture.batch_size)


def method_stages(model, s: "Spec", run: RunDir) -> dict:
    """The methods stages of the default analysis on ``model``: every reporter's scores and the tables
    drawn from them, interventions, rigor checks, the position sweep and the random floor on the
    disagreements and the control subset."""
    data = _Data(s)
    scores = _scores(model, s, data, run)
    eil = eil_table(scores)
    stages = {
        "scores": scores,
        "auroc": auroc_table(scores),
        "eil": {k: scores.sites[v] for k, v in eil.items()},
        "pgr": pgr_table(scores, eil, seed=s.data.seed),
        "anomaly": anomaly_table(scores, seed=s.data.seed),
        "features": feature_table(scores),
        "causal": run.stage("causal", lambda: _causal(model, s, data, run), collective=True),
        "rigor": run.stage("rigor", lambda: _rigor(model, s, data, run, scores), collective=True),
        # positions line up across statements only in a fixed-width task
        "positions": run.stage("positions", lambda: _positions(model, s, data), collective=True)
        if data.task.fixed_length
        else None,
    }
    # the rigor stage holds the disagreements' floor; the control subset's is a stage of its own
    control = run.stage(
        "control_floor", lambda: _random_floor(model, s, data, run, scores, ("BH_control",)), collective=True
    )
    return stages | {"floor": {"BH_disagree": stages["rigor"]["random_floor"], **control}}
