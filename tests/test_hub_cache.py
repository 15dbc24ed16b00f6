"""Hub names with a ``revision``, tested offline through the cache layout that a download writes.

Users with network access load Pythia checkpoints by hub name and revision, e.g.
``load_model("EleutherAI/pythia-70m", revision="step1000")`` or
``Trajectory.from_revisions("EleutherAI/pythia-70m", ["step1000", "step2000"])``. The rest of the
suite loads local directories only, so this path (``_check_hub_reachable`` -> ``boot_transformers``
with ``revision=``) would go untested. This module lays out a HuggingFace hub cache by hand, as
``huggingface_hub`` leaves it after a download::

    HF_HUB_CACHE/models--<org>--<name>/snapshots/<commit>/{config.json, model.safetensors, tokenizer...}
    HF_HUB_CACHE/models--<org>--<name>/refs/<revision>      (text: the commit hash)

with two tiny GPT-NeoX (Pythia architecture) checkpoints of different seeds, and loads them by hub
name with ``HF_HUB_OFFLINE=1``: each revision must resolve through ``refs/`` to its own snapshot.

huggingface_hub reads the cache location when it is imported, and this pytest process imported it
long ago, so everything is loaded in ONE subprocess (~5 s of imports) that prints JSON and saves logits.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import _save_hf, _with_tokenizer
from safetensors.torch import load_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

REPO = "elk-lens-tests/pythia-tiny"
COMMITS = {"step1000": "1" * 40, "step2000": "2" * 40}  # fake commit hashes: any 40 hex digits do
SEEDS = {"step1000": 0, "step2000": 1}  # different seeds, so the two checkpoints' weights differ
REFS = {**COMMITS, "main": COMMITS["step2000"]}
MISSING = "step3000"  # a revision with neither a ref nor a snapshot in the cache
TEXT = "hello world"

# The hub-name load and the snapshot-directory load read the same files through the same code on the
# same CPU, so their logits must be bit-identical: no tolerance.
SAME_FILES_ATOL = 0.0
# Failing fast means no network attempt at all; 5 s is far below huggingface_hub's ~23 s of retries
# and far above the cost of reading refs/ (milliseconds), so the bound is not timing-flaky.
FAIL_FAST_S = 5.0
SUBPROCESS_TIMEOUT_S = 120

SCRIPT = r"""
import json, socket, sys, time
import torch
from elk_lens.models import HubUnreachableError, fingerprint, load_model
from elk_lens.trajectory import Trajectory

torch.set_num_threads(1)
repo, text, missing, out_dir = sys.argv[1:5]
snapshots = json.loads(sys.argv[5])  # revision -> snapshot directory
res = {"fp_dir": {}, "fp_hub": {}}
logits = {}
for rev, snap in snapshots.items():
    local, hub = load_model(snap), load_model(repo, revision=rev)
    res["fp_dir"][rev], res["fp_hub"][rev] = fingerprint(local), fingerprint(hub)
    with torch.no_grad():
        logits[f"dir/{rev}"], logits[f"hub/{rev}"] = local(text), hub(text)
    logits[f"embed/{rev}"] = hub.state_dict()["embed.weight"].detach().clone()
res["fp_main"] = fingerprint(load_model(repo))  # no revision: refs/main
torch.save(logits, f"{out_dir}/tensors.pt")

traj = Trajectory.from_revisions(repo, list(snapshots))
res["traj_steps"] = traj.steps
res["traj_revisions"] = [c.revision for c in traj.checkpoints]
res["traj_fps"] = [fingerprint(traj.model_at(i)) for i in range(len(traj))]

attempts = []  # every name lookup or connection from here on (a lookup comes first, and may fail first)
def no_network(where):
    def refuse(*args, **kwargs):
        attempts.append(where)
        raise OSError(f"network disabled by test_hub_cache ({where})")
    return refuse
socket.getaddrinfo, socket.create_connection = no_network("getaddrinfo"), no_network("create_connection")
socket.socket.connect = no_network("connect")
start = time.perf_counter()
try:
    load_model(repo, revision=missing)
    res["missing"] = {"raised": None}
except Exception as e:
    res["missing"] = {"raised": type(e).__name__, "is_hub_error": isinstance(e, HubUnreachableError),
                      "is_oserror": isinstance(e, OSError), "message": str(e)}
res["missing"]["seconds"] = time.perf_counter() - start
res["missing"]["network_attempts"] = attempts
print("RESULT " + json.dumps(res))
"""


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, neox_dir, char_tok_dir) -> tuple[Path, dict[str, Path]]:
    """A hub cache holding REPO at two revisions (+ main), laid out as huggingface_hub writes it."""
    cache = tmp_path_factory.mktemp("hf_hub_cache")
    repo_dir = cache / ("models--" + REPO.replace("/", "--"))
    build = tmp_path_factory.mktemp("hub_build")
    cfg = GPTNeoXConfig.from_pretrained(str(neox_dir))  # the suite's tiny Pythia-architecture config
    snapshots = {}
    for rev, commit in COMMITS.items():
        model_dir = _save_hf(GPTNeoXForCausalLM, cfg, build / rev, seed=SEEDS[rev])
        snapshots[rev] = _with_tokenizer(model_dir, char_tok_dir, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    for ref, commit in REFS.items():
        (repo_dir / "refs" / ref).write_text(commit)  # no newline: huggingface_hub reads the file verbatim
    return cache, snapshots


@pytest.fixture(scope="module")
def loaded(hub_cache, tmp_path_factory) -> tuple[dict, dict]:
    """Run every load in one subprocess pointed at the cache; its JSON result and saved tensors."""
    cache, snapshots = hub_cache
    out = tmp_path_factory.mktemp("hub_out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_CACHE"}
    env.update(
        HF_HUB_CACHE=str(cache),
        HF_HOME=str(cache.parent / "hf_home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    args = [REPO, TEXT, MISSING, str(out), json.dumps({r: str(p) for r, p in snapshots.items()})]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1].removeprefix("RESULT ")), torch.load(out / "tensors.pt")


def test_the_cache_holds_two_different_checkpoints(hub_cache):
    _, snapshots = hub_cache
    a, b = (load_file(str(snapshots[r] / "model.safetensors")) for r in ("step1000", "step2000"))
    assert a.keys() == b.keys()
    assert not torch.equal(a["gpt_neox.embed_in.weight"], b["gpt_neox.embed_in.weight"])


def test_a_hub_revision_loads_that_revisions_snapshot(loaded, hub_cache):
    res, tensors = loaded
    _, snapshots = hub_cache
    assert res["fp_hub"] == res["fp_dir"]  # hub name + revision == the snapshot directory's files
    assert res["fp_hub"]["step1000"] != res["fp_hub"]["step2000"]
    for rev, snap in snapshots.items():
        torch.testing.assert_close(tensors[f"hub/{rev}"], tensors[f"dir/{rev}"], atol=SAME_FILES_ATOL, rtol=0)
        # independent of every loader: the embedding is the raw tensor in that snapshot's safetensors file
        raw = load_file(str(snap / "model.safetensors"))["gpt_neox.embed_in.weight"]
        torch.testing.assert_close(tensors[f"embed/{rev}"], raw, atol=SAME_FILES_ATOL, rtol=0)
    assert not torch.equal(tensors["hub/step1000"], tensors["hub/step2000"])


def test_no_revision_follows_refs_main(loaded):
    res, _ = loaded
    assert res["fp_main"] == res["fp_dir"]["step2000"]


def test_trajectory_from_revisions_loads_each_revision_in_order(loaded):
    res, _ = loaded
    assert res["traj_steps"] == [1000, 2000]
    assert res["traj_revisions"] == ["step1000", "step2000"]
    assert res["traj_fps"] == [res["fp_dir"]["step1000"], res["fp_dir"]["step2000"]]


def test_a_revision_missing_from_the_cache_fails_fast_offline(loaded):
    missing = loaded[0]["missing"]
    assert missing["raised"] == "HubUnreachableError" and missing["is_hub_error"] and missing["is_oserror"]
    assert f"{REPO!r} looks like a hub model name" in missing["message"]
    assert "HF_HUB_OFFLINE is set" in missing["message"]
    assert missing["network_attempts"] == []
    assert missing["seconds"] < FAIL_FAST_S
