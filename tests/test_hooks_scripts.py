"""The scripts in hooks/ run as they are and write what they say."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import elk_lens as el

ROOT = Path(__file__).resolve().parents[1]


def test_capture_residuals_script(tmp_path):
    out = tmp_path / "acts.safetensors"
    cmd = [sys.executable, str(ROOT / "hooks" / "capture_residuals.py"), "--rows", "40", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    with safe_open(str(out), framework="pt") as f:
        acts, truth, meta = f.get_tensor("activations"), f.get_tensor("truth"), f.metadata()
    assert acts.shape == (80, 5, 128) and truth.shape == (80,)
    model = el.load_model("zoo:quirky-arith")
    data = el.quirky_arithmetic(40, split="test")
    expected = el.capture(model, data, el.residual_sites(model)).values
    assert torch.equal(acts, expected) and torch.equal(truth, data.truth)
    assert json.loads(meta["model_fingerprint"]) == el.fingerprint(model)


def _script(name: str):
    """Import a hook script as a module (they are scripts, not a package) to call its main(argv)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steer_with_reporter_script(tmp_path):
    steer = _script("steer_with_reporter")
    site = "blocks.3.hook_resid_post"
    moved = steer.main(["--fit", site, "--save-reporter", str(tmp_path / "rep"), "--rows", "60", "--alpha", "1"])
    assert moved["log_odds_true_steered"] > moved["log_odds_true"] + 5  # v points from false to true statements
    assert moved["log_odds_false_steered"] > moved["log_odds_false"] + 5
    still = steer.main(
        ["--reporter", str(tmp_path / "rep"), "--rows", "60", "--alpha", "0", "--out", str(tmp_path / "o.json")]
    )
    assert still["log_odds_true_steered"] == still["log_odds_true"]  # alpha 0 is the identity edit
    assert json.loads((tmp_path / "o.json").read_text()) == still
    with pytest.raises(ValueError, match="pass allow_other_model=True"):
        steer.main(["--model", "zoo:quirky-arith-base", "--reporter", str(tmp_path / "rep")])


def test_track_checkpoints_script(tmp_path):
    track = _script("track_checkpoints")
    model = el.load_model("zoo:quirky-arith-base")
    for step in (10, 20):  # two identical checkpoints, one directory each
        el.save_model(model, tmp_path / "ckpts" / f"step{step}")
    rows = track.main([str(tmp_path / "ckpts"), "--dirs", "--rows", "600", "--out", str(tmp_path / "t.json")])
    assert [r["step"] for r in rows] == [10, 20]
    assert rows[0]["first reporter"] == rows[0]["refitted"] == rows[1]["first reporter"] == rows[1]["refitted"]
    assert json.loads((tmp_path / "t.json").read_text()) == rows


def test_ablate_truth_heads_script(tmp_path):
    ablate = _script("ablate_truth_heads")
    out = ablate.main(["--pairs", "32", "--rows", "150", "--out", str(tmp_path / "a.json")])
    assert len(out["top heads"]) == 2 and not set(out["top heads"]) & set(out["control heads"])
    drop_top = out["intact"]["reporter AUROC"] - out["top heads ablated"]["reporter AUROC"]
    drop_control = out["intact"]["reporter AUROC"] - out["control heads ablated"]["reporter AUROC"]
    assert drop_top > drop_control + 0.1  # measured 0.30 vs 0.01 at 128 pairs / 500 rows
    assert json.loads((tmp_path / "a.json").read_text()) == out
    with pytest.raises(ValueError, match="--top must lie in 1..6"):
        ablate.main(["--top", "7", "--pairs", "8", "--rows", "20"])
