"""The scripts in hooks/ run as they are and write what they say."""

import json
import subprocess
import sys
from pathlib import Path

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
