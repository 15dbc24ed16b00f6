"""The site a concept anchor holds, chosen as the quirky protocol chooses a reporter's layer: the earliest
informative layer (``elk_lens.transfer.earliest_informative_layer``) of a logistic probe trained on half of
the base model's Alice-easy statements and scored on the other half, all from the val split, so the choice
sees no test row and no Bob row.

    python benchmarks/anchor_site.py --model zoo:smollm2-135m --task cities_hemisphere --rows 1000

The statements are the fine-tuning scenario's probe set (``Scenario.probe_set``: ``rows`` items of the val
split, seed 0, Alice-easy), halved by item. Prints every drift site's held-out AUROC and the chosen site.
"""

import argparse
import json

import numpy as np

from elk_lens.analyses.scenario import drift_sites
from elk_lens.capturing import capture
from elk_lens.metrics import auroc
from elk_lens.models import load_model
from elk_lens.quirky.tasks import quirky_task
from elk_lens.reporters import fit_logistic
from elk_lens.transfer import earliest_informative_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="zoo:smollm2-135m")
    parser.add_argument("--task", default="cities_hemisphere")
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    model = load_model(args.model)
    ae = quirky_task(args.task).statements(args.rows, split="val", seed=0).where(character="Alice", easy=True)
    half = np.asarray(ae.column("row_id")) % 2 == 0
    train, held = ae.subset(half), ae.subset(~half)
    sites = drift_sites(model.cfg.n_layers)
    a_train, a_held = (capture(model, s, sites, batch_size=32) for s in (train, held))
    scores = []
    for i, site in enumerate(sites):
        probe = fit_logistic(a_train.at(i), train.truth, site=site)
        scores.append(round(auroc(probe(a_held.at(i)), held.truth), 4))
    chosen = sites[earliest_informative_layer(scores)]
    print(
        json.dumps({"rows": [len(train), len(held)], "auroc": dict(zip(sites, scores, strict=True)), "chosen": chosen})
    )


if __name__ == "__main__":
    main()
