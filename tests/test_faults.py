"""Fault injection: every stage-writing path killed at its writes (``faults.py`` places the kill exactly).

After each kill, what a reader finds is the complete old state, the complete new state, or a clear
error naming the file or directory (never a half-written value: values are compared with the old and
new ones bit for bit); rerunning the operation then gives the same bytes as an uninterrupted run.

Paths: analysis run directories (``RunDir`` stages, tensor stages, manifest, metrics, tables, figures,
report, through ``run_analysis``), activation cache shards, model / reporter / growth-map saves (new
directory and overwrite), and fine-tuning trajectories with their training state. A kill lands "before"
every rename of an operation; "half" at every one where an operation has few (captures, saves), else at
the first, middle and last; "after" where that differs from "before" the next rename (inside a
multi-file save, before a training step, at the end). The whole sweep is about 250 forked runs.
"""

import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import faults
import pytest
import torch
from conftest import boot_native
from faults import Kill, kills, visible_files
from safetensors.torch import load

from elk_lens.analyses import ANALYSES
from elk_lens.analyses.result import AnalysisResult
from elk_lens.analyses.spec import AnalysisSpec, at_least, setting
from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.growth import GrowthMap
from elk_lens.models import load_model, save_model
from elk_lens.report.html import Page, Section
from elk_lens.report.pages import RENDERERS
from elk_lens.report.svg import line_chart
from elk_lens.reporters import Reporter
from elk_lens.runner import run_analysis
from elk_lens.train import FineTuneConfig, fine_tune
from elk_lens.trajectory import Trajectory

TEXTS = [f"{a} plus {b} is {a + b}." for a in range(4) for b in range(3)]  # 12 statements: 3 shards of <= 5
SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
SHARD_ROWS = 5


def _ends(n: int) -> list[int]:
    """The first, middle and last of ``n`` writes: where the costlier kinds of kill go."""
    return sorted({1, (n + 1) // 2, n})


def _bits(t: torch.Tensor) -> tuple:
    """A tensor as (dtype, shape, bytes): equal only if bitwise equal (NaN and -0.0 included)."""
    t = t.detach().cpu().contiguous()
    return str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _safetensors_content(data: bytes) -> tuple[dict, bytes]:
    """(header, tensor bytes): safetensors writes several metadata keys in a random order, so two files
    with equal content can differ in their bytes; the parsed header and the data must be equal."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _content(name: str, data: bytes) -> object:
    return _safetensors_content(data) if name.endswith(".safetensors") else data


def _assert_files(got: dict[str, bytes], want: dict[str, bytes], what: str, *, subset: bool = False) -> None:
    """``got`` holds the files of ``want`` (only some of them if ``subset``), each with the same content."""
    extra, missing = set(got) - set(want), set(want) - set(got)
    assert not extra and (subset or not missing), f"{what}: files {sorted(extra)} extra, {sorted(missing)} missing"
    for name, data in got.items():
        assert _content(name, data) == _content(name, want[name]), f"{what}: {name} differs"


def _outcome(read):
    """In the fork: ("ok", what ``read()`` gives) or ("error", exception type, message)."""
    try:
        return "ok", read()
    except Exception as e:
        return "error", type(e).__name__, str(e)


def _assert_old_new_or_clear(outcome, old, new, where: Path, what: str) -> str:
    """The read after a kill gave the old value, the new one, or an error naming ``where``; returns which."""
    if outcome[0] == "ok":
        assert outcome[1] in (old, new), f"{what}: read a value that is neither the old nor the new one"
        return "old" if outcome[1] == old else "new"
    _, kind, message = outcome
    assert kind in ("ValueError", "FileNotFoundError") and str(where) in message, f"{what}: {kind}: {message}"
    return "error"


# ---------------------------------------------------------------- analysis run directories


@dataclass(frozen=True)
class _ProbeData:
    rows: int = setting(len(TEXTS), at_least(2))


@dataclass(frozen=True, kw_only=True)
class _ProbeSpec(AnalysisSpec):
    data: _ProbeData = _ProbeData()


def _probe_analysis(tok_dir: Path) -> SimpleNamespace:
    """An analysis making every kind of write a shipped one makes (capture shards, JSON and tensor stages,
    metrics, two tables, a figure, the report) on the tiny native model in a fraction of a second; the
    shipped analyses train and probe real models for minutes, too long to run once per kill."""

    def run(spec: _ProbeSpec, run) -> AnalysisResult:
        texts = TEXTS[: spec.data.rows]
        model = boot_native(tok_dir)

        def acts():
            return capture(model, texts, SITES, batch_size=4, cache_dir=run.path / "cache", shard_rows=SHARD_ROWS)

        means = run.stage("means", lambda: {s: acts().at(i).mean(0).tolist() for i, s in enumerate(SITES)})
        scores = run.tensor_stage("norms", lambda: {"norms": acts().values.norm(dim=-1), "rows": torch.arange(4)})
        summary = run.stage("summary", lambda: {"largest": scores["norms"].max().item(), "first": means[SITES[0]][0]})
        norms = scores["norms"].tolist()
        return AnalysisResult(
            {"means": means, "summary": summary},
            view={"norms": norms},
            tables={
                "norms": [dict(zip(SITES, r, strict=True)) for r in norms],
                "means": [{"site": s, "first": v[0]} for s, v in means.items()],
            },
        )

    return SimpleNamespace(Spec=_ProbeSpec, check=lambda spec: None, run=run)


def _render_probe(view: dict) -> Page:
    norms = view["norms"]
    chart = line_chart(
        {s: [r[i] for r in norms] for i, s in enumerate(SITES)},
        [str(i) for i in range(len(norms))],
        title="Residual norms",
        y_label="norm",
        y_range=(0.0, max(map(max, norms))),
    )
    return Page("Fault probe", "", [Section("Norms", chart)])


def _run_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in visible_files(root / "probe").items() if k != "manifest.json"}  # it holds timings


def test_an_analysis_run_killed_at_each_write_resumes_to_the_same_files(tmp_path, char_tok_dir, monkeypatch):
    monkeypatch.setitem(ANALYSES, "fault_probe", _probe_analysis(char_tok_dir))
    monkeypatch.setitem(RENDERERS, "fault_probe", _render_probe)
    spec = tmp_path / "probe.toml"
    spec.write_text('name = "probe"\nanalysis = "fault_probe"\n[data]\nrows = 12\n')
    _, renamed = faults.call(partial(run_analysis, spec, runs_root=tmp_path / "whole"))
    want, n = _run_files(tmp_path / "whole"), len(renamed)
    assert {"metrics.json", "norms.csv", "means.csv", "report.html", "stages/norms.safetensors"} <= set(want)
    # every file of the run reached its name by a rename, so the kills below land on each of them
    assert {Path(p).relative_to(tmp_path / "whole" / "probe").as_posix() for p in renamed} == {*want, "manifest.json"}
    for at in [*kills(n, ("before",)), *kills(n, ("half",), at=_ends(n)), Kill(n, "after")]:
        root = tmp_path / f"{at.at}-{at.when}"
        faults.kill(partial(run_analysis, spec, runs_root=root), at)
        _assert_files(_run_files(root), want, str(at), subset=True)  # each file there is whole and final
        faults.call(partial(run_analysis, spec, runs_root=root))
        _assert_files(_run_files(root), want, f"{at}, resumed")


DRIFT_SPEC = """
name = "drift-micro"
analysis = "drift"
[train]
rows = 32
steps = 1
batch_size = 8
[drift]
methods = ["mean_diff"]
eval_rows = 200
probe_rows = 200
[capture]
batch_size = 64
"""


def _drift_results(root: Path) -> dict[str, bytes]:
    """What a drift run delivers: metrics.json, the tables, the trajectory. The fine-tuning wall time in
    metrics.json (and in the report) is taken out: it differs between any two runs, killed or not."""
    files = visible_files(root / "drift-micro")
    metrics = json.loads(files["metrics.json"])
    del metrics["fine_tune"]["seconds"]
    out = {k: v for k, v in files.items() if k.endswith(".csv") or k.startswith("trajectory/step_")}
    return out | {k: files[k] for k in ("trajectory/trajectory.json",)} | {"metrics.json": json.dumps(metrics).encode()}


@pytest.mark.slow
def test_the_shipped_drift_analysis_killed_mid_training_resumes_to_the_same_results(tmp_path):
    """The probe analysis above is killed at every write; this runs a shipped one on tiny settings (drift:
    a fine-tuning trajectory written inside a stage, then the drift and task-loss stages, ~5 s a run),
    killed once, halfway through writing the second checkpoint."""
    spec = tmp_path / "drift.toml"
    spec.write_text(DRIFT_SPEC)
    _, renamed = faults.call(partial(run_analysis, spec, runs_root=tmp_path / "whole"))
    want = _drift_results(tmp_path / "whole")
    at = Kill([Path(p).name for p in renamed].index("step_1.safetensors") + 1, "half")
    faults.kill(partial(run_analysis, spec, runs_root=tmp_path / "killed"), at)
    faults.call(partial(run_analysis, spec, runs_root=tmp_path / "killed"))
    _assert_files(_drift_results(tmp_path / "killed"), want, f"drift, {at}, resumed")


# ---------------------------------------------------------------- activation cache shards


def _capture(model, cache: Path | None) -> torch.Tensor:
    kw = {} if cache is None else {"cache_dir": cache, "shard_rows": SHARD_ROWS}
    return capture(model, TEXTS, SITES, batch_size=4, **kw).values


def _shards(renamed: list[str]) -> list[str]:
    return [Path(p).name for p in renamed if Path(p).name.startswith("shard_")]


def test_a_capture_killed_at_each_shard_write_resumes_to_the_uncached_values(tmp_path, native_model):
    uncached, _ = faults.call(partial(_capture, native_model, None))
    got, renamed = faults.call(partial(_capture, native_model, tmp_path / "whole"))
    assert _bits(got) == _bits(uncached) and _shards(renamed) == [f"shard_{i:05d}.safetensors" for i in range(3)]
    for at in kills(len(renamed)):
        cache = tmp_path / f"{at.at}-{at.when}"
        faults.kill(partial(_capture, native_model, cache), at)
        assert bool(faults.leftovers(cache)) == (at.when != "after"), f"{at}: the kill left its temporary file"
        shards = {Path(k).name: v for k, v in visible_files(cache).items() if k.endswith(".safetensors")}
        for name, data in shards.items():  # every shard a reader finds holds exactly its rows' values
            header, _ = _safetensors_content(data)
            rows = json.loads(header["__metadata__"]["elk_lens"])  # elk_lens.store: one JSON metadata key
            start, stop = int(rows["start"]), int(rows["stop"])
            assert _bits(load(data)["values"]) == _bits(uncached[start:stop]), f"{at}: {name}"
        resumed, again = faults.call(partial(_capture, native_model, cache))
        assert _bits(resumed) == _bits(uncached), f"{at}: the resumed capture differs from the uncached one"
        assert _shards(again) == [x for x in _shards(renamed) if x not in shards], f"{at}: finished shards recomputed"


# ---------------------------------------------------------------- model, reporter and growth-map saves


def _model_state(path: Path) -> dict:
    return {k: _bits(v) for k, v in load_model(str(path)).state_dict().items()}


def _reporter(seed: int) -> Reporter:
    gen = torch.Generator().manual_seed(seed)
    w, v = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    return Reporter(w, 0.25 * seed, v, "mean_diff", "blocks.1.hook_resid_pre", {"seed": seed}, "statement")


def _reporter_state(path: Path) -> tuple:
    r = Reporter.load(path)
    return _bits(r.w), _bits(r.v), r.b, r.method, r.site, r.provenance


def _growth_map(seed: int) -> GrowthMap:
    P, offset = torch.eye(6, 4, dtype=torch.float64) * (1 + seed), torch.full((6,), float(seed), dtype=torch.float64)
    return GrowthMap(P, (0, 2), (0, 1), "source", f"target-{seed}", ops=(f"op-{seed}",), offset=offset)


def _map_state(path: Path) -> tuple:
    m = GrowthMap.load(path)
    return _bits(m.P), None if m.offset is None else _bits(m.offset), m.layers, m.heads, m.target, m.ops


SAVES = {  # what is saved: (old object, new object, save(obj, path, overwrite), read(path))
    "model": (
        lambda tok: boot_native(tok),
        lambda tok: boot_native(tok, seed=1),
        lambda obj, path, overwrite: save_model(obj, path, overwrite=overwrite),
        _model_state,
    ),
    "reporter": (
        lambda tok: _reporter(0),
        lambda tok: _reporter(1),
        lambda obj, path, overwrite: obj.save(path, overwrite=overwrite),
        _reporter_state,
    ),
    "growth map": (
        lambda tok: _growth_map(0),
        lambda tok: _growth_map(1),
        lambda obj, path, overwrite: obj.save(path, overwrite=overwrite),
        _map_state,
    ),
}


NOTES = "the user's own file"


def _notes(path: Path) -> str | None:
    notes = path / "notes.txt"
    return notes.read_text() if notes.is_file() else None


@pytest.mark.parametrize("what", list(SAVES))
def test_a_save_killed_at_each_file_leaves_the_old_the_new_or_a_clear_error(tmp_path, char_tok_dir, what):
    make_old, make_new, save, read = SAVES[what]
    old_obj, new_obj = make_old(char_tok_dir), make_new(char_tok_dir)
    template = tmp_path / "template" / "saved"
    faults.call(partial(save, old_obj, template, False))
    (template / "notes.txt").write_text(NOTES)  # a save never deletes what it did not write
    old, _ = faults.call(partial(read, template))
    seen = set()
    for overwrite in (True, False):  # replacing a saved one file by file, and a new directory in one rename
        whole = tmp_path / f"whole-{overwrite}" / "saved"
        if overwrite:
            shutil.copytree(template, whole)
        _, renamed = faults.call(partial(save, new_obj, whole, overwrite))
        new, _ = faults.call(partial(read, whole))
        n = len(renamed)
        # overwriting renames each file, the marker last; a new directory appears in one rename
        assert new != old and (
            {Path(p).name for p in renamed} == set(visible_files(template)) - {"notes.txt"}
            if overwrite
            else renamed == [str(whole)]
        )
        for at in kills(n):
            path = tmp_path / f"{overwrite}-{at.at}-{at.when}" / "saved"
            if overwrite:
                shutil.copytree(template, path)
            faults.kill(partial(save, new_obj, path, overwrite), at)
            assert _notes(path) == (NOTES if overwrite else None), f"{what} save, {at}: the user's file was touched"
            outcome, _ = faults.call(partial(_outcome, partial(read, path)))
            seen.add(_assert_old_new_or_clear(outcome, old, new, path, f"{what} save, {at}"))
            resumed, _ = faults.call(lambda path=path: (save(new_obj, path, True), read(path))[1])
            assert resumed == new, f"{what} save, {at}: saving again did not give the new {what}"
            assert _notes(path) == (NOTES if overwrite else None), f"{what} save, {at}: the user's file was touched"
    assert seen == {"old", "new", "error"}  # each outcome happens: the sweep reached the mixture states


# ---------------------------------------------------------------- fine-tuning trajectories


# no checkpoint at step 1: a run killed before step 2's is resumed from step 0 and replays two steps
CONFIG = FineTuneConfig(
    steps=3, lr=3e-3, warmup=1, batch_size=8, seed=0, answers=("y", "n"), lm_loss_weight=0.5, checkpoints=(0, 2, 3)
)


def _fine_tune(model, base: Path, out: Path) -> dict:
    """Train ``model`` (loaded from ``base`` by the test process: each fork trains its own copy)."""
    truth = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
    fine_tune(model, StatementSet(TEXTS, truth), truth, out, base_spec=str(base), config=CONFIG, progress=False)
    return {k: _bits(v) for k, v in model.state_dict().items()}


def _trajectory(out: Path) -> tuple[list, dict]:
    """The checkpoints a reader finds, and the weights of the last one as loaded."""
    traj = Trajectory.load(out)
    last = traj.model_at(len(traj) - 1)
    return [(c.step, c.sha256) for c in traj.checkpoints], {k: _bits(v) for k, v in last.state_dict().items()}


def _public(files: dict[str, bytes]) -> dict[str, bytes]:
    """The trajectory (checkpoints and trajectory.json), without the hidden training state kept for a resume."""
    return {k: v for k, v in files.items() if not k.startswith(".")}


def test_fine_tuning_killed_at_each_checkpoint_write_resumes_bitwise(tmp_path, char_tok_dir):
    base = tmp_path / "base"
    save_model(boot_native(char_tok_dir), base)
    model = load_model(str(base))
    final, renamed = faults.call(partial(_fine_tune, model, base, tmp_path / "whole"))
    want, n = _public(visible_files(tmp_path / "whole")), len(renamed)
    names = [Path(p).name for p in renamed]
    # at each checkpoint: its weights, then trajectory.json, then the training state
    assert [x for x in names if not x.startswith(".")] == [
        x for step in CONFIG.checkpoints for x in (f"step_{step}.safetensors", "trajectory.json")
    ]
    (checkpoints, _), _ = faults.call(partial(_trajectory, tmp_path / "whole"))
    state_0 = names.index("step_2.safetensors")  # after the last write of checkpoint 0, training steps run
    for at in [*kills(n, ("before",)), *kills(n, ("half",), at=_ends(n)), Kill(state_0, "after"), Kill(n, "after")]:
        out = tmp_path / f"{at.at}-{at.when}"
        faults.kill(partial(_fine_tune, model, base, out), at)
        outcome, _ = faults.call(partial(_outcome, partial(_trajectory, out)))
        if outcome[0] == "ok":  # the checkpoints so far, each the final run's bytes; the last loads as saved
            listed, weights = outcome[1]
            assert listed == checkpoints[: len(listed)], f"{at}: the trajectory read back is not a prefix"
            step = listed[-1][0]
            assert weights == {k: _bits(v) for k, v in load(want[f"step_{step}.safetensors"]).items()}, str(at)
        else:
            _assert_old_new_or_clear(outcome, None, None, out, f"trajectory, {at}")
        resumed, _ = faults.call(partial(_fine_tune, model, base, out))
        assert resumed == final, f"{at}: the resumed weights differ"
        _assert_files(_public(visible_files(out)), want, f"trajectory, {at}, resumed")
