"""Tables derived from :class:`QuirkyScores`: AUROC by site, EIL, PGR, anomaly detection, found features.

Nothing here fits anything on evaluation rows except where named: the anomaly Gaussian is fitted on
the AE test rows, which are disjoint from the AH/BH rows it is scored on (as EG does).
"""

import torch

from elk_lens.metrics import auroc, auroc_columns, bootstrap_ci
from elk_lens.quirky.anomaly import GaussianDetector, anomaly_auroc
from elk_lens.quirky.scores import QuirkyScores
from elk_lens.quirky.subsets import SUBSETS, subset_mask
from elk_lens.quirky.tasks import quirky_task
from elk_lens.transfer import earliest_informative_layer, pgr_interval

__all__ = ["anomaly_table", "auroc_table", "eil_table", "feature_table", "pgr_table"]

# own labels for the in-distribution AUROC that picks each reporter's layer (EG: AE->AE, A->A, B->B)
_IN_DISTRIBUTION = {"A": ("A", "truth"), "AE": ("AE", "truth"), "B": ("B", "bob")}
# transfer -> (train set, eval set), floor (train, eval) and ceiling (train, eval); floor/ceiling use
# final-site logistic regression, all scored against the truth (docs/methods/elk_methods.md §6.5)
PGR_TRANSFERS = {
    "A→B": (("A", "B"), ("B", "B"), ("A", "A")),
    "AE→BH": (("AE", "BH"), ("B", "BH"), ("A", "AH")),
}


def _site_aurocs(scores: QuirkyScores, key: str, eval_set: str, against: str) -> list[float]:
    mask = subset_mask(scores.test, eval_set)
    labels = scores.labels(against)[mask]
    return auroc_columns(scores.log_odds[key][mask], labels, nan_if_one_class=True).tolist()


def auroc_table(scores: QuirkyScores) -> list[dict]:
    """One row per (training set, method, evaluation set, labels): AUROC at every site."""
    rows = []
    for key in scores.log_odds:
        train, method = key.split("/")
        for eval_set in SUBSETS:
            for against in ("truth", "bob"):
                values = _site_aurocs(scores, key, eval_set, against)
                rows.append(
                    {
                        "train": train,
                        "method": method,
                        "eval": eval_set,
                        "vs": against,
                        **{site: round(v, 4) for site, v in zip(scores.sites, values, strict=True)},
                    }
                )
    return rows


def eil_table(scores: QuirkyScores) -> dict[str, int]:
    """Each reporter's earliest informative site index, chosen on its in-distribution AUROC."""
    out = {}
    for key in scores.log_odds:
        train = key.split("/")[0]
        eval_set, against = _IN_DISTRIBUTION[train]
        out[key] = earliest_informative_layer(_site_aurocs(scores, key, eval_set, against))
    return out


def _scored(scores: QuirkyScores, key: str, site: int, eval_set: str):
    mask = subset_mask(scores.test, eval_set)
    return scores.log_odds[key][mask, site], scores.labels("truth")[mask]


def pgr_table(scores: QuirkyScores, eil: dict[str, int], *, seed: int = 0) -> list[dict]:
    """PGR of every method on A→B and AE→BH at its EIL, with 95% bootstrap intervals."""
    last = len(scores.sites) - 1
    rows = []
    methods = list(dict.fromkeys(k.split("/")[1] for k in scores.log_odds))
    for transfer, ((t_train, t_eval), (f_train, f_eval), (c_train, c_eval)) in PGR_TRANSFERS.items():
        for method in methods:
            key = f"{t_train}/{method}"
            res = pgr_interval(
                _scored(scores, key, eil[key], t_eval),
                _scored(scores, f"{f_train}/logistic", last, f_eval),
                _scored(scores, f"{c_train}/logistic", last, c_eval),
                seed=seed,
            )
            rows.append(
                {
                    "transfer": transfer,
                    "method": method,
                    "site (EIL)": scores.sites[eil[key]],
                    **{k: round(v, 4) for k, v in res.items()},
                }
            )
    return rows


def anomaly_table(scores: QuirkyScores, *, method: str = "logistic", seed: int = 0) -> list[dict]:
    """Gaussian on the AE-trained reporter's per-layer log-odds (embedding site dropped, as EG stores
    layers 1..L): fitted on AE test rows, AUROC of AH (normal) vs BH (anomalous), with 95% CI.

    With no more trusted rows than layers the covariance is singular: the rows say n/a and why (a deep
    model on a small test split), rather than stopping the analysis after its reporters are fitted.
    """
    features = scores.log_odds[f"AE/{method}"][:, 1:]
    trusted = features[subset_mask(scores.test, "AE")]
    normal = features[subset_mask(scores.test, "AH")]
    anomalous = features[subset_mask(scores.test, "BH")]
    rows = []
    kinds = {False: "log N", True: "log N - log N(diag)"}
    if len(trusted) <= features.shape[1]:
        why = f"n/a: {len(trusted)} trusted (AE test) rows for {features.shape[1]} layers; raise data.test_rows"
        nan = float("nan")
        return [
            {"reporter": f"AE/{method}", "score": k, "auroc": nan, "low": nan, "high": nan, "trusted rows": why}
            for k in kinds.values()
        ]
    for subtract_diag in (False, True):
        detector = GaussianDetector(trusted, subtract_diag=subtract_diag)
        s_normal, s_anomalous = detector(normal), detector(anomalous)
        all_scores = torch.cat([s_normal, s_anomalous])
        labels = torch.cat([torch.ones(len(normal), dtype=torch.bool), torch.zeros(len(anomalous), dtype=torch.bool)])
        low, high = bootstrap_ci(auroc, all_scores, labels, seed=seed)
        rows.append(
            {
                "reporter": f"AE/{method}",
                "score": kinds[subtract_diag],
                "auroc": round(anomaly_auroc(s_normal, s_anomalous), 4),
                "low": round(low, 4),
                "high": round(high, 4),
                "trusted rows": len(trusted),
            }
        )
    return rows


def feature_table(scores: QuirkyScores, *, train: str = "A", eval_set: str = "A") -> list[dict]:
    """What each reporter tracks: AUROC of its score for candidate binary features of the statement,
    at the site where it deviates most from chance. Far from 0.5 either way means the feature is read."""
    mask = subset_mask(scores.test, eval_set).numpy()
    candidates = quirky_task(scores.task).features(scores.test)
    features = {name: torch.as_tensor(v[mask].astype(bool)) for name, v in candidates.items()}
    rows = []
    for key, values in scores.log_odds.items():
        if not key.startswith(f"{train}/"):
            continue
        row = {"reporter": key}
        for name, labels in features.items():
            per_site = auroc_columns(values[torch.as_tensor(mask)], labels, nan_if_one_class=True)
            i = int((per_site - 0.5).abs().nan_to_num(-1).argmax())
            row[name] = f"{per_site[i]:.3f} @{i}"
        rows.append(row)
    return rows
