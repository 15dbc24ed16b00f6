"""AUROC by token position: where along the statement does a probe find the truth?

Needs statements of one token length (fixed-width quirky arithmetic), so position ``p`` means the same
token of every statement. A reporter is fitted per (site, position) on the training rows.
"""

import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.capturing import capture, tokenize
from elk_lens.data.statements import StatementSet
from elk_lens.distributed import spread
from elk_lens.metrics import auroc_columns
from elk_lens.reporters.registry import fit_method

__all__ = ["position_sweep"]


def position_sweep(
    model: TransformerBridge,
    train: StatementSet,
    evals: dict[str, StatementSet],
    sites,
    *,
    method: str = "logistic",
    batch_size: int = 512,
) -> dict:
    """``{"tokens": [...], "auroc": {eval name: {site: [AUROC per position]}}}`` vs each set's truth."""
    all_sets = [train, *evals.values()]
    lengths = {int(n) for s in all_sets for n in tokenize(model, s.texts).mask.sum(1).unique()}
    if len(lengths) != 1:
        raise ValueError(f"a position sweep needs statements of one token length; got lengths {sorted(lengths)}")
    train_acts = capture(model, train, sites, position="all", batch_size=batch_size)
    eval_acts = {k: capture(model, s, sites, position="all", batch_size=batch_size) for k, s in evals.items()}
    n_pos = lengths.pop()

    def at_site(i: int) -> dict[str, list[float]]:
        x, site = train_acts.at(i), train_acts.sites[i].name
        reporters = [fit_method(method, train.truth, site=site, statement=x[:, p]) for p in range(n_pos)]
        out = {}
        for name, acts in eval_acts.items():
            e = acts.at(i)
            scores = torch.stack([r(e[:, p]) for p, r in enumerate(reporters)], 1)
            values = auroc_columns(scores, evals[name].truth, nan_if_one_class=True)
            out[name] = [round(float(v), 4) for v in values]
        return out

    by_site = spread(range(len(train_acts.sites)), at_site)  # torchrun: the sites spread (elk_lens/distributed.py)
    auroc = {k: {site.name: at[k] for site, at in zip(train_acts.sites, by_site, strict=True)} for k in evals}
    return {"tokens": model.to_str_tokens(train.texts[0]), "auroc": auroc}
