"""The training state as safetensors + JSON (elk_lens._state): exact round trips, kill-safe replacement, and a
resumed fine-tune from it that equals an uninterrupted one bitwise."""

import json

import numpy as np
import pytest
import torch
from conftest import boot_native

from elk_lens import _state
from elk_lens._state import clear_state, flatten, read_state, unflatten, write_state
from elk_lens.data.statements import StatementSet
from elk_lens.train import OLD_STATE_FILE, STATE_FILE, FineTuneConfig, fine_tune

TEXTS = [f"{a} plus {b} is {a + b}." for a in range(4) for b in range(4)]
TRUTH = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
CONFIG = FineTuneConfig(
    steps=6, lr=3e-3, warmup=2, batch_size=4, answers=("y", "n"), lm_loss_weight=0.5, checkpoints=(0, 2, 4, 6)
)


class Killed(Exception):
    pass


def assert_same(a, b, where="state"):
    """Equal structure, types, and bitwise-equal tensors (dtype and shape included). A state dict's
    OrderedDict comes back as a dict with the same keys in the same order, which is what loading reads."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # NaN equals NaN here


def _adamw_state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 5)).square().mean().backward()
        opt.step()
    return {"model": model.state_dict(), "opt": opt.state_dict()}


def test_an_adamw_state_dict_round_trips_exactly(tmp_path):
    state = _adamw_state()
    tensors, skeleton = flatten(state)
    json.dumps(skeleton)  # the skeleton is plain JSON
    assert_same(unflatten(json.loads(json.dumps(skeleton)), tensors), state)
    write_state(tmp_path / "s.json", state)
    back = read_state(tmp_path / "s.json", keys=("model", "opt"), what="test state")
    assert_same(back, state)
    assert isinstance(back["opt"]["param_groups"][0]["betas"], tuple)  # tuples stay tuples
    assert sorted(back["opt"]["state"]) == [0, 1, 2, 3]  # int parameter ids stay ints


def test_rng_states_round_trip_and_draw_the_same_numbers(tmp_path):
    rng = np.random.default_rng(12345)
    rng.random(7)
    torch.manual_seed(3)
    torch.rand(5)
    state = {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    assert state["rng"]["state"]["state"] > 2**64  # PCG64's 128-bit state: beyond a float, kept as a JSON int
    write_state(tmp_path / "s.json", state)
    back = read_state(tmp_path / "s.json", keys=("rng", "torch_rng"), what="test state")
    assert_same(back, state)
    expected_np, expected_torch = rng.random(4), torch.rand(4)
    again = np.random.default_rng()
    again.bit_generator.state = back["rng"]
    torch.set_rng_state(back["torch_rng"])
    assert np.array_equal(again.random(4), expected_np) and torch.equal(torch.rand(4), expected_torch)


def test_odd_keys_scalars_and_shared_tensors_round_trip():
    w = torch.arange(6.0).reshape(2, 3)
    state = {
        "__tensor__": "a key that looks like a marker",
        "ids": {0: "zero", 1.5: None, (1, 2): [True, -(2**80)]},
        "floats": [0.1, 1e-300, float("inf"), float("nan")],
        "tied": (w, w.T, w[0]),  # one storage, three views: safetensors refuses shared storage unless copied
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, dtype=torch.int64),
    }
    tensors, skeleton = flatten(state)
    assert_same(unflatten(json.loads(json.dumps(skeleton)), tensors), state)


def test_what_is_not_tensors_or_json_is_refused():
    with pytest.raises(TypeError, match="got ndarray"):
        flatten({"x": np.zeros(3)})


def test_a_kill_before_the_json_leaves_the_previous_state_whole(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    write_state(path, {"step": 1, "w": torch.ones(3)})

    def killed(*args):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(_state, "atomic_write_text", killed)
        with pytest.raises(Killed):
            write_state(path, {"step": 2, "w": torch.zeros(3)})
    assert len(list(tmp_path.glob("s.*.safetensors"))) == 2  # the new tensors are written, not yet named
    assert_same(read_state(path, keys=("step", "w"), what="test state"), {"step": 1, "w": torch.ones(3)})
    write_state(path, {"step": 3, "w": torch.full((3,), 3.0)})
    assert len(list(tmp_path.glob("s.*.safetensors"))) == 1  # the orphan is removed with the older pair
    clear_state(path)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_skeleton_or_a_missing_key_names_the_file(tmp_path):
    path = tmp_path / "s.json"
    write_state(path, {"step": 1, "w": torch.ones(3)})
    with pytest.raises(ValueError, match=r"s\.json: the saved test state lacks \['opt'\]"):
        read_state(path, keys=("step", "opt"), what="test state")
    meta = json.loads(path.read_text())
    meta["state"]["w"] = {"__tensor__": "99"}
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"s\.json: the saved test state is malformed \(KeyError"):
        read_state(path, keys=("step",), what="test state")


def _fine_tune(tok_dir, out, **kwargs):
    model = boot_native(tok_dir)
    traj = fine_tune(model, StatementSet(TEXTS, TRUTH), TRUTH, out, base_spec="base", config=CONFIG, **kwargs)
    return model, traj


def test_a_resume_from_the_saved_state_equals_an_uninterrupted_run(tmp_path, char_tok_dir):
    whole, whole_traj = _fine_tune(char_tok_dir, tmp_path / "whole")

    def kill_at_5(step, loss):
        if step == 5:  # after the step-4 checkpoint: step 5 is redone from the saved state
            raise Killed

    with pytest.raises(Killed):
        _fine_tune(char_tok_dir, tmp_path / "resumed", on_step=kill_at_5)
    names = {p.name for p in (tmp_path / "resumed").glob(".train_state*")} - {STATE_FILE}
    assert (tmp_path / "resumed" / STATE_FILE).is_file() and len(names) == 1 and names.pop().endswith(".safetensors")
    assert not (tmp_path / "resumed" / OLD_STATE_FILE).exists()
    state = json.loads((tmp_path / "resumed" / STATE_FILE).read_text())
    assert state["state"]["step"] == 4
    resumed, resumed_traj = _fine_tune(char_tok_dir, tmp_path / "resumed")
    assert_same(resumed.state_dict(), whole.state_dict())
    assert resumed_traj.info["history"] == whole_traj.info["history"]
    for c in whole_traj.checkpoints:  # every checkpoint file, byte for byte
        assert (tmp_path / "resumed" / c.weights).read_bytes() == (tmp_path / "whole" / c.weights).read_bytes()
