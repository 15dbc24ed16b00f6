"""Offline circuitsvis figures: the bundle is inlined once and cannot close its script tag early; each
figure carries its data and renders from the global bundle, with no CDN."""

import json
import re

import pytest
import torch

from elk_lens.report.attention_vis import attention_heads_html, circuitsvis_script, script_json
from elk_lens.report.html import Section, render_page, table_html
from elk_lens.report.svg import line_chart

HOSTILE = ("</script><script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>")


def test_the_bundle_is_one_inline_script_without_a_network_source():
    script = circuitsvis_script()
    assert script.startswith("<script>") and script.count("</script>") == 1
    assert "CircuitsVis" in script and not re.search(r"""src=["']https?://""", script)


def test_a_figure_renders_its_data_from_the_global_bundle():
    attention = torch.tensor([[[1.0, 0.0], [0.25, 0.75]]])
    figure = attention_heads_html(attention, ["012", "+"], ["L1H3"])
    div = re.search(r'<div id="(circuits-vis-[0-9a-f]+)"', figure).group(1)
    call = re.search(r"CircuitsVis\.render\(\"" + div + r"\", CircuitsVis\.AttentionHeads, (\{.*\})\);", figure)
    props = json.loads(call.group(1))
    assert props["attention"] == [[[1.0, 0.0], [0.25, 0.75]]] and props["attentionHeadNames"] == ["L1H3"]
    assert "unpkg" not in figure


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="2 x 2 positions but there are 3 tokens"):
        attention_heads_html(torch.zeros(1, 2, 2), ["a", "b", "c"], ["h"])
    with pytest.raises(ValueError, match="1 heads but 2 head names"):
        attention_heads_html(torch.zeros(1, 2, 2), ["a", "b"], ["h", "g"])


def test_script_json_is_the_same_json_without_what_html_reads_in_a_script():
    value = {"tokens": ["</script>", "<!--", "a&b", "\u2028\u2029", "é"], "n": [1.5]}
    text = script_json(json.dumps(value, ensure_ascii=False))
    assert not re.search("[<>&\u2028\u2029]", text)
    assert json.loads(text) == value


def test_a_report_section_with_hostile_strings_renders_them_as_text():
    tokens = [*HOSTILE, "<!--"]
    section = Section(
        HOSTILE[0],
        attention_heads_html(torch.full((1, 3, 3), 1 / 3), tokens, [HOSTILE[1]])
        + table_html([{HOSTILE[0]: HOSTILE[1]}])
        + line_chart({HOSTILE[0]: [0.5, 0.6]}, list(HOSTILE), title=HOSTILE[1], y_label=HOSTILE[0]),
    )
    page = render_page(HOSTILE[1], "<p>intro</p>", [section])
    for s in (*HOSTILE, "<!--"):
        assert s not in page
    assert page.count("<script") == 1 and page.count("</script>") == 1 and "<img" not in page
    props = re.search(r"CircuitsVis\.AttentionHeads, (\{.*?\})\);</script>", page).group(1)
    assert json.loads(props)["tokens"] == tokens


def test_tokens_must_be_a_list_of_strings():
    with pytest.raises(TypeError, match="tokens must be a list of statements, got a single str"):
        attention_heads_html(torch.zeros(1, 2, 2), "ab", ["h"])
