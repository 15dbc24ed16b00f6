"""Saving reporters, models and growth maps (issue 13): atomic, never destructive, verified on load.

Each artifact's ``save(path, overwrite=False)`` goes through ``elk_lens._atomic.save_dir``: a new or empty
directory gets the artifact whole; a directory holding anything else is refused untouched unless
``overwrite``, which replaces only the files of the artifact saved there before; an existing file is
refused untouched. Loading gives back what was saved, bit for bit.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import boot_native
from safetensors.torch import save_file

import elk_lens.reporters.base as reporter_base
from elk_lens.growth import GrowthMap
from elk_lens.models import NATIVE_CONFIG_FILE, fingerprint, load_model, save_model
from elk_lens.reporters import Reporter


@dataclass(frozen=True)
class Artifact:
    """How to save and load one kind of artifact, two distinct instances of it, and when two are equal."""

    marker: str
    make: Callable[[int], object]  # seed -> instance
    save: Callable[..., Path]  # (instance, path, overwrite=...) -> path
    load: Callable[[Path], object]
    same: Callable[[object, object], bool]


def _reporter(seed: int) -> Reporter:
    gen = torch.Generator().manual_seed(seed)
    return Reporter(
        torch.randn(16, generator=gen),
        0.5 * seed,
        torch.randn(16, generator=gen, dtype=torch.float64),
        "lda",
        f"blocks.{seed}.hook_resid_pre",
        {"model": "m", "seed": seed},
    )


def _same_reporter(a: Reporter, b: Reporter) -> bool:
    fields = ("b", "method", "site", "provenance", "reads")
    tensors_equal = all(torch.equal(x, y) and x.dtype == y.dtype for x, y in ((a.w, b.w), (a.v, b.v)))
    return tensors_equal and all(getattr(a, f) == getattr(b, f) for f in fields)


def _growth_map(seed: int) -> GrowthMap:
    gen = torch.Generator().manual_seed(seed)
    P = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    return GrowthMap(
        P,
        (0, 2),
        (1, 0),
        f"src{seed}",
        f"dst{seed}",
        seed == 0,
        ("widen",),
        torch.ones(6).double(),
        {"blocks.0.hook_resid_pre": "blocks.0.hook_resid_pre"},
        {"residual": 0.01 * seed},
    )


def _same_map(a: GrowthMap, b: GrowthMap) -> bool:
    fields = ("layers", "heads", "source", "target", "exact", "ops", "sites", "info")
    return (
        torch.equal(a.P, b.P)
        and torch.equal(a.offset, b.offset)
        and all(getattr(a, f) == getattr(b, f) for f in fields)
    )


@pytest.fixture(scope="module")
def artifacts(char_tok_dir) -> dict[str, Artifact]:
    models = {seed: boot_native(char_tok_dir, seed=seed) for seed in (0, 1)}
    return {
        "reporter": Artifact(
            "reporter.json", _reporter, lambda r, p, **kw: r.save(p, **kw), Reporter.load, _same_reporter
        ),
        "model": Artifact(
            NATIVE_CONFIG_FILE,
            models.__getitem__,
            save_model,
            lambda p: load_model(str(p)),
            lambda a, b: fingerprint(a) == fingerprint(b),
        ),
        "growth map": Artifact(
            "growth_map.json", _growth_map, lambda g, p, **kw: g.save(p, **kw), GrowthMap.load, _same_map
        ),
    }


KINDS = ["reporter", "model", "growth map"]


def _foreign(path: Path) -> dict[str, bytes]:
    """Files the user keeps in ``path``: a note and another saved thing in a subdirectory."""
    (path / "other").mkdir(parents=True)
    (path / "other" / "reporter.json").write_text("{}")
    (path / "notes.txt").write_text("mine")
    return _tree(path)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_into_a_new_and_into_an_empty_directory(artifacts, tmp_path, kind):
    a = artifacts[kind]
    original = a.make(0)
    assert a.same(a.load(a.save(original, tmp_path / "new" / "dir")), original)
    (tmp_path / "empty").mkdir()
    assert a.same(a.load(a.save(original, tmp_path / "empty")), original)
    assert not a.same(a.make(1), original)  # the comparison sees a difference


@pytest.mark.parametrize("kind", KINDS)
def test_a_directory_holding_other_files_is_refused_untouched(artifacts, tmp_path, kind):
    a = artifacts[kind]
    before = _foreign(tmp_path / "d")
    with pytest.raises(FileExistsError, match=r"already holds other files \(notes\.txt, other\); pass overwrite=True"):
        a.save(a.make(0), tmp_path / "d")
    assert _tree(tmp_path / "d") == before
    assert os.listdir(tmp_path) == ["d"], "no temporary directory is left behind"


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_artifact_is_refused_without_overwrite(artifacts, tmp_path, kind):
    a = artifacts[kind]
    a.save(a.make(0), tmp_path / "d")
    before = _tree(tmp_path / "d")
    with pytest.raises(FileExistsError, match=r"already holds a saved .*; pass overwrite=True to replace it"):
        a.save(a.make(1), tmp_path / "d")
    assert _tree(tmp_path / "d") == before and a.same(a.load(tmp_path / "d"), a.make(0))


@pytest.mark.parametrize("kind", KINDS)
def test_overwrite_replaces_only_its_own_files(artifacts, tmp_path, kind):
    a = artifacts[kind]
    foreign = _foreign(tmp_path / "d")
    a.save(a.make(1), tmp_path / "d", overwrite=True)  # beside the user's files
    a.save(a.make(0), tmp_path / "d", overwrite=True)  # over the first save
    assert a.same(a.load(tmp_path / "d"), a.make(0))
    tree = _tree(tmp_path / "d")
    assert {k: tree[k] for k in foreign} == foreign, "the user's files are untouched"
    own = json.loads((tmp_path / "d" / a.marker).read_text())["files"]
    assert set(tree) == set(foreign) | set(own) | {a.marker}
    assert os.listdir(tmp_path) == ["d"]


def test_overwrite_removes_stale_files_of_the_earlier_save(native_model, tmp_path):
    """A model saved with a card, then without: the card listed by the first save goes, foreign files stay."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    save_model(native_model, tmp_path / "m", card={"note": 1}, overwrite=True)
    assert (tmp_path / "m" / "card.json").is_file()
    save_model(native_model, tmp_path / "m", overwrite=True)
    assert not (tmp_path / "m" / "card.json").exists() and (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert fingerprint(load_model(str(tmp_path / "m"))) == fingerprint(native_model)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_existing_file_is_refused_untouched(artifacts, tmp_path, kind, overwrite):
    a = artifacts[kind]
    (tmp_path / "f").write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match=r"it is an existing file, not a directory"):
        a.save(a.make(0), tmp_path / "f", overwrite=overwrite)
    assert (tmp_path / "f").read_bytes() == b"the user's file" and os.listdir(tmp_path) == ["f"]


def test_a_save_that_fails_midway_leaves_the_earlier_one(tmp_path, monkeypatch):
    _reporter(0).save(tmp_path / "r")
    before = _tree(tmp_path / "r")

    def half_written(tensors, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(reporter_base, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        _reporter(1).save(tmp_path / "r", overwrite=True)
    assert _tree(tmp_path / "r") == before and os.listdir(tmp_path) == ["r"]
    assert _same_reporter(Reporter.load(tmp_path / "r"), _reporter(0))


def test_reporter_json_records_dtype_and_shape(tmp_path):
    meta = json.loads((_reporter(0).save(tmp_path / "r") / "reporter.json").read_text())
    assert meta["d_model"] == 16
    assert meta["tensors"] == {"w": {"dtype": "float32", "shape": [16]}, "v": {"dtype": "float64", "shape": [16]}}


def test_model_loaded_in_another_dtype_passes_its_fingerprint(native_model, tmp_path):
    """The fingerprint is checked on the weights as read from the file, before the dtype conversion."""
    path = save_model(native_model, tmp_path / "m")
    model = load_model(str(path), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_model_dir_from_before_checksums_still_loads(native_model, tmp_path):
    """The zoo's format: a marker without "files" (format 1), guarded by its fingerprint alone."""
    path = save_model(native_model, tmp_path / "m")
    meta = json.loads((path / NATIVE_CONFIG_FILE).read_text())
    del meta["files"], meta["content_sha256"]
    (path / NATIVE_CONFIG_FILE).write_text(json.dumps({**meta, "format_version": 1}))
    assert fingerprint(load_model(str(path))) == fingerprint(native_model)


def _growth_map_format_1(path: Path, g: GrowthMap, **edits) -> Path:
    """A growth map as elk-lens wrote it before checksums (no format_version, no record of the tensors)."""
    path.mkdir()
    save_file(edits.pop("tensors", {"P": g.P, "offset": g.offset}), str(path / "growth_map.safetensors"))
    meta = {
        "layers": list(g.layers),
        "heads": list(g.heads),
        "source": g.source,
        "target": g.target,
        "exact": g.exact,
        "ops": list(g.ops),
        "sites": g.sites,
        "info": g.info,
    }
    (path / "growth_map.json").write_text(json.dumps({**meta, **edits}))
    return path


def test_growth_map_from_before_checksums_still_loads(tmp_path):
    assert _same_map(GrowthMap.load(_growth_map_format_1(tmp_path / "g", _growth_map(2))), _growth_map(2))


@pytest.mark.parametrize(
    "edits, match",
    [
        ({"tensors": {"P": torch.full((6, 4), float("nan")).double()}}, r"growth_map\.safetensors: P must be finite"),
        (
            {"tensors": {"P": torch.ones(6, 4).double(), "offset": torch.ones(5).double()}},
            r"growth_map\.safetensors: offset must have shape \(d_model',\) matching P \(6, 4\); got \(5,\)",
        ),
        ({"tensors": {"P": torch.ones(3, 4).double()}}, r"g holds an invalid growth map \(.*\): P must have shape"),
        ({"tensors": {"Q": torch.ones(6, 4).double()}}, r"holds tensors \['Q'\]; a growth map has 'P'"),
        ({"layers": [0, "1"]}, r"growth_map\.json: 'layers' must hold non-negative ints; got \[0, '1'\]"),
        ({"layers": [2, 0]}, r"g holds an invalid growth map .*: layers must be strictly increasing"),
        ({"exact": "yes"}, r"growth_map\.json: 'exact' must be a bool; got 'yes'"),
    ],
)
def test_growth_map_from_before_checksums_is_checked(tmp_path, edits, match):
    with pytest.raises(ValueError, match=match):
        GrowthMap.load(_growth_map_format_1(tmp_path / "g", _growth_map(2), **edits))


def test_saved_growth_map_refuses_damage(tmp_path):
    path = _growth_map(1).save(tmp_path / "g")
    meta = json.loads((path / "growth_map.json").read_text())
    (path / "growth_map.json").write_text(json.dumps({**meta, "layers": [0, 1]}))
    with pytest.raises(ValueError, match=r"growth_map\.json was edited or damaged after the [a-z ]* was saved"):
        GrowthMap.load(path)
    (path / "growth_map.json").write_text(json.dumps(meta))
    data = (path / "growth_map.safetensors").read_bytes()
    (path / "growth_map.safetensors").write_bytes(data[:-8])
    with pytest.raises(ValueError, match=r"growth_map\.safetensors fails its checksum"):
        GrowthMap.load(path)


@pytest.mark.parametrize("kind", KINDS)
def test_overwrite_never_replaces_a_foreign_file_of_the_same_name(artifacts, tmp_path, kind):
    a = artifacts[kind]
    first = a.save(a.make(0), tmp_path / "first")
    name = next(f for f in os.listdir(first) if f != a.marker)  # a data file's name, written by the user
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_bytes(b"the user's own file")
    with pytest.raises(FileExistsError, match="files elk-lens did not write under the names it writes"):
        a.save(a.make(0), tmp_path / "d", overwrite=True)
    assert (tmp_path / "d" / name).read_bytes() == b"the user's own file"
    assert os.listdir(tmp_path / "d") == [name]
