"""``elk-lens run spec.toml``: run a declared analysis into a run directory, then draw ``report.html``.

The engine sits outside ``elk_lens.report``: it runs an analysis (``elk_lens.analyses``) and hands its
view to that analysis's renderer (``elk_lens.report.pages``), so the report package only draws."""

import difflib
import re
import sys
import time
from pathlib import Path

from elk_lens._progress import log as progress
from elk_lens.analyses import ANALYSES
from elk_lens.report.html import render_page
from elk_lens.report.pages import RENDERERS
from elk_lens.report.rundir import RunDir, environment

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["check_run_name", "load_spec", "run_analysis"]

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


def load_spec(path: Path) -> tuple[dict, str]:
    """Parse and check an analysis spec; returns (config, raw text)."""
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
    for key in ("name", "analysis"):
        if key not in cfg:
            raise ValueError(f"{path} lacks the top-level key {key!r}")
    check_run_name("config key 'name'", cfg["name"])
    if not isinstance(cfg["analysis"], str) or cfg["analysis"] not in ANALYSES:
        raise ValueError(f"{path}: unknown analysis {cfg['analysis']!r}; valid: {sorted(ANALYSES)}")
    _check_keys(path, cfg, ANALYSES[cfg["analysis"]].KEYS)
    return cfg, text


def _dotted(node: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        if "." in key:  # a quoted key such as "model.spec" = ...: the analysis would never read it
            raise ValueError(
                f"key {name!r} is written as one quoted key; write it as a table and a key, e.g. "
                f"[{name.rsplit('.', 1)[0]}] {name.rsplit('.', 1)[1]} = ..."
            )
        out += _dotted(value, f"{name}.") if isinstance(value, dict) else [name]
    return out


def _check_keys(path: Path, cfg: dict, valid: tuple[str, ...]) -> None:
    """Refuse keys the analysis does not read: a typo would otherwise fall back to a default silently."""
    unknown = [k for k in _dotted(cfg) if k not in ("name", "analysis") and k not in valid]
    if unknown:
        hints = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(
            f"{path}: unknown config key(s) {said} for analysis {cfg['analysis']!r}; valid: {sorted(valid)}"
        )


def run_analysis(spec: Path, *, runs_root: Path = Path("runs"), run_name: str | None = None) -> Path:
    """Run (or resume) the analysis in ``spec``; returns the run directory."""
    if run_name is not None:
        check_run_name("run_name (--name)", run_name)
    cfg, text = load_spec(spec)
    analysis = ANALYSES[cfg["analysis"]]
    analysis.check_config(cfg)
    if runs_root.exists() and not runs_root.is_dir():
        raise NotADirectoryError(
            f"cannot write the run directory under {runs_root} (it is a file, not a "
            "directory); choose a writable place with --runs DIR"
        )
    path = runs_root / (run_name or cfg["name"])
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
    progress.info("run %s (%s) in %s", cfg["name"], cfg["analysis"], path)
    result = analysis.run(cfg, run)
    progress.info("analysis done in %.1f s; writing the report", time.time() - started)
    manifest = {
        "analysis": cfg["analysis"],
        "name": cfg["name"],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 2),
        "stage_seconds": run.timings,
        "resumed_stages": run.resumed,
        **result.provenance,
        "environment": environment(),
    }
    run.write_json("manifest.json", manifest)
    run.write_json("metrics.json", result.metrics)
    for name, rows in result.tables.items():
        run.write_csv(f"{name}.csv", rows)
    page = RENDERERS[cfg["analysis"]](result.view)
    _write_figures(run, page.sections)
    run.write_text("report.html", render_page(page.title, page.intro, page.sections))
    progress.info("finished in %.1f s", time.time() - started)
    return run.path


def _write_figures(run: RunDir, sections) -> None:
    """Every inline SVG figure of the report also as a file, ``figures/<section>-<k>.svg``, for slides and papers."""
    for section in sections:
        for k, svg in enumerate(re.findall(r"<svg\b.*?</svg>", section.html, re.S), start=1):
            run.write_text(f"figures/{section.anchor}-{k}.svg", svg)
