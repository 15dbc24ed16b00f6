"""`generalization_study`: every cell of the train-on-one, test-on-another matrix, against a recomputation.

The oracle reads activations with TransformerLens's own ``run_with_cache`` one statement at a time and
refits each cell independently: scikit-learn's logistic regression (the objective ``fit_logistic``
minimizes, on features standardized with training statistics), the class-mean difference in numpy,
and the library's CCS and TTPD fitters fed by hand with the rows a cell must train on. Statements are
on the tiny native model with the char tokenizer (tests/conftest.py).
"""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from elk_lens.capturing import content_position
from elk_lens.data.statements import StatementSet
from elk_lens.data.truth_datasets import item_split
from elk_lens.generalization import Source, generalization_study, sources_for
from elk_lens.reporters import fit_ccs, fit_ttpd
from elk_lens.transfer import earliest_informative_layer

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
ANSWERS = ("y", "n")  # one char token each
# capture vs run_with_cache: masked, early-stopped forward vs full forward (test_capture.py: <= 7.2e-7)
ACTIVATION_TOL = 1e-5
SKLEARN_COEF_RTOL = 1e-4  # L-BFGS vs lbfgs to tolerance: the refits' scores agree far below a rank swap


def _set(name: str, topic: str, negated: bool, seed: int) -> StatementSet:
    """Lowercase statements the char tokenizer spells exactly; truth is whether the two letters match."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghij"
    texts, truth, items = [], [], []
    for i in range(90):
        a = letters[i % 10]
        b = a if i % 2 == 0 else letters[(i % 10 + 1 + int(rng.integers(9))) % 10]
        texts.append(f"{a} {'isnt' if negated else 'is'} {b} {i % 7}.")
        truth.append((a == b) != negated)
        items.append(f"{topic}:{i // 2}")
    meta = {
        "split": np.array([item_split(k) for k in items], dtype=object),
        "topic": np.full(90, topic, object),
        "polarity": np.full(90, not negated),
        "item": np.array(items, dtype=object),
    }
    return StatementSet(texts, torch.tensor(truth), meta, name=name)


@pytest.fixture(scope="module")
def sets() -> dict[str, StatementSet]:
    return {
        "eq": _set("eq", "eq", False, 0),
        "neg_eq": _set("neg_eq", "eq", True, 1),
        "other": _set("other", "o", False, 2),
    }


@pytest.fixture(scope="module")
def study(native_model, sets):
    return generalization_study(
        native_model, sets, methods=("logistic", "mean_diff", "ccs", "ttpd"), sites=SITES, answers=ANSWERS, n_boot=200
    )


@torch.no_grad()
def _oracle_x(model, texts: list[str], site: str) -> torch.Tensor:
    out = []
    for t in texts:
        _, cache = model.run_with_cache(model.to_tokens(t), names_filter=[site])
        out.append(cache[site][0, -1])
    return torch.stack(out).double()


def _rows(data: StatementSet, split: str) -> np.ndarray:
    return data.column("split") == split


def _rank_step(labels: torch.Tensor) -> float:
    """What one swapped (true, false) pair moves the AUROC by: the tolerance a refit may cost."""
    n_pos = int(labels.sum())
    return 1.0 / (n_pos * (len(labels) - n_pos))


def test_every_cell_equals_an_independent_refit(native_model, sets, study):
    for site in SITES:
        x = {n: _oracle_x(native_model, d.texts, site) for n, d in sets.items()}
        xt = {n: _oracle_x(native_model, [t + ANSWERS[0] for t in d.texts], site) for n, d in sets.items()}
        xf = {n: _oracle_x(native_model, [t + ANSWERS[1] for t in d.texts], site) for n, d in sets.items()}
        for train, data in sets.items():
            tr = _rows(data, "train")
            y = data.truth[tr].numpy()
            mean, std = x[train][tr].mean(0), x[train][tr].std(0)
            lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(((x[train][tr] - mean) / std).numpy(), y)
            w_lr = torch.as_tensor(lr.coef_[0]) / std
            theta = x[train][tr][data.truth[tr]].mean(0) - x[train][tr][~data.truth[tr]].mean(0)
            ccs = fit_ccs(xt[train][tr], xf[train][tr], data.truth[tr], site=site)
            for test, other in sets.items():
                te = _rows(other, "test")
                scores = {
                    "logistic": x[test][te] @ w_lr,
                    "mean_diff": x[test][te] @ theta,
                    "ccs": ccs(xt[test][te], xf[test][te]),
                }
                for method, score in scores.items():
                    want = roc_auc_score(other.truth[te].numpy(), score.numpy())
                    got = _cell(study.per_site, method, train, site, test)
                    assert got == pytest.approx(want, abs=_rank_step(other.truth[te]) + 1e-12), (method, train, test)


def _cell(rows: list[dict], method: str, train: str, site: str, test: str) -> float:
    (row,) = [r for r in rows if (r["method"], r["train"], r["site"], r["test"]) == (method, train, site, test)]
    return row["auroc"]


def test_ttpd_trains_on_the_topic_pair_each_dataset_its_own_group(native_model, sets, study):
    assert sources_for("ttpd", sets) == [Source("eq+neg_eq", ("eq", "neg_eq"))]  # 'other' has no negation
    site = SITES[1]
    x = {n: _oracle_x(native_model, sets[n].texts, site) for n in sets}
    tr = {n: _rows(sets[n], "train") for n in ("eq", "neg_eq")}
    r = fit_ttpd(
        torch.cat([x["eq"][tr["eq"]], x["neg_eq"][tr["neg_eq"]]]),
        torch.cat([sets["eq"].truth[tr["eq"]], sets["neg_eq"].truth[tr["neg_eq"]]]),
        torch.tensor([True] * int(tr["eq"].sum()) + [False] * int(tr["neg_eq"].sum())),
        site=site,
        groups=torch.tensor([0] * int(tr["eq"].sum()) + [1] * int(tr["neg_eq"].sum())),
    )
    for test, other in sets.items():
        te = _rows(other, "test")
        want = roc_auc_score(other.truth[te].numpy(), r(x[test][te]).numpy())
        got = _cell(study.per_site, "ttpd", "eq+neg_eq", site, test)
        assert got == pytest.approx(want, abs=_rank_step(other.truth[te]) + 1e-12), test


def test_the_reported_layer_is_chosen_on_the_training_sets_val_split_only(study):
    for row in study.chosen:
        val = [
            next(
                r["val_auroc"]
                for r in study.per_site
                if (r["method"], r["train"], r["site"]) == (row["method"], row["train"], s)
            )
            for s in study.sites
        ]
        assert row["site"] == study.sites[earliest_informative_layer(val)]
        assert row["auroc"] == _cell(study.per_site, row["method"], row["train"], row["site"], row["test"])
        assert row["ci_low"] <= row["auroc"] <= row["ci_high"]
    sources, values = study.matrix("logistic")
    assert sources == ["eq", "neg_eq", "other"] and len(values[0]) == len(study.tests) == 3


def test_ttpd_gets_polarity_and_one_group_per_dataset(native_model, sets, monkeypatch):
    """The grouping rarely moves a toy AUROC (balanced groups centre alike), so check what TTPD is given."""
    import elk_lens.generalization as gen

    calls = []
    monkeypatch.setattr(
        gen,
        "fit_ttpd",
        lambda x, y, polarity, **kw: calls.append((polarity, kw["groups"])) or fit_ttpd(x, y, polarity, **kw),
    )
    generalization_study(native_model, sets, methods=("ttpd",), sites=SITES[:1], n_boot=50)
    n_eq, n_neg = (int(sets[n].mask(split="train").sum()) for n in ("eq", "neg_eq"))
    ((polarity, groups),) = calls
    assert polarity.tolist() == [True] * n_eq + [False] * n_neg
    assert groups.tolist() == [0] * n_eq + [1] * n_neg


def test_bad_input_is_refused_with_the_reason(native_model, sets):
    no_split = StatementSet(sets["eq"].texts, sets["eq"].truth, {}, name="bare")
    with pytest.raises(ValueError, match="dataset 'bare' has no 'split' column"):
        generalization_study(native_model, {"bare": no_split}, sites=SITES)
    one_class = sets["eq"].subset(~(sets["eq"].mask(split="val") & ~sets["eq"].truth.numpy()))
    with pytest.raises(ValueError, match="dataset 'x': its val split needs true and false statements"):
        generalization_study(native_model, {"x": one_class}, sites=SITES)
    no_polarity = StatementSet(sets["eq"].texts, sets["eq"].truth, {"split": sets["eq"].column("split")}, name="p")
    with pytest.raises(KeyError, match="has no column 'topic'"):
        generalization_study(native_model, {"p": no_polarity}, methods=("ttpd",), sites=SITES)
    with pytest.raises(ValueError, match=r"\['ttpd'\] train on a topic's affirmative and negated sets together"):
        generalization_study(native_model, {"other": sets["other"]}, methods=("ttpd",), sites=SITES)
    with pytest.raises(ValueError, match=r"unknown reporter methods \['svm'\]; valid methods"):
        generalization_study(native_model, sets, methods=("svm",), sites=SITES)


def test_the_read_position_is_the_last_token_of_a_decoder(native_model):
    assert content_position(native_model) == "last"


def test_a_users_csv_gets_item_splits_and_runs_through_the_study(native_model, tmp_path):
    """load_statements -> with_splits (rows about one entity share a split) -> the generalization study."""
    from elk_lens.data import load_statements, with_splits

    path = tmp_path / "facts.csv"
    entities = [a + b for a in "abcdefghijkl" for b in "xyzuv"]  # 60 entities, a true and a false statement each
    lines = ["text,label,entity"] + [f"{e} is {e}.,1,{e}\n{e} is {e[::-1]}.,0,{e}" for e in entities]
    path.write_text("\n".join(lines) + "\n")
    data = with_splits(load_statements(path, name="mine"), key_column="entity")
    split = data.column("split")
    assert all(len(set(split[data.column("entity") == e])) == 1 for e in entities)
    assert set(data.meta) == {"text", "entity", "split"}
    study = generalization_study(native_model, {"mine": data}, methods=("mean_diff",), sites=SITES[:1], n_boot=50)
    assert [(r["train"], r["test"]) for r in study.chosen] == [("mine", "mine")]


def test_by_layer_reads_one_transfer_across_sites(study):
    from elk_lens.sites import short_name

    assert study.by_layer("logistic", "eq", "neg_eq") == [
        _cell(study.per_site, "logistic", "eq", s, "neg_eq") for s in SITES
    ]
    with pytest.raises(ValueError, match="no results for ttpd trained on 'eq'"):
        study.by_layer("ttpd", "eq", "eq")
    assert [short_name(s) for s in SITES] == ["0 resid_post", "1 resid_post"]


def test_the_result_looks_up_by_any_site_name_and_saves_verified(study, tmp_path):
    import dataclasses
    import json

    from elk_lens.generalization import Generalization
    from elk_lens.sites import Site

    site = study.sites[1]
    at = study.auroc("logistic", "eq", "neg_eq", site=Site.parse(site))
    assert at == study.auroc("logistic", "eq", "neg_eq", site=f"resid_post.{Site.parse(site).layer}")
    assert at == _cell(study.per_site, "logistic", "eq", site, "neg_eq")
    chosen = next(r for r in study.chosen if (r["method"], r["train"], r["test"]) == ("logistic", "eq", "neg_eq"))
    assert study.auroc("logistic", "eq", "neg_eq") == chosen["auroc"]
    assert study.rows("logistic", diagonal=True) == [
        r for r in study.chosen if r["method"] == "logistic" and r["train"] == r["test"]
    ]
    assert study.sources("logistic") == list(dict.fromkeys(r["train"] for r in study.rows("logistic")))
    with pytest.raises(ValueError, match="no result for logistic trained on 'eq', tested on 'nope'"):
        study.auroc("logistic", "eq", "nope")
    path = study.save(tmp_path / "g.json")
    assert json.dumps(Generalization.load(path).to_dict()) == json.dumps(study.to_dict())
    path.write_text(path.read_text().replace('"auroc": ', '"auroc": 0.5, "x": ', 1))
    with pytest.raises(ValueError, match="fails its checksum"):
        Generalization.load(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.sites = []  # type: ignore[misc]
