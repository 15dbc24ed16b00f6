"""Bad saved reporters and bad saves: `Reporter.save` / `Reporter.load`."""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from bad_inputs import Case, Env, edit_marker
from elk_lens import check_compatible
from elk_lens._atomic import sha256_file
from elk_lens.models import fingerprint
from elk_lens.reporters import Reporter

D = 32  # the catalogue model's d_model
SITE = "blocks.1.hook_resid_pre"


def _reporter(env: Env, seed: int = 0, d: int = D) -> Reporter:
    gen = torch.Generator().manual_seed(seed)
    return Reporter(
        torch.randn(d, generator=gen),
        0.25 + seed,
        torch.randn(d, generator=gen),
        "logistic",
        SITE,
        {"model": fingerprint(env.model)},
    )


def _format_1(path: Path, w: torch.Tensor, v: torch.Tensor, **meta) -> Path:
    """A reporter directory as elk-lens wrote it before checksums (format 1), with ``meta`` edited."""
    path.mkdir(parents=True)
    save_file({"w": w, "v": v}, str(path / "reporter.safetensors"))
    base = {
        "format_version": 1,
        "b": 0.5,
        "method": "logistic",
        "site": SITE,
        "reads": "statement",
        "d_model": D,
        "provenance": {},
    }
    (path / "reporter.json").write_text(json.dumps({**base, **meta}))
    return path


def _load_format_1(env: Env, w=None, v=None, **meta) -> Reporter:
    w = torch.randn(D) if w is None else w
    return Reporter.load(_format_1(env.tmp / "r", w, torch.randn(D) if v is None else v, **meta))


def _with_nan(t: torch.Tensor, i: int = 3) -> torch.Tensor:
    t = t.clone()
    t[i] = float("nan")
    return t


def _saved(env: Env) -> Path:
    return _reporter(env).save(env.tmp / "r")


def _edit_json(path: Path, edit, *, reseal: bool = True) -> Path:
    """Edit reporter.json; resealed unless asked (then the marker's own digest must catch the edit)."""
    edit_marker(path / "reporter.json", edit, reseal=reseal)
    return path


def _flip_byte(file: Path, at: int = -3) -> None:
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def _damaged_tensors(env: Env) -> Reporter:
    path = _saved(env)
    _flip_byte(path / "reporter.safetensors")
    return Reporter.load(path)


def _missing_tensors(env: Env, format_1: bool) -> Reporter:
    path = _format_1(env.tmp / "r", torch.randn(D), torch.randn(D)) if format_1 else _saved(env)
    (path / "reporter.safetensors").unlink()
    return Reporter.load(path)


def _reporters_dir(env: Env) -> Path:
    """A directory of the user's reporters, one per subdirectory, and a note of theirs."""
    root = env.tmp / "reporters"
    for seed in (1, 2):
        _reporter(env, seed).save(root / f"layer{seed}")
    (root / "notes.md").write_text("which is which")
    return root


def _others_intact(root: Path, env: Env) -> None:
    assert (root / "notes.md").read_text() == "which is which"
    for seed in (1, 2):
        loaded = Reporter.load(root / f"layer{seed}")
        assert torch.equal(loaded.w, _reporter(env, seed).w) and loaded.b == _reporter(env, seed).b


def _save_into_reporters_dir(env: Env) -> None:
    root = _reporters_dir(env)
    try:
        _reporter(env).save(root)
    finally:
        _others_intact(root, env)
        assert sorted(os.listdir(root)) == ["layer1", "layer2", "notes.md"]


def _overwrite_into_reporters_dir(env: Env) -> Path:
    root = _reporters_dir(env)
    _reporter(env, seed=5).save(root, overwrite=True)
    _reporter(env).save(root, overwrite=True)  # replaces the seed-5 reporter's files, nothing else
    return root


def _check_overwrite(root: Path, env: Env) -> None:
    _others_intact(root, env)
    assert torch.equal(Reporter.load(root).w, _reporter(env).w)
    assert sorted(os.listdir(root)) == ["layer1", "layer2", "notes.md", "reporter.json", "reporter.safetensors"]


def _save_onto_file(env: Env) -> None:
    file = env.tmp / "reporter.pt"
    file.write_bytes(b"the user's own file")
    try:
        _reporter(env).save(file)
    finally:
        assert file.read_bytes() == b"the user's own file" and os.listdir(env.tmp) == ["reporter.pt"]


def _format_1_round_trip(env: Env) -> tuple[Reporter, Reporter]:
    """A reporter written in format 1, and what loading it gives."""
    expected = _reporter(env)
    meta = {"b": expected.b, "provenance": expected.provenance}
    return _reporter(env), Reporter.load(_format_1(env.tmp / "r", expected.w, expected.v, **meta))


def _check_same(pair: tuple[Reporter, Reporter], env: Env) -> None:
    expected, loaded = pair
    assert torch.equal(loaded.w, expected.w) and torch.equal(loaded.v, expected.v)
    assert (loaded.b, loaded.method, loaded.site, loaded.provenance, loaded.reads) == (
        expected.b,
        expected.method,
        expected.site,
        expected.provenance,
        expected.reads,
    )


def _dtype_not_as_recorded(env: Env) -> Reporter:
    """The tensors file replaced by a float64 copy, its checksum updated: the JSON's record still says float32."""
    path, r = _saved(env), _reporter(env)
    save_file({"w": r.w.double(), "v": r.v.double()}, str(path / "reporter.safetensors"))
    digest = sha256_file(path / "reporter.safetensors")
    return Reporter.load(_edit_json(path, lambda m: m["files"].update({"reporter.safetensors": digest})))


def _json_not_json(env: Env) -> Reporter:
    path = _saved(env)
    (path / "reporter.json").write_text("{'b': 1}")
    return Reporter.load(path)


CASES = [
    Case(
        "reporter-files/wrong-shape-w",
        lambda env: _load_format_1(env, w=torch.randn(D - 1)),
        ValueError,
        r"r/reporter\.json: w must have shape \(d_model,\) = \(32,\); got \(31,\)",
        finding=True,
    ),
    Case(
        "reporter-files/2d-v",
        lambda env: _load_format_1(env, v=torch.randn(1, D)),
        ValueError,
        r"r/reporter\.json: v must have shape \(d_model,\) = \(32,\); got \(1, 32\)",
        finding=True,
    ),
    Case(
        "reporter-files/integer-w",
        lambda env: _load_format_1(env, w=torch.arange(D)),
        ValueError,
        r"reporter\.safetensors: w must be a floating tensor \(\['bfloat16', 'float16', 'float32', 'float64'\]\); "
        r"got torch\.int64",
        finding=True,
    ),
    Case(
        "reporter-files/dtype-not-as-recorded",
        _dtype_not_as_recorded,
        ValueError,
        r"r/reporter\.safetensors: tensor '[vw]' has \{'dtype': 'float64', 'shape': \[32\]\}; \S*reporter\.json "
        r"records \{'dtype': 'float32', 'shape': \[32\]\}",
    ),
    Case(
        "reporter-files/nan-in-v",
        lambda env: _load_format_1(env, v=_with_nan(torch.randn(D))),
        ValueError,
        r"reporter\.safetensors: v must be finite; got nan at flat index 3",
        finding=True,
    ),
    Case(
        "reporter-files/inf-b",
        lambda env: _load_format_1(env, b=float("inf")),
        ValueError,
        r"r/reporter\.json: b \(the bias\) must be finite; got inf",
    ),
    Case(
        "reporter-files/b-not-a-number",
        lambda env: _load_format_1(env, b="0.5"),
        ValueError,
        r"r/reporter\.json: b \(the bias\) must be a number; got '0\.5'",
    ),
    Case(
        "reporter-files/unknown-reads",
        lambda env: _load_format_1(env, reads="both"),
        ValueError,
        r"r/reporter\.json: reads must be one of \('statement', 'contrast'\); got 'both'",
    ),
    Case(
        "reporter-files/empty-site",
        lambda env: _load_format_1(env, site=""),
        ValueError,
        r"r/reporter\.json: site must be a non-empty string; got ''",
    ),
    Case("reporter-files/format-1-loads", _format_1_round_trip, check=_check_same),
    Case(
        "reporter-files/newer-format",
        lambda env: Reporter.load(_edit_json(_saved(env), lambda m: m.update(format_version=9))),
        ValueError,
        r"reporter\.json: format_version 9 is not one this elk-lens reads \(1, 2\)",
    ),
    Case(
        "reporter-files/missing-key",
        lambda env: Reporter.load(_edit_json(_saved(env), lambda m: m.pop("site"))),
        ValueError,
        r"r/reporter\.json has no 'site' \(missing keys: \['site'\]\)",
    ),
    Case(
        "reporter-files/edited-bias",
        lambda env: Reporter.load(_edit_json(_saved(env), lambda m: m.update(b=3.0), reseal=False)),
        ValueError,
        r"r/reporter\.json was edited or damaged after the reporter was saved: its content no longer",
    ),
    Case("reporter-files/json-not-json", _json_not_json, ValueError, r"r/reporter\.json is not valid JSON"),
    Case(
        "reporter-files/checksum-mismatch",
        _damaged_tensors,
        ValueError,
        r"r/reporter\.safetensors fails its checksum \(recorded in reporter\.json\)",
    ),
    Case(
        "reporter-files/missing-safetensors",
        lambda env: _missing_tensors(env, False),
        ValueError,
        r"r/reporter\.safetensors is missing: the saved reporter in \S+ is incomplete",
    ),
    Case(
        "reporter-files/missing-safetensors-format-1",
        lambda env: _missing_tensors(env, True),
        FileNotFoundError,
        r"r/reporter\.safetensors is missing: the saved reporter is incomplete",
    ),
    Case(
        "reporter-files/save-into-dir-of-reporters",
        _save_into_reporters_dir,
        FileExistsError,
        r"cannot save the reporter to \S*reporters: the directory already holds other files \(layer1, layer2, "
        r"notes\.md\); pass overwrite=True",
        finding=True,
    ),
    Case("reporter-files/overwrite-replaces-only-own-files", _overwrite_into_reporters_dir, check=_check_overwrite),
    Case(
        "reporter-files/save-onto-existing-file",
        _save_onto_file,
        FileExistsError,
        r"cannot save the reporter to \S*reporter\.pt: it is an existing file",
        finding=True,
    ),
    Case(
        "reporter-files/save-nan-refused",
        lambda env: Reporter(_with_nan(torch.randn(D), 0), 0.0, torch.randn(D), "logistic", SITE).save(env.tmp / "r"),
        ValueError,
        r"cannot save the reporter: w must be finite; got nan at flat index 0",
    ),
    Case(
        "reporter-files/loaded-for-model-of-other-width",
        lambda env: check_compatible(Reporter.load(_reporter(env, d=16).save(env.tmp / "r")), env.model),
        ValueError,
        r"reads d_model=16 but the model has d_model=32",
    ),
]
