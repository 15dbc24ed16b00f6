"""Measure a trained quirky model and write the numbers into its card (``card.json``).

The knowledge/output split measured here is built in where the quirk was fine-tuned on a frozen prefix
(``zoo:quirky-arith``): the recipe's card says so under ``positive_control`` (``elk_lens.quirky.recipe``).
"""

import json
from pathlib import Path

from elk_lens._atomic import atomic_write_text
from elk_lens.models import load_model
from elk_lens.quirky.probe_study import quirky_probe_study, split_layers
from elk_lens.quirky.subsets import TARGET

__all__ = ["MEASURED_OUTPUT", "MEASURED_PROBE", "measure_and_write_cards"]

MEASURED_PROBE = "probe AUROC vs truth on Bob-hard disagreements, per layer (LR on Alice-easy)"
"""The ``measured`` key of the per-layer probe AUROCs (read back by the default analysis's report)."""
MEASURED_OUTPUT = "output AUROC vs truth on Bob-hard disagreements"


def measure(path: Path) -> dict:
    """Held-out accuracy and the knowledge/output split of the model in ``path`` (test split)."""
    study = quirky_probe_study(load_model(str(path)))
    return {
        "accuracy (test split)": {k: round(v, 4) for k, v in study.accuracy.items()},
        MEASURED_PROBE: {r.name: round(r.auroc[TARGET], 4) for r in study.probes},
        MEASURED_OUTPUT: round(study.output.auroc[TARGET], 4),
        "split layers (probe >= 0.90 while output <= 0.10)": split_layers(study),
        "sizes": study.sizes,
    }


def measure_and_write_cards(models: dict[str, Path], *, wall_seconds: float | None = None) -> None:
    """Add a ``measured`` section (and the recipe's wall time) to each model's card."""
    for path in models.values():
        card_path = path / "card.json"
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{card_path} cannot be read as a model card (JSON): {e}") from None
        card["measured"] = measure(path)
        if wall_seconds is not None:
            card["recipe_wall_seconds"] = round(wall_seconds, 1)
        atomic_write_text(card_path, json.dumps(card, indent=2))
