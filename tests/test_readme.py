"""The README's quickstart and the docs' snippets run as written and print what the pages say they show."""

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REPORTERS_PAGE = ROOT / "docs" / "guide" / "reporters.md"
TRUTH_PAGE = ROOT / "docs" / "results" / "truth-datasets.md"


def test_quickstart_runs_and_shows_the_split(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)  # the quickstart caches activations under ./.cache
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md quickstart", "exec"), {})
    scores = dict(line.rsplit(" ", 1) for line in out.getvalue().strip().splitlines())
    assert float(scores["blocks.3.hook_resid_pre"]) >= 0.9, scores
    assert float(scores["model output"]) <= 0.1, scores
    assert (tmp_path / ".cache" / "acts").is_dir()


def test_reporter_snippet_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", REPORTERS_PAGE.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)  # the snippet saves a reporter under ./reporters
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/guide/reporters.md snippet", "exec"), {})
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("CCS AUROC"), lines
    before, after = (float(x) for x in re.findall(r"(-?\d+\.\d+)", lines[1]))
    assert after > before + 5, lines  # steering along the truth vector moves false statements toward True
    assert (tmp_path / "reporters" / "mean_diff_final" / "reporter.json").is_file()


def test_truth_dataset_snippet_runs():
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", TRUTH_PAGE.read_text(), re.S) if "el.truth_set(" in c]
    scope = {}
    exec(compile("import elk_lens as el\n" + code, "docs/results/truth-datasets.md", "exec"), scope)
    assert scope["cities"].texts[0] == "The city of Aba is in Nigeria." and scope["card"]["rows"] == 2052
    assert len(scope["sets"]) == 10
