"""The real-LM quirky sets at a glance: subset sizes and class balance, and what an untuned LM answers.

Prints the balance table of docs/methods/quirky_real_lm.md §4 (2,000 test items per set, seed 0). With
``--model`` it also prints (§5), on ``--n`` test items:

- the AUROC of the model's own answer, ``logit(" True") - logit(" False")`` at the last token, against
  Alice's and against Bob's label on each character's prompts, and per template against the truth;
- with ``--probe``, the test AUROC of a logistic probe (C = 0.1) per layer at the last token, fitted on
  ``--n`` train items of one character's prompts to one character's label: what the untuned residual
  already holds.

    python benchmarks/quirky_real_lm_data.py                                            # the table, seconds
    python benchmarks/quirky_real_lm_data.py --model zoo:smollm2-135m --n 500           # + answers, 3 min
    python benchmarks/quirky_real_lm_data.py --model zoo:smollm2-135m --n 600 --probe   # + probes, 6 min
"""

import argparse

import torch

from elk_lens import load_model
from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import output_log_odds
from elk_lens.metrics import auroc
from elk_lens.quirky import ANSWERS, quirky_cities, quirky_nl_arithmetic
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, subset_balance
from elk_lens.reporters.logistic import fit_logistic

PROBE_C = 0.1  # 600 training rows against SmolLM2's 576 residual dimensions: a firm L2 penalty
PROBE_LAYERS = (4, 8, 12, 16, 20, 24, 29)  # of SmolLM2-135M's 30


def quirky_sets(n: int, split: str = "test") -> dict[str, StatementSet]:
    return {
        "hemisphere": quirky_cities(n, task="hemisphere", split=split),
        "population": quirky_cities(n, task="population", split=split),
        "nl_arithmetic": quirky_nl_arithmetic(n, split=split),
    }


def balance_table(sets: dict[str, StatementSet]) -> str:
    lines = ["| set | subset | rows | true |", "|---|---|---|---|"]
    for name, data in sets.items():
        for subset, (rows, true) in subset_balance(data, ("A", "B", *PROBE_STUDY_SETS)).items():
            lines.append(f"| {name} | {subset} | {rows} | {true} |")
    return "\n".join(lines)


def _auroc(scores: torch.Tensor, labels) -> str:
    labels = torch.as_tensor(labels)
    return f"{auroc(scores, labels):.3f}" if 0 < labels.sum() < len(labels) else "one class"


def answer_table(model, sets: dict[str, StatementSet]) -> str:
    lines = [
        "| set | prompts | vs Alice's label | vs Bob's label | per template, vs truth |",
        "|---|---|---|---|---|",
    ]
    for name, data in sets.items():
        scores = output_log_odds(model, data, answers=ANSWERS, batch_size=64)
        for who in ("Alice", "Bob"):
            rows = data.column("character") == who
            s, m = scores[torch.as_tensor(rows)], {k: v[rows] for k, v in data.meta.items()}
            per_template = ", ".join(
                _auroc(s[torch.as_tensor(m["template"] == t)], m["alice_label"][m["template"] == t])
                for t in sorted(set(m["template"]))
            )
            lines.append(
                f"| {name} | {who} | {_auroc(s, m['alice_label'])} | {_auroc(s, m['bob_label'])} | {per_template} |"
            )
    return "\n".join(lines)


def probe_table(model, n: int) -> str:
    sites = [f"blocks.{layer}.hook_resid_post" for layer in PROBE_LAYERS]
    cells = [(who, label) for who in ("Alice", "Bob") for label in ("alice_label", "bob_label")]
    head = " | ".join(f"{who} prompts, {label.split('_')[0].capitalize()}'s label" for who, label in cells)
    lines = [f"| set | layer | {head} |", "|---|---|" + "---|" * len(cells)]
    train_sets, test_sets = quirky_sets(n, "train"), quirky_sets(n, "test")
    for name in train_sets:
        train, test = train_sets[name], test_sets[name]
        acts = [capture(model, data, sites, progress=False) for data in (train, test)]
        for i, layer in enumerate(PROBE_LAYERS):
            row = []
            for who, label in cells:
                tr, te = (torch.as_tensor(d.column("character") == who) for d in (train, test))
                y = torch.as_tensor(train.column(label))[tr]
                reporter = fit_logistic(acts[0].at(i)[tr], y, site=sites[i], C=PROBE_C)
                scores = reporter(acts[1].at(i)[te].to(torch.float64))
                row.append(_auroc(scores, test.column(label)[te.numpy()]))
            lines.append(f"| {name} | {layer} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="items per set (the table in the docs: 2000)")
    parser.add_argument("--model", help="also score the model's own answers, e.g. zoo:smollm2-135m")
    parser.add_argument("--probe", action="store_true", help="also fit probes per layer (needs --model)")
    args = parser.parse_args()
    sets = quirky_sets(args.n)
    print(balance_table(sets), end="\n\n")
    if args.model:
        model = load_model(args.model)
        print(answer_table(model, sets), end="\n\n")
        if args.probe:
            print(probe_table(model, args.n))


if __name__ == "__main__":
    main()
