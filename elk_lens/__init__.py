"""elk-lens: find, test and track what a transformer knows to be true (TransformerLens 4.x plugin)."""

__version__ = "0.1.0"
