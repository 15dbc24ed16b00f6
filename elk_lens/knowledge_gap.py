"""The knowledge/output gap: what a probe reads in the residual beside what the model says when asked.

A model "knows but does not say" where a probe on its residual separates true from false statements
better than every way of asking it (zero-shot, few-shot, its chat template) does, by more than the
intervals allow. Each prompt is scored on a dataset's ``test`` split (AUROC of the answer log-odds
against truth, percentile-bootstrap 95% interval); its calibrated accuracy thresholds the log-odds at
the median of the ``val`` split's (Marks & Tegmark's calibrated few-shot baseline, with the threshold
taken from held-out rows, never from the rows scored). Few-shot examples come from the ``train`` split.
"""

from collections.abc import Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.data.statements import StatementSet
from elk_lens.metrics import auroc, bootstrap_ci
from elk_lens.prompts import (
    ANSWERS,
    CHAT_ANSWERS,
    QUESTION,
    Prompt,
    chat_prompt,
    few_shot_prompt,
    prompted_log_odds,
    zero_shot_prompt,
)

__all__ = ["PROMPTS", "gap_rows", "model_answers", "prompt_for"]

PROMPTS = ("zero_shot", "few_shot", "chat")


def prompt_for(
    kind: str,
    model: TransformerBridge,
    data: StatementSet,
    *,
    k_shot: int = 4,
    seed: int = 0,
    question: str = QUESTION,
    answers: tuple[str, str] = ANSWERS,
    chat_answers: tuple[str, str] = CHAT_ANSWERS,
) -> Prompt:
    """The ``kind`` prompt (``PROMPTS``) for one dataset; few-shot examples from its train rows."""
    if kind == "zero_shot":
        return zero_shot_prompt(question, answers)
    if kind == "few_shot":
        return few_shot_prompt(data.where(split="train"), k_shot, seed=seed, question=question, answers=answers)
    if kind == "chat":
        return chat_prompt(model.tokenizer, answers=chat_answers)
    raise ValueError(f"unknown prompt {kind!r}; valid prompts: {list(PROMPTS)}")


def model_answers(
    model: TransformerBridge,
    sets: dict[str, StatementSet],
    prompts: dict[str, dict[str, Prompt]],
    *,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """One row per (dataset, prompt): test AUROC with its interval, calibrated accuracy, how often the
    model says the true answer, and the prompt's text (``prompts[dataset][kind]``)."""
    check_number("batch_size", batch_size, kind=int, low=1)
    check_number("n_boot", n_boot, kind=int, low=1)
    rows = []
    for name, data in sets.items():
        split = data.column("split")
        scored = data.subset((split == "val") | (split == "test"))
        is_test = torch.as_tensor(scored.column("split") == "test")
        for kind, prompt in prompts[name].items():
            odds = prompted_log_odds(model, scored, prompt, batch_size=batch_size).double()
            s, y = odds[is_test], scored.truth[is_test]
            threshold = float(odds[~is_test].median())
            low, high = bootstrap_ci(auroc, s, y, n_resamples=n_boot, seed=seed)
            rows.append(
                {
                    "dataset": name,
                    "prompt": kind,
                    "auroc": auroc(s, y),
                    "ci_low": low,
                    "ci_high": high,
                    "calibrated_accuracy": float(((s > threshold) == y).double().mean()),
                    "val_median": threshold,
                    "says_true": float((s > 0).double().mean()),
                    "n_test": int(is_test.sum()),
                    "prompt_text": prompt.prefix + "<statement>" + prompt.suffix + "|".join(prompt.answers),
                }
            )
    return rows


def gap_rows(probe: Sequence[dict], answers: Sequence[dict]) -> list[dict]:
    """Per dataset: the probe (its own train→test cell at the layer chosen on val) beside each prompt.

    ``knows_more`` is true where the probe's interval lies wholly above every prompt's interval.
    """
    out = []
    for p in probe:
        mine = [a for a in answers if a["dataset"] == p["test"]]
        if not mine:
            continue
        best = max(mine, key=lambda a: a["auroc"])
        row = {
            "dataset": p["test"],
            "probe_site": p["site"],
            "probe_auroc": p["auroc"],
            "probe_ci": [p["ci_low"], p["ci_high"]],
        }
        for a in mine:
            row[f"{a['prompt']}_auroc"] = a["auroc"]
            row[f"{a['prompt']}_ci"] = [a["ci_low"], a["ci_high"]]
        row["gap_vs_best_prompt"] = p["auroc"] - best["auroc"]
        row["knows_more"] = bool(all(p["ci_low"] > a["ci_high"] for a in mine))
        out.append(row)
    return out
