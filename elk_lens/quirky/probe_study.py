"""The quirky-arithmetic probe study: does a probe trained where labels are trustworthy read truth
where the model's output lies?

Probes are fitted on Alice-easy statements from the ``val`` split (pairs the model never trained
on) and scored on the ``test`` split, which shares no operand pair with either. Both the probes and
the model's own output are scored against the truth (Alice's labels), per layer and subset.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import output_log_odds
from elk_lens.models import fingerprint
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, SUBSETS, TARGET, subset_masks
from elk_lens.quirky.sweep import (
    SweepRow,
    heuristic_rows,
    probe_layer_sweep,
    score_row,
)
from elk_lens.quirky.tasks import quirky_task
from elk_lens.sites import residual_sites

__all__ = ["QuirkyStudy", "quirky_probe_study", "split_layers"]


@dataclass
class QuirkyStudy:
    """Per-layer probe AUROC, the model's own output AUROC and accuracy, and surface baselines."""

    probes: list[SweepRow]
    output: SweepRow
    heuristics: list[SweepRow]
    accuracy: dict[str, float]
    sizes: dict[str, int]
    provenance: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """Rows for CSV/JSON: one per scored thing, one column per evaluation subset."""
        return [{"scored": r.name, **{k: round(v, 4) for k, v in r.auroc.items()}} for r in self.all_rows()]

    def all_rows(self) -> list[SweepRow]:
        return [*self.probes, self.output, *self.heuristics]


def _accuracy(log_odds: torch.Tensor, statements: StatementSet) -> dict[str, float]:
    """Accuracy of the model's True/False answer against each character's own label, and Bob's
    against the truth (a truthful model scores high there and ~50% against Bob's sloppy label)."""
    says_true = (log_odds > 0).numpy()
    character, hard = statements.column("character"), statements.column("hard")
    out = {}
    for who, target in (("Alice", "label"), ("Bob", "label"), ("Bob", "alice_label")):
        correct = says_true == statements.column(target)
        what = "own label" if target == "label" else "truth"
        for only_hard in (False, True):
            rows = (character == who) & (hard if only_hard else True)
            out[f"{who[0]}{'H' if only_hard else ''} vs {what}"] = float(correct[rows].mean())
    return out


def quirky_probe_study(
    model: TransformerBridge,
    *,
    train_rows: int = 8000,
    test_rows: int = 4000,
    seed: int = 0,
    batch_size: int = 512,
    cache_dir: str | Path | None = None,
    C: float = 1.0,
    task: str = "arithmetic",
) -> QuirkyStudy:
    """Run the study on ``model`` (an Alice/Bob quirky model answering ``task``'s True/False pair).

    Args:
        train_rows: Base rows drawn from the val split; the probe trains on their Alice-easy part.
        test_rows: Base rows drawn from the test split (each gives an Alice and a Bob statement).
        seed: Data seed.
        cache_dir: Activation cache directory (optional).
        C: Inverse L2 strength of the logistic-regression probes.
        task: The quirky task (``elk_lens.quirky.tasks``): statements, answer pair and surface heuristics.
    """
    quirky = quirky_task(task)
    timings = {}
    started = time.perf_counter()
    train = quirky.statements(train_rows, split="val", seed=seed).where(character="Alice", easy=True)
    test = quirky.statements(test_rows, split="test", seed=seed)
    sites = residual_sites(model)
    train_acts = capture(model, train, sites, batch_size=batch_size, cache_dir=cache_dir)
    test_acts = capture(model, test, sites, batch_size=batch_size, cache_dir=cache_dir)
    timings["capture_s"] = round(time.perf_counter() - started, 2)

    masks = subset_masks(test, PROBE_STUDY_SETS)
    model_fp = fingerprint(model)
    provenance = {"model": model_fp, "train_data": train.fingerprint, "seed": seed, "task": task}
    started = time.perf_counter()
    probes = probe_layer_sweep(train_acts, train.truth, test_acts, test.truth, masks, C=C, provenance=provenance)
    timings["fit_s"] = round(time.perf_counter() - started, 2)
    log_odds = output_log_odds(model, test, answers=quirky.answers, batch_size=batch_size)
    return QuirkyStudy(
        probes=probes,
        output=score_row("model output (logit True - False)", log_odds, test.truth, masks),
        heuristics=heuristic_rows(train, test, test.truth, masks, quirky.surface),
        accuracy=_accuracy(log_odds, test),
        sizes={"train (AE, val split)": len(train), **{k: int(m.sum()) for k, m in masks.items()}},
        provenance={
            **provenance,
            "test_data": test.fingerprint,
            "train_rows": train_rows,
            "test_rows": test_rows,
            "C": C,
            "timings": timings,
            "subsets": {k: SUBSETS[k].meaning for k in PROBE_STUDY_SETS},
        },
    )


def split_layers(study: QuirkyStudy, *, probe_min: float = 0.90, output_max: float = 0.10) -> list[str]:
    """Sites where the probe reads truth on Bob-hard disagreements (AUROC >= ``probe_min``) while the
    model's output there follows Bob (AUROC vs truth <= ``output_max``): the knowledge/output split."""
    if study.output.auroc[TARGET] > output_max:
        return []
    return [r.name for r in study.probes if r.auroc[TARGET] >= probe_min]
