"""Data parallelism under ``torchrun`` (issue 19): two CPU processes on gloo give, on every rank, the bytes one
process gives — captures, run stages, and fits spread over the ranks (a list of items, the quirky protocol's
reporters, a trajectory's checkpoints) — and leave the cache entry one process would write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import boot_native
from distributed_job import BATCH, QUIRKY, SHARD_ROWS, SITES, SPREAD, STAGES, TEXTS, drift, drift_sets, quirky
from safetensors.torch import load_file

import elk_lens.capturing as capture_mod
from elk_lens._threads import torch_threads
from elk_lens.capturing import capture
from elk_lens.models import load_model, save_model
from elk_lens.sites import residual_sites
from elk_lens.train import FineTuneConfig, fine_tune

JOB = Path(__file__).with_name("distributed_job.py")


@pytest.fixture(scope="module")
def two_ranks(char_tok_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    model_dir = save_model(boot_native(char_tok_dir), root / "model")
    cache, out, trajectory = root / "cache", root / "out", root / "trajectory"
    out.mkdir()
    train, _ = drift_sets()  # a trajectory of three checkpoints, steps 0, 1, 2
    config = FineTuneConfig(steps=2, lr=1e-2, warmup=1, batch_size=8, answers=("a", "b"), lm_loss_weight=0.5)
    fine_tune(load_model(str(model_dir)), train, train.truth, trajectory, base_spec=str(model_dir), config=config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(JOB), str(model_dir), str(cache), str(out), str(trajectory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return model_dir, cache, [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)], out, trajectory


def test_two_ranks_capture_what_one_process_captures(two_ranks):
    model_dir, _, got, *_ = two_ranks
    with torch_threads(1):
        alone = capture(load_model(str(model_dir)), TEXTS, SITES, batch_size=BATCH, shard_rows=SHARD_ROWS).values
    for rank, values in enumerate(got):
        for kind in ("cached", "plain"):
            assert torch.equal(values[kind], alone), f"rank {rank}, {kind}: not the single-process bytes"
    # shards are dealt in turn: rank 0 runs shards 0, 2, 4 (8 rows each), rank 1 shards 1, 3, 5 (8, 8, 1),
    # in batches of 4, once with the cache and once without
    assert got[0]["forward_rows"].tolist() == [4] * 6 * 2
    assert got[1]["forward_rows"].tolist() == ([4] * 4 + [1]) * 2


def test_the_ranks_shards_are_the_entry_one_process_reads_without_a_forward(two_ranks, monkeypatch):
    model_dir, cache, got, *_ = two_ranks
    monkeypatch.setattr(capture_mod, "_forward_batch", lambda *a, **k: pytest.fail("a shard was recomputed"))
    (entry,) = [d for d in cache.iterdir() if d.is_dir()]
    assert len(list(entry.glob("shard_*.safetensors"))) == -(-len(TEXTS) // SHARD_ROWS)
    kwargs = dict(batch_size=BATCH, shard_rows=SHARD_ROWS, cache_dir=cache)
    assert torch.equal(capture(load_model(str(model_dir)), TEXTS, SITES, **kwargs).values, got[0]["cached"])


def test_a_runs_stages_are_computed_once_and_its_independent_stages_spread_over_the_ranks(two_ranks):
    """``run.stage``: rank 0 computes, the other reads its file; ``run.stages``: the stages are dealt in turn, and
    every rank ends with every result; ``collective=True``: both compute, capture splitting its shards, and the
    stage is written once (elk_lens/report/rundir.py)."""
    out = two_ranks[3]
    seen = [json.loads((out / f"stages{r}.json").read_text()) for r in (0, 1)]
    together = seen[0]["stages"].pop("together")
    assert seen[1]["stages"].pop("together") == together  # the collective stage: computed by both, equal
    # its capture split over the ranks: work is dealt in turn across calls (Ranks.deal), and 6 + 6 shards and 5
    # stages came before it, so its shards 0, 2, 4 go to rank 1 and 1, 3, 5 (8, 8, 1 rows) to rank 0
    assert [s["together_rows"] for s in seen] == [[4] * 4 + [1], [4] * 6]
    expected = {"one": {"by": 0}, **{f"item-{i}": {"item": i, "by": i % 2} for i in range(STAGES)}}
    assert [s["stages"] for s in seen] == [expected, expected]
    assert [s["resumed"] for s in seen] == [[], []]
    written = sorted(f"{n}.json" for n in [*expected, "together"])
    assert sorted(p.name for p in (out / "run" / "stages").iterdir()) == written


def _seen(out) -> list[dict]:
    return [json.loads((out / f"stages{r}.json").read_text()) for r in (0, 1)]


def test_a_spread_list_deals_its_items_over_the_ranks_and_every_rank_gets_every_result(two_ranks):
    """``elk_lens.distributed.spread``: results travel as JSON and safetensors bytes, tuples, tensors and
    reporters included, unrounded."""
    expected = [
        {
            "i": i,
            "by": (i + 1) % 2,  # dealt in turn: 23 pieces of work came before (see above)
            "x": list(range(i)),
            "w": torch.full((3,), i / 7).tolist(),
            "b": i / 3,
            "r": {"i": i},
            "pair": [i, None],
        }
        for i in range(SPREAD)
    ]
    assert [s["spread"] for s in _seen(two_ranks[3])] == [expected, expected]


def test_the_quirky_protocols_fits_spread_over_the_ranks_and_equal_one_processs(two_ranks):
    out = two_ranks[3]
    with torch_threads(1):
        alone = quirky()
    for rank in (0, 1):
        got = load_file(str(out / f"quirky{rank}.safetensors"))
        assert sorted(got) == sorted(alone)
        for key, value in alone.items():
            assert torch.equal(got[key], value), f"rank {rank}, {key}: not the single-process bytes"
    fits = 3 * len(QUIRKY["methods"]) * len(residual_sites(load_model("zoo:quirky-arith")))  # training sets A, AE, B
    assert [s["quirky_fits"] for s in _seen(out)] == [-(-fits // 2), fits // 2]


def test_a_trajectorys_checkpoints_spread_over_the_ranks_and_its_drift_equals_one_processs(two_ranks):
    out, trajectory = two_ranks[3], two_ranks[4]
    with torch_threads(1):
        alone = json.dumps(drift(trajectory).to_dict(), sort_keys=True)
    seen = _seen(out)
    for rank in (0, 1):
        assert json.dumps(seen[rank]["drift"], sort_keys=True) == alone, f"rank {rank}: not the single-process drift"
    # checkpoint 0 on both (its reporters are scored at every checkpoint), then checkpoints 1 and 2, one each
    loads = [s["drift_loads"] for s in seen]
    assert [x[0] for x in loads] == [0, 0] and sorted(x[1] for x in loads) == [1, 2] and {len(x) for x in loads} == {2}
