"""Run by ``tests/test_distributed.py`` under ``torchrun``: every rank captures, then writes what it got.

python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_job.py MODEL CACHE OUT
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


def main(model_dir: Path, cache_dir: Path, out: Path) -> None:
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
    summary = {"stages": stages, "resumed": run.resumed, "together_rows": rows}
    (out / f"stages{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
