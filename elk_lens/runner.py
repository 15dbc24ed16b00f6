"""``elk-lens run spec.toml``: run a declared analysis into a run directory, then draw ``report.html``.

The engine sits outside ``elk_lens.report``: it runs an analysis (``elk_lens.analyses``) and hands its
view to that analysis's renderer (``elk_lens.report.pages``), so the report package only draws."""

import re
import sys
import time
from pathlib import Path

from elk_lens import distributed
from elk_lens._progress import log as progress
from elk_lens.analyses import ANALYSES
from elk_lens.analyses.spec import AnalysisSpec, parse_spec
from elk_lens.models import loading_device
from elk_lens.report.html import render_page
from elk_lens.report.pages import RENDERERS
from elk_lens.report.rundir import RunDir, environment

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["check_run_name", "load_spec", "read_spec", "run_analysis"]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_NAME_RULE = "a plain name: letters, digits, '.', '_' and '-', not starting with '.', at most 128 characters"


def check_run_name(what: str, name: object) -> str:
    """A run directory's name: a plain name, so the run stays inside the runs directory (no ``/``, no
    ``..``, no absolute path, nothing a shell or a file system reads specially)."""
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string; got {name!r}")
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"{what} is {name!r}, not {_NAME_RULE}")
    return name


def load_spec(path: Path) -> tuple[AnalysisSpec, str]:
    """Read and check an analysis spec file; returns (spec, raw text)."""
    if path.is_dir():
        raise IsADirectoryError(
            f"analysis spec {path} is a directory; give a .toml file (e.g. analyses/quirky_elk.toml)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"analysis spec {path} does not exist (see analyses/ for examples)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"analysis spec {path} is not a UTF-8 text file (byte {e.start}); a spec is TOML") from None
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    return read_spec(cfg, where=str(path)), text


def read_spec(cfg: dict, *, where: str = "spec") -> AnalysisSpec:
    """The analysis's spec from a parsed TOML table, checked (keys, types, ranges, and against the model's
    files) before any work; errors name ``where``, the key, the value and the valid choices."""
    for key in ("name", "analysis"):
        if key not in cfg:
            raise ValueError(f"{where} lacks the top-level key {key!r}")
    check_run_name("config key 'name'", cfg["name"])
    if not isinstance(cfg["analysis"], str) or cfg["analysis"] not in ANALYSES:
        raise ValueError(f"{where}: unknown analysis {cfg['analysis']!r}; valid: {sorted(ANALYSES)}")
    analysis = ANALYSES[cfg["analysis"]]
    spec = parse_spec(analysis.Spec, cfg, where=where)
    analysis.check(spec)
    return spec


def run_analysis(
    spec: Path, *, runs_root: Path = Path("runs"), run_name: str | None = None, device: str = "cpu"
) -> Path:
    """Run (or resume) the analysis in ``spec``; returns the run directory. Every model the analysis loads
    goes onto ``device`` (``"cpu"``, ``"cuda"``, ...); a resumed run keeps the stages done on another device,
    and the manifest records the device of each invocation's new stages."""
    with loading_device(device) as device:
        return _run_analysis(spec, runs_root, run_name, device)


def _run_analysis(spec: Path, runs_root: Path, run_name: str | None, device: str) -> Path:
    if run_name is not None:
        check_run_name("run_name (--name)", run_name)
    parsed, text = load_spec(spec)
    kind = _analysis_name(parsed)
    if runs_root.exists() and not runs_root.is_dir():
        raise NotADirectoryError(
            f"cannot write the run directory under {runs_root} (it is a file, not a "
            "directory); choose a writable place with --runs DIR"
        )
    path = runs_root / (run_name or parsed.name)
    if not path.resolve().is_relative_to(runs_root.resolve()):  # e.g. a symbolic link out of the runs directory
        raise ValueError(f"the run directory {path} resolves to {path.resolve()}, outside {runs_root}")
    try:
        run = RunDir(path, text)
    except OSError as e:  # not writable, or a file where a directory should be
        raise OSError(
            f"cannot write the run directory under {runs_root} ({e.strerror}: {e.filename}); "
            "choose a writable place with --runs DIR"
        ) from None
    started = time.time()
    progress.info("run %s (%s) in %s on %s", parsed.name, kind, path, device)
    result = ANALYSES[kind].run(parsed, run)
    if distributed.ranks().rank != 0:  # under torchrun the run's files are written once, by rank 0
        return run.path
    progress.info("analysis done in %.1f s; writing the report", time.time() - started)
    manifest = {
        "analysis": kind,
        "name": parsed.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 2),
        "stage_seconds": run.timings,
        "resumed_stages": run.resumed,
        **result.provenance,
        "environment": {**environment(), "device": device},
    }
    run.write_json("manifest.json", manifest)
    run.write_json("metrics.json", result.metrics)
    for name, rows in result.tables.items():
        run.write_csv(f"{name}.csv", rows)
    page = RENDERERS[kind](result.view)
    _write_figures(run, page.sections)
    run.write_text("report.html", render_page(page.title, page.intro, page.sections))
    progress.info("finished in %.1f s", time.time() - started)
    return run.path


def _analysis_name(spec: AnalysisSpec) -> str:
    return next(name for name, analysis in ANALYSES.items() if type(spec) is analysis.Spec)


def _write_figures(run: RunDir, sections) -> None:
    """Every inline SVG figure of the report also as a file, ``figures/<section>-<k>.svg``, for slides and papers."""
    for section in sections:
        for k, svg in enumerate(re.findall(r"<svg\b.*?</svg>", section.html, re.S), start=1):
            run.write_text(f"figures/{section.anchor}-{k}.svg", svg)
