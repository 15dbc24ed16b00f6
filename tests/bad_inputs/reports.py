"""Reports: hostile strings (tokens, labels, names from a spec) must reach the page as text, never as
markup or script. Each case renders one piece of a report and checks that no hostile string survives
unescaped."""

import json
import re

import torch

from bad_inputs import Case, Env
from elk_lens.report.attention_vis import attention_heads_html
from elk_lens.report.html import Section, render_page, table_html
from elk_lens.report.svg import heatmap, line_chart

SCRIPT = "</script><script>alert(1)</script>"
ATTRIBUTE = "\"'><img src=x onerror=alert(1)>"
HOSTILE = (SCRIPT, ATTRIBUTE, "<!--")


def _no_markup_from(out: str, *, own_scripts: int = 0) -> None:
    """None of the hostile strings is in ``out`` as it was given, and no element but ours was opened."""
    for s in HOSTILE:
        assert s not in out, f"{s!r} reached the markup unescaped"
    assert "<img" not in out and out.count("<script") == own_scripts, out


def _attention_figure(env: Env) -> str:
    tokens = [SCRIPT, ATTRIBUTE, "a&b", "\u2028"]
    return attention_heads_html(torch.full((2, 4, 4), 0.25), tokens, [SCRIPT, ATTRIBUTE])


def _check_attention_figure(out: object, env: Env) -> None:
    assert isinstance(out, str)
    _no_markup_from(out, own_scripts=1)
    assert out.count("</script>") == 1  # only the figure's own closing tag
    script = out[out.index("<script>") : out.index("</script>")]
    assert "\u2028" not in script and "&" not in script  # a line end in older JavaScript; an HTML entity
    props = json.loads(re.search(r"CircuitsVis\.AttentionHeads, (\{.*\})\);</script>", out, re.S).group(1))
    assert props["tokens"] == [SCRIPT, ATTRIBUTE, "a&b", "\u2028"]  # the data arrives unchanged
    assert props["attentionHeadNames"] == [SCRIPT, ATTRIBUTE]


def _table(env: Env) -> str:
    return table_html(
        [{SCRIPT: ATTRIBUTE, "n": 1.0}, {SCRIPT: SCRIPT, "n": float("nan")}], highlight=lambda c, v: "good"
    )


def _line_chart(env: Env) -> str:
    return line_chart(
        {SCRIPT: [0.1, 0.2], ATTRIBUTE: [0.3, 0.4]},
        [SCRIPT, ATTRIBUTE],
        title=ATTRIBUTE,
        y_label=SCRIPT,
        marks={SCRIPT: ATTRIBUTE},
        bands={SCRIPT: (0.1, 0.2)},
    )


def _heatmap(env: Env) -> str:
    return heatmap([[0.1, 0.9]], [SCRIPT], [ATTRIBUTE, SCRIPT], title=SCRIPT)


def _page(env: Env) -> str:
    sections = [Section(SCRIPT, "<p>trusted</p>"), Section("ok", "<p>trusted</p>", anchor=ATTRIBUTE)]
    return render_page(ATTRIBUTE + SCRIPT, "<p>intro</p>", sections)


def _check_page(out: object, env: Env) -> None:
    assert isinstance(out, str)
    _no_markup_from(out)
    assert "<title>&quot;&#x27;&gt;&lt;img" in out and "<h2>&lt;/script&gt;" in out


def _escaped(out: object, env: Env) -> None:
    assert isinstance(out, str)
    _no_markup_from(out)


CASES = [
    Case("reports/attention-tokens-close-the-script", _attention_figure, check=_check_attention_figure, finding=True),
    Case("reports/table-cells-and-headers", _table, check=_escaped),
    Case("reports/svg-line-chart-labels", _line_chart, check=_escaped),
    Case("reports/svg-heatmap-labels", _heatmap, check=_escaped),
    Case("reports/page-and-section-titles-and-anchors", _page, check=_check_page),
]
