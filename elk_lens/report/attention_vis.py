"""circuitsvis attention patterns in a self-contained report: the library's bundled JavaScript, inlined once.

``circuitsvis.attention.attention_heads`` renders from a CDN, which an offline report cannot reach,
and its local renderer inlines the 1.3 MB bundle into every figure. Here the bundle goes into the page
once (:func:`circuitsvis_script`) and each figure is a ``div`` plus a call to ``CircuitsVis.render``.
"""

import html
import json
from pathlib import Path
from uuid import uuid4

import circuitsvis
from circuitsvis.utils.convert_props import convert_props
from jaxtyping import Float
from torch import Tensor

from elk_lens._checks import check_texts

__all__ = ["attention_heads_html", "circuitsvis_script", "script_json"]

_BUNDLE = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
# JSON is JavaScript, but inside an inline <script> the HTML parser reads first: "</script>" in a token
# would end the element, "<!--" would change how it ends; U+2028/9 end a line in older JavaScript
_SCRIPT_UNSAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(json_text: str) -> str:
    """JSON text made safe to place inside an inline ``<script>``: the characters that HTML or older
    JavaScript read specially, written as ``\\u`` escapes (still the same JSON value)."""
    return json_text.translate(_SCRIPT_UNSAFE)


def circuitsvis_script() -> str:
    """The circuitsvis bundle as one inline ``<script>``: put it in the page before any figure."""
    if not _BUNDLE.is_file():
        raise FileNotFoundError(f"circuitsvis's bundled JavaScript is missing ({_BUNDLE}); reinstall circuitsvis")
    bundle = _BUNDLE.read_text(encoding="utf-8").replace("</script>", "<\\/script>")  # cannot end the tag early
    return f"<script>{bundle}</script>"


def attention_heads_html(
    attention: Float[Tensor, "head_index query_pos key_pos"], tokens: list[str], head_names: list[str]
) -> str:
    """One circuitsvis ``AttentionHeads`` figure (needs :func:`circuitsvis_script` earlier in the page)."""
    tokens, head_names = check_texts("tokens", tokens), check_texts("head_names", head_names)
    n_heads, n_query, n_key = attention.shape
    if n_query != len(tokens) or n_key != len(tokens):
        raise ValueError(f"attention is {n_query} x {n_key} positions but there are {len(tokens)} tokens")
    if len(head_names) != n_heads:
        raise ValueError(f"{n_heads} heads but {len(head_names)} head names")
    div = f"circuits-vis-{uuid4().hex[:12]}"
    # convert_props is plain json.dumps: it leaves "<", ">" and "&" as they are
    props = script_json(
        convert_props(
            {"attention": attention.float(), "tokens": tokens, "attentionHeadNames": head_names, "maskUpperTri": True}
        )
    )
    return (
        f'<div id="{div}" style="margin: 15px 0;"></div><script>CircuitsVis.render({json.dumps(div)}, '
        f"CircuitsVis.AttentionHeads, {props});</script>"
        f"<p class='note'>{html.escape(' '.join(tokens))}</p>"
    )
