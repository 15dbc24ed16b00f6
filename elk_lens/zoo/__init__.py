"""The embedded model zoo: models trained by this project and shipped inside the package.

Each model is a directory next to this file (``elk_lens.json``, ``model.safetensors``, tokenizer
files, ``card.json``). ``zoo:NAME`` in :func:`elk_lens.load_model` boots one offline.
"""

import json
from pathlib import Path

__all__ = ["ZOO_DIR", "zoo_card", "zoo_names", "zoo_path"]

ZOO_DIR = Path(__file__).parent


def zoo_names() -> list[str]:
    """Names of the embedded models."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "elk_lens.json").is_file())


def zoo_path(name: str) -> Path:
    """Directory of an embedded model; the error lists the valid names."""
    path = ZOO_DIR / name
    if not (path / "elk_lens.json").is_file():
        raise ValueError(f"unknown zoo model {name!r}; embedded models: {zoo_names()}")
    return path


def zoo_card(name: str) -> dict:
    """The model card: what the model is, how it was trained, and what was measured on it."""
    card = zoo_path(name) / "card.json"
    return json.loads(card.read_text()) if card.is_file() else {}
