"""Data-parallel capture under ``torchrun`` (issue 19): two CPU processes on gloo give, on every rank, the
bytes one process gives, and leave the cache entry one process would write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import boot_native
from distributed_job import BATCH, SHARD_ROWS, SITES, STAGES, TEXTS
from safetensors.torch import load_file

import elk_lens.capturing as capture_mod
from elk_lens._threads import torch_threads
from elk_lens.capturing import capture
from elk_lens.models import load_model, save_model

JOB = Path(__file__).with_name("distributed_job.py")


@pytest.fixture(scope="module")
def two_ranks(char_tok_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    model_dir = save_model(boot_native(char_tok_dir), root / "model")
    cache, out = root / "cache", root / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(JOB), str(model_dir), str(cache), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return model_dir, cache, [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)], out


def test_two_ranks_capture_what_one_process_captures(two_ranks):
    model_dir, _, got, _ = two_ranks
    with torch_threads(1):
        alone = capture(load_model(str(model_dir)), TEXTS, SITES, batch_size=BATCH, shard_rows=SHARD_ROWS).values
    for rank, values in enumerate(got):
        for kind in ("cached", "plain"):
            assert torch.equal(values[kind], alone), f"rank {rank}, {kind}: not the single-process bytes"
    # shard i is rank i mod 2's: rank 0 runs shards 0, 2, 4 (8 rows each), rank 1 shards 1, 3, 5 (8, 8, 1),
    # in batches of 4, once with the cache and once without
    assert got[0]["forward_rows"].tolist() == [4] * 6 * 2
    assert got[1]["forward_rows"].tolist() == ([4] * 4 + [1]) * 2


def test_the_ranks_shards_are_the_entry_one_process_reads_without_a_forward(two_ranks, monkeypatch):
    model_dir, cache, got, _ = two_ranks
    monkeypatch.setattr(capture_mod, "_forward_batch", lambda *a, **k: pytest.fail("a shard was recomputed"))
    (entry,) = [d for d in cache.iterdir() if d.is_dir()]
    assert len(list(entry.glob("shard_*.safetensors"))) == -(-len(TEXTS) // SHARD_ROWS)
    kwargs = dict(batch_size=BATCH, shard_rows=SHARD_ROWS, cache_dir=cache)
    assert torch.equal(capture(load_model(str(model_dir)), TEXTS, SITES, **kwargs).values, got[0]["cached"])


def test_a_runs_stages_are_computed_once_and_its_independent_stages_spread_over_the_ranks(two_ranks):
    """``run.stage``: rank 0 computes, the other reads its file; ``run.stages``: stage i is rank i mod 2's, and
    every rank ends with every result; ``collective=True``: both compute, capture splitting its shards, and the
    stage is written once (elk_lens/report/rundir.py)."""
    out = two_ranks[3]
    seen = [json.loads((out / f"stages{r}.json").read_text()) for r in (0, 1)]
    together = seen[0]["stages"].pop("together")
    assert seen[1]["stages"].pop("together") == together  # the collective stage: computed by both, equal
    assert [s["together_rows"] for s in seen] == [[4] * 6, [4] * 4 + [1]]  # its capture split over the ranks
    expected = {"one": {"by": 0}, **{f"item-{i}": {"item": i, "by": i % 2} for i in range(STAGES)}}
    assert [s["stages"] for s in seen] == [expected, expected]
    assert [s["resumed"] for s in seen] == [[], []]
    written = sorted(f"{n}.json" for n in [*expected, "together"])
    assert sorted(p.name for p in (out / "run" / "stages").iterdir()) == written
