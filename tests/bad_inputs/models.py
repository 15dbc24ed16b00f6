"""Bad model specs, arguments and model directories: `load_model` and `save_model`."""

import os
from pathlib import Path

import torch
from conftest import boot_native

from bad_inputs import Case, Env, edit_marker
from elk_lens._atomic import CONTENT_KEY, sha256_file
from elk_lens.models import NATIVE_CONFIG_FILE, fingerprint, load_model, save_model

WEIGHTS = "model.safetensors"


def _saved(env: Env) -> Path:
    return save_model(env.model, env.tmp / "m")


def _edit_marker(path: Path, edit) -> Path:
    """A consistent but wrong marker (resealed): the checks after its own digest are what is tested."""
    edit_marker(path / NATIVE_CONFIG_FILE, edit, reseal=True)
    return path


def _as_format_1(path: Path) -> Path:
    """The zoo's format: a marker without checksums (only the fingerprint guards the weights)."""

    def drop(meta: dict) -> None:
        meta.pop("files", None)
        meta.pop(CONTENT_KEY, None)
        meta["format_version"] = 1

    return _edit_marker(path, drop)


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-100])


def _truncated_weights(env: Env):
    path = _saved(env)
    _truncate(path / WEIGHTS)
    return load_model(str(path))


def _truncated_weights_format_1(env: Env):
    path = _as_format_1(_saved(env))
    _truncate(path / WEIGHTS)
    return load_model(str(path))


def _weights_swapped_format_1(env: Env):
    """Weights replaced after saving (another seed's), in a directory without checksums."""
    path = _as_format_1(_saved(env))
    other = save_model(boot_native(env.tok_dir, seed=1), env.tmp / "other")
    (path / WEIGHTS).write_bytes((other / WEIGHTS).read_bytes())
    return load_model(str(path))


def _one_weight_changed(env: Env):
    """One float of the weights changed and the checksum updated to match: only the fingerprint sees it."""
    path = _saved(env)
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-1] ^= 0x01
    (path / WEIGHTS).write_bytes(bytes(data))
    digest = sha256_file(path / WEIGHTS)
    return load_model(str(_edit_marker(path, lambda m: m.setdefault("files", {}).update({WEIGHTS: digest}))))


def _spec_is_a_file(env: Env):
    (env.tmp / "f.txt").write_text("x")
    return load_model(str(env.tmp / "f.txt"))


def _marker(env: Env, text: str):
    path = _saved(env)
    (path / NATIVE_CONFIG_FILE).write_text(text)
    return load_model(str(path))


def _save_onto_file(env: Env):
    file = env.tmp / "notes.txt"
    file.write_text("the user's notes")
    try:
        save_model(env.model, file)
    finally:  # refused without touching it, and nothing moved aside
        assert file.read_text() == "the user's notes" and os.listdir(env.tmp) == ["notes.txt"], os.listdir(env.tmp)


def _foreign_dir(env: Env) -> Path:
    path = env.tmp / "models"
    (path / "run1").mkdir(parents=True)
    (path / "run1" / "result.txt").write_text("keep me")
    (path / "README").write_text("mine")
    return path


def _save_into_dir_of_others(env: Env):
    path = _foreign_dir(env)
    try:
        save_model(env.model, path)
    finally:
        assert sorted(os.listdir(path)) == ["README", "run1"] and (path / "run1" / "result.txt").is_file()


def _overwrite_beside_others(env: Env):
    path = _foreign_dir(env)
    save_model(boot_native(env.tok_dir, seed=1), path, overwrite=True)
    save_model(env.model, path, overwrite=True, card={"note": "second"})
    return path, load_model(str(path))


def _check_overwrite(result, env: Env) -> None:
    path, model = result
    assert (path / "README").read_text() == "mine" and (path / "run1" / "result.txt").read_text() == "keep me"
    assert fingerprint(model) == fingerprint(env.model)


def _check_float64(model, env: Env) -> None:
    assert next(model.parameters()).dtype == torch.float64


CASES = [
    Case(
        "models/missing-local-dir",
        lambda env: load_model(str(env.tmp / "nothing")),
        FileNotFoundError,
        r"model directory '[^']*nothing' does not exist; give an existing directory",
    ),
    Case(
        "models/missing-relative-dir-with-subdirs",
        lambda env: load_model("elk-lens-no-such/models/foo"),
        FileNotFoundError,
        r"model directory 'elk-lens-no-such/models/foo' does not exist",
        finding=True,
    ),
    Case(
        "models/missing-dir-with-trailing-slash",
        lambda env: load_model("elk-lens-no-such-dir/"),
        FileNotFoundError,
        r"model directory 'elk-lens-no-such-dir' does not exist",
        finding=True,
    ),
    Case("models/spec-is-a-file", _spec_is_a_file, FileNotFoundError, r"model directory '[^']*f\.txt' is a file"),
    Case(
        "models/spec-not-a-string",
        lambda env: load_model(42),
        TypeError,
        r"spec must be a str \('zoo:NAME', a directory or a hub name\); got int 42",
    ),
    Case(
        "models/dtype-as-string-works",
        lambda env: load_model(str(_saved(env)), dtype="float64"),
        check=_check_float64,
        finding=True,
    ),
    Case(
        "models/dtype-unknown-name",
        lambda env: load_model("zoo:quirky-arith", dtype="float33"),
        ValueError,
        r"dtype must be a floating torch dtype or its name; got 'float33'; valid: \['bfloat16', 'float16', "
        r"'float32', 'float64'\]",
        finding=True,
    ),
    Case(
        "models/dtype-not-floating",
        lambda env: load_model("zoo:quirky-arith", dtype=torch.int64),
        ValueError,
        r"dtype must be a floating torch dtype .*got torch\.int64; valid: \['bfloat16'",
    ),
    Case(
        "models/dtype-garbage",
        lambda env: load_model("zoo:quirky-arith", dtype=3),
        ValueError,
        r"dtype must be a floating torch dtype or its name; got 3; valid: ",
    ),
    Case(
        "models/device-unknown",
        lambda env: load_model("zoo:quirky-arith", device="gpu"),
        ValueError,
        r"device must be a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps'; got 'gpu'",
    ),
    Case(
        "models/device-not-present",
        lambda env: load_model("zoo:quirky-arith", device="cuda:7"),
        ValueError,
        r"device 'cuda:7' is not available: this machine has \d+ cuda device\(s\)",
    ),
    Case(
        "models/zoo-typo",
        lambda env: load_model("zoo:quirky-arth"),
        ValueError,
        r"unknown zoo model 'quirky-arth'; embedded models: \[.*'quirky-arith'.*\]; did you mean 'quirky-arith'\?",
    ),
    Case(
        "models/zoo-name-is-a-path",
        lambda env: load_model("zoo:../zoo/quirky-arith"),
        ValueError,
        r"unknown zoo model '\.\./zoo/quirky-arith'; embedded models: ",
    ),
    Case(
        "models/dir-without-model-files",
        lambda env: load_model(str(env.tmp)),
        ValueError,
        r"holds neither elk_lens\.json \(elk-lens format\) nor config\.json \(HF format\)",
    ),
    Case(
        "models/truncated-weights",
        _truncated_weights,
        ValueError,
        r"model\.safetensors fails its checksum \(recorded in elk_lens\.json\)",
        finding=True,
    ),
    Case(
        "models/truncated-weights-without-checksums",
        _truncated_weights_format_1,
        ValueError,
        r"m/model\.safetensors is not a readable safetensors file \(.*\): it is truncated or damaged",
        finding=True,
    ),
    Case(
        "models/weights-not-matching-fingerprint",
        _weights_swapped_format_1,
        ValueError,
        r"the weights in \S*m/model\.safetensors do not match the fingerprint \w+ recorded in \S*elk_lens\.json",
        finding=True,
    ),
    Case(
        "models/one-weight-changed-checksum-updated",
        _one_weight_changed,
        ValueError,
        r"the weights in \S*model\.safetensors do not match the fingerprint",
        finding=True,
    ),
    Case(
        "models/marker-not-json", lambda env: _marker(env, "{config: "), ValueError, r"elk_lens\.json is not valid JSON"
    ),
    Case(
        "models/marker-without-fingerprint",
        lambda env: load_model(str(_edit_marker(_saved(env), lambda m: m.pop("fingerprint")))),
        ValueError,
        r"elk_lens\.json: 'fingerprint' must be a str; got no such key",
    ),
    Case(
        "models/marker-config-not-bootable",
        lambda env: load_model(str(_edit_marker(_saved(env), lambda m: m["config"].update(act_fn="nope")))),
        ValueError,
        r"elk_lens\.json: the recorded config does not boot a model \(ValueError: Unsupported "
        r"act_fn='nope'",
    ),
    Case(
        "models/save-onto-existing-file",
        _save_onto_file,
        FileExistsError,
        r"cannot save the model to \S*notes\.txt: it is an existing file",
        finding=True,
    ),
    Case(
        "models/save-into-dir-of-others",
        _save_into_dir_of_others,
        FileExistsError,
        r"cannot save the model to \S*models: the directory already holds other files \(README, run1\); "
        r"pass overwrite=True",
        finding=True,
    ),
    Case("models/overwrite-keeps-foreign-files", _overwrite_beside_others, check=_check_overwrite),
]
