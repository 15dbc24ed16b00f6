"""elk-lens: find, test and track what a transformer knows to be true (a TransformerLens 4.x plugin).

>>> import elk_lens as el
>>> model = el.load_model("zoo:quirky-arith")                       # doctest: +SKIP
>>> data = el.quirky_arithmetic(1000, split="test")                  # doctest: +SKIP
>>> acts = el.capture(model, data, el.residual_sites(model))          # doctest: +SKIP
>>> probe = el.fit_logistic(acts.at(3), data.truth, site="blocks.3.hook_resid_pre")  # doctest: +SKIP
"""

import lazy_loader

# The names in __init__.pyi load on first use: TransformerLens's bridge takes seconds to import and torch over
# one, which `elk-lens --help` or `elk-lens data list` do not need (docs/results/benchmarks.md, issue 18).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

__version__ = "0.1.0"
