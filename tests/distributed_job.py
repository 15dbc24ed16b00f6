"""Run by ``tests/test_distributed.py`` under ``torchrun``: every rank captures, runs stages, spreads fits
(a list of items, the quirky protocol's reporters, a trajectory's checkpoints), then writes what it got.

python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_job.py MODEL CACHE OUT TRAJECTORY
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

# 41 statements in shards of 8: six shards, three per rank, the last one short
TEXTS = [f"{'ab' * (i % 5)} {i} is {'odd' if i % 2 else 'even'}." for i in range(41)]
SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
SHARD_ROWS, BATCH = 8, 4
STAGES = 5  # independent run stages, spread over the ranks
SPREAD = 7  # items of a spread list
QUIRKY = dict(methods=("logistic", "ccs"), train_rows=96, test_rows=24, batch_size=32)  # zoo:quirky-arith
DRIFT_SITES = SITES
DRIFT_ROWS = slice(0, 24), slice(24, None)  # of TEXTS: the drift's training and evaluation statements


def drift_sets():
    """Arbitrary labels (both classes in each set): the test compares numbers, not what they mean."""
    from elk_lens.data.statements import StatementSet

    data = StatementSet(TEXTS, torch.tensor([i % 3 == 0 for i in range(len(TEXTS))]))
    train, held_out = (data.subset(list(range(len(TEXTS)))[rows]) for rows in DRIFT_ROWS)
    return train, {"held_out": held_out}


def drift(trajectory: Path):
    from elk_lens.drift_study import trajectory_drift
    from elk_lens.trajectory import Trajectory

    train, evals = drift_sets()
    return trajectory_drift(
        Trajectory.load(trajectory), train, evals, DRIFT_SITES, floor_resamples=3, answers=("a", "b")
    )


def quirky():
    from elk_lens.models import load_model
    from elk_lens.quirky.scores import quirky_reporter_scores

    scores = quirky_reporter_scores(load_model("zoo:quirky-arith"), **QUIRKY)
    return {**{f"log_odds/{k}": v for k, v in scores.log_odds.items()}, "output": scores.output}


def main(model_dir: Path, cache_dir: Path, out: Path, trajectory: Path) -> None:
    import elk_lens.capturing as capture_mod
    from elk_lens.distributed import ranks
    from elk_lens.models import load_model

    torch.set_num_threads(1)
    model = load_model(str(model_dir))
    rank = ranks().rank
    rows = []  # the rows of every forward batch this rank runs
    forward = capture_mod._forward_batch
    capture_mod._forward_batch = lambda model, tokens, recorder: (
        rows.append(len(tokens)) or forward(model, tokens, recorder)
    )
    kwargs = dict(batch_size=BATCH, shard_rows=SHARD_ROWS, progress=False)
    cached = capture_mod.capture(model, TEXTS, SITES, cache_dir=cache_dir, **kwargs).values
    plain = capture_mod.capture(model, TEXTS, SITES, **kwargs).values
    result = {"cached": cached, "plain": plain, "forward_rows": torch.tensor(rows)}
    save_file(result, str(out / f"rank{rank}.safetensors"))

    from elk_lens.report.rundir import RunDir

    run = RunDir(out / "run", 'name = "dist"\n')
    stages = {
        "one": run.stage("one", lambda: {"by": rank}),
        **run.stages({f"item-{i}": (lambda i=i: {"item": i, "by": rank}) for i in range(STAGES)}),
    }
    rows.clear()  # a collective stage: every rank computes it, the capture inside splits its shards
    stages["together"] = run.stage(
        "together",
        lambda: {"sum": float(capture_mod.capture(model, TEXTS, SITES, **kwargs).values.sum())},
        collective=True,
    )
    summary = {"stages": stages, "resumed": run.resumed, "together_rows": list(rows)}

    from elk_lens.distributed import spread
    from elk_lens.reporters import Reporter

    def item(i: int) -> dict:
        r = Reporter(torch.full((3,), i / 7), i / 3, torch.zeros(3), "logistic", "blocks.0.hook_resid_pre", {"i": i})
        return {"i": i, "by": rank, "x": torch.arange(i), "r": r, "pair": (i, None)}

    summary["spread"] = [
        {**x, "x": x["x"].tolist(), "w": x["r"].w.tolist(), "b": x["r"].b, "r": x["r"].provenance}
        for x in spread(range(SPREAD), item)
    ]

    import elk_lens.quirky.scores as scores_mod

    fits = []  # the quirky protocol's fits this rank runs
    fit = scores_mod.fit_method
    scores_mod.fit_method = lambda *a, **k: fits.append(k["site"]) or fit(*a, **k)
    save_file(quirky(), str(out / f"quirky{rank}.safetensors"))
    summary["quirky_fits"] = len(fits)

    from elk_lens.trajectory import Trajectory

    loads = []  # the checkpoints this rank loads
    model_at = Trajectory.model_at
    Trajectory.model_at = lambda self, t: loads.append(t) or model_at(self, t)
    summary["drift"] = drift(trajectory).to_dict()
    summary["drift_loads"] = loads
    (out / f"stages{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:5]))
