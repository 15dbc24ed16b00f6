"""Offline circuitsvis figures: the bundle is inlined once and cannot close its script tag early; each
figure carries its data and renders from the global bundle, with no CDN."""

import json
import re

import pytest
import torch

from elk_lens.report.attention_vis import attention_heads_html, circuitsvis_script


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
