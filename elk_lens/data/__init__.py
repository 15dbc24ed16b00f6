"""Statement sets: quirky arithmetic, Marks & Tegmark-style truth datasets, and users' own CSV / JSONL."""

import lazy_loader

# Lazy, as elk_lens is: listing the datasets (`elk-lens data list`) needs neither torch nor the bridge.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
