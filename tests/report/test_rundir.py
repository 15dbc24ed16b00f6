"""``RunDir``: resumable tensor stages (computed once, saved atomically, reloaded bit-identical) and CSV tables
whose rows differ in their keys."""

import csv
import io
import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import elk_lens._atomic as atomic
from elk_lens.report.rundir import RunDir

CONFIG = "name = 'test'\n"


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    return {
        "f64": m,
        "f32_transposed": torch.randn(4, 6, generator=gen).T,  # non-contiguous: saved as its values
        "i64": torch.randint(-9, 9, (7,), generator=gen),
        "bool": torch.rand(3, 2, generator=gen) < 0.5,
        "scalar": torch.tensor(1.5),
        "special": torch.tensor([float("nan"), float("inf"), -0.0, 1e-300]),
    }


def _leftovers(run: RunDir) -> list[str]:
    stages = run.path / "stages"
    return sorted(p.name for p in stages.iterdir()) if stages.exists() else []


def _assert_bit_identical(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        # compare the bytes: NaN != NaN and -0.0 == 0.0 under torch.equal, but not as bits
        assert got[k].reshape(-1).view(torch.uint8).tolist() == v.reshape(-1).view(torch.uint8).tolist(), k


def test_tensor_stage_computes_once_and_reloads_bit_identical(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _tensors()

    run = RunDir(tmp_path / "run", CONFIG)
    first = run.tensor_stage("scores", compute)
    _assert_bit_identical(first, _tensors())
    assert len(calls) == 1 and "scores" in run.timings and run.resumed == []
    second = run.tensor_stage("scores", compute)
    assert len(calls) == 1 and run.resumed == ["scores"]
    _assert_bit_identical(second, _tensors())
    # a new process on the same directory (a resumed run) reads the saved tensors too
    resumed = RunDir(tmp_path / "run", CONFIG)
    _assert_bit_identical(resumed.tensor_stage("scores", compute), _tensors())
    assert len(calls) == 1 and resumed.resumed == ["scores"] and resumed.timings == {}
    assert _leftovers(run) == ["scores.safetensors"]  # no temporary files beside it


def test_a_failing_compute_writes_nothing_and_is_retried(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG)

    def broken():
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="killed half-way"):
        run.tensor_stage("scores", broken)
    assert _leftovers(run) == [] and run.resumed == []
    _assert_bit_identical(run.tensor_stage("scores", _tensors), _tensors())  # computed now, not "resumed"
    assert run.resumed == []


def test_a_failing_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """The write goes to a temporary sibling that is renamed into place: a crash before the rename leaves
    neither the stage file nor the temporary one, and the next call computes again."""
    run = RunDir(tmp_path / "run", CONFIG)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        run.tensor_stage("scores", _tensors)
    assert _leftovers(run) == []
    monkeypatch.undo()
    calls = []
    run.tensor_stage("scores", lambda: calls.append(1) or _tensors())
    assert calls == [1] and _leftovers(run) == ["scores.safetensors"]


def test_tensor_stage_saves_views_of_one_tensor(tmp_path):
    x = torch.arange(12.0).reshape(3, 4)
    run = RunDir(tmp_path / "run", CONFIG)
    out = run.tensor_stage("views", lambda: {"all": x, "first_row": x[0]})
    assert torch.equal(out["first_row"], x[0])


def test_write_csv_takes_the_union_of_keys_and_leaves_blanks(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG)
    rows = [
        {"method": "ccs", "auroc": 0.5},
        {"method": "logistic", "site": "blocks.0.hook_resid_pre", "auroc": 0.99},
        {"note": 'quoted, "with" commas', "method": "crc"},
    ]
    path = run.write_csv("table.csv", rows)
    text = path.read_text()
    read = list(csv.DictReader(io.StringIO(text)))
    assert list(read[0]) == ["method", "auroc", "site", "note"]  # first-seen order
    assert read == [
        {"method": "ccs", "auroc": "0.5", "site": "", "note": ""},
        {"method": "logistic", "auroc": "0.99", "site": "blocks.0.hook_resid_pre", "note": ""},
        {"method": "crc", "auroc": "", "site": "", "note": 'quoted, "with" commas'},
    ]
    assert sorted(p.name for p in run.path.iterdir()) == ["config.toml", "table.csv"]


def test_json_stage_resumes_and_another_config_is_refused(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG)
    calls = []
    assert run.stage("s", lambda: calls.append(1) or {"a": [1, 2]}) == {"a": [1, 2]}
    assert run.stage("s", lambda: calls.append(1) or {"a": [3]}) == {"a": [1, 2]} and calls == [1]
    assert run.stage("null", lambda: calls.append(1)) is None and run.stage("null", lambda: calls.append(1)) is None
    assert calls == [1, 1] and run.resumed == ["s", "null"]  # a null result is a saved result too
    with pytest.raises(ValueError, match="already holds a run of a different config"):
        RunDir(tmp_path / "run", "name = 'other'\n")


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_a_value(path):
    """Still well-formed, one value changed: only the checksum tells."""
    data = path.read_bytes()
    if path.suffix == ".json":
        path.write_text(path.read_text().replace("0.25", "0.35"))
    else:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last byte of the last tensor's data


def _strip_checksum(path):
    """As written before stages carried checksums: the bare result."""
    if path.suffix == ".json":
        path.write_text(json.dumps(json.loads(path.read_text())["result"], indent=2))
    else:
        save_file(load_file(str(path)), str(path))


DAMAGE = {"truncated": _truncate, "a value edited": _edit_a_value, "no checksum": _strip_checksum}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("kind", ["json", "tensors"])
def test_a_damaged_stage_file_is_never_used_but_recomputed_with_a_warning(tmp_path, caplog, kind, damage):
    """A stage file that is not what the stage saved (cut short, edited, or unverifiable) is not read back:
    the stage is computed again, its file replaced, and a warning names the file."""
    if kind == "json":
        want = {"auroc": [0.25, float("nan"), -0.0, 1e-300], "site": "blocks.0.hook_resid_pre", "n": 3}
        run_stage, file = RunDir.stage, "s.json"
    else:
        want = _tensors()
        run_stage, file = RunDir.tensor_stage, "s.safetensors"
    run = RunDir(tmp_path / "run", CONFIG)
    run_stage(run, "s", lambda: want)
    path = run.path / "stages" / file
    saved = path.read_bytes()
    DAMAGE[damage](path)
    calls = []
    resumed = RunDir(tmp_path / "run", CONFIG)
    with caplog.at_level(logging.WARNING, logger="elk_lens.report.rundir"):
        got = run_stage(resumed, "s", lambda: calls.append(1) or want)
    assert calls == [1] and resumed.resumed == [] and "s" in resumed.timings
    assert str(path) in caplog.text and "computing stage 's' again" in caplog.text
    assert path.read_bytes() == saved  # replaced by the same bytes: a stage file is reproducible
    again = RunDir(tmp_path / "run", CONFIG)
    got = run_stage(again, "s", lambda: calls.append(1) or want)
    assert calls == [1] and again.resumed == ["s"]
    if kind == "json":
        assert json.dumps(got) == json.dumps(want)  # NaN != NaN: compare as saved
    else:
        _assert_bit_identical(got, want)
