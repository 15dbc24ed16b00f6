"""The reporter-methods part of the quirky ELK report: every method by layer and by token position,
transfer, EIL and PGR, the transfer heatmaps, anomaly detection, the rigor battery and the causal checks,
drawn from the ``methods`` part of the ``quirky_elk`` view (``elk_lens.analyses.quirky_methods``)."""

from html import escape

from elk_lens.report.html import Section, auroc_shade, folded, table_html
from elk_lens.report.svg import heatmap, line_chart
from elk_lens.sites import short_name

__all__ = ["method_sections", "targets_table"]

_SUPERVISED = ("logistic", "mean_diff", "lda")


def _chart(res: dict, train: str, eval_set: str, against: str, title: str) -> str:
    sites = res["sites"]
    rows = [r for r in res["auroc"] if r["train"] == train and r["eval"] == eval_set and r["vs"] == against]
    series = {r["method"]: [r[x] for x in sites] for r in rows}
    labels = [short_name(x) for x in sites]
    return line_chart(series, labels, title=title, y_label=f"AUROC vs {against}")


def _transfer_heatmap(res: dict, against: str) -> str:
    """The transfer table at a glance: a row per (training set, method), the sites of each evaluation subset
    side by side, AUROC on the fixed 0–1 scale (white at chance) so the two label sets compare by colour."""
    sites = res["sites"]
    rows = [r for r in res["auroc"] if r["vs"] == against]
    reporters = list(dict.fromkeys((r["train"], r["method"]) for r in rows))
    evals = list(dict.fromkeys(r["eval"] for r in rows))
    at = {(r["train"], r["method"], r["eval"]): r for r in rows}
    values = [[at[(*key, e)][site] for e in evals for site in sites] for key in reporters]
    labels = [short_name(x).replace("resid_", "") for x in sites]
    return heatmap(
        values,
        [f"{train} · {method}" for train, method in reporters],
        labels * len(evals),
        title=f"Transfer AUROC vs {'truth' if against == 'truth' else 'Bob’s labels'}",
        cell=16,
        center=0.5,
        value_range=(0.0, 1.0),
        col_groups=[(e, len(sites)) for e in evals],
        axis_labels=("trained on · method", "evaluated on (subset above; site below)"),
        scale_label="AUROC",
    )


def _position_tables(pos: dict) -> str:
    tokens = pos["tokens"]
    parts = []
    for name, by_site in pos["auroc"].items():
        rows = [
            {"site": site, **{f"{i}:{t}": v for i, (t, v) in enumerate(zip(tokens, values, strict=True))}}
            for site, values in by_site.items()
        ]
        parts.append(f"<h3>Scored on {escape(name)}</h3>" + table_html(rows, highlight=_good_bad))
    return "".join(parts) + (
        "<p class='note'>Logistic regression fitted on Alice-easy statements at each (site, token position); AUROC "
        "vs truth. Columns are token positions of the fixed-width statement.</p>"
    )


def _good_bad(column: str, value: object) -> str | None:
    return None if column == "site" else auroc_shade(value)


def _best_pgr(res: dict, transfer: str) -> dict:
    return max(
        (r for r in res["pgr"] if r["transfer"] == transfer and r["method"] in _SUPERVISED), key=lambda r: r["pgr"]
    )


def _margins_at(margins: list[dict], site: str) -> str:
    return ", ".join(f"{r['margin over q99']:+.4f} on {r['subset']}" for r in margins if r["site"] == site)


def targets_table(res: dict, split: dict, output_auroc: float) -> list[dict]:
    """The issue's targets beside what this run measured (nothing here is fitted on evaluation rows).

    The split and the steering targets at its sites are judged on the probe's margin over random
    directions at the same site (``split["above_floor"]``: the split's sites whose probe beats the random
    99th percentile on the disagreements and the control subset), not on the raw AUROC
    (``elk_lens.quirky.floor``).

    Args:
        res: The ``methods`` part of the view.
        split: ``sites`` (probe >= 0.90 on BH disagreements while the output <= 0.10), ``above_floor`` (those
            of them above the random floor), ``margins`` (``elk_lens.quirky.floor.floor_margins``' rows) and
            ``built_in`` (the model card names the split a positive control).
        output_auroc: The model's output AUROC vs truth on BH disagreements.
    """
    sites, above = split["sites"], split["above_floor"]
    measured = "; ".join(f"{x}: margin {_margins_at(split['margins'], x)}" for x in sites)
    rows = [
        {
            "target": "knowledge/output split, judged on the margin over random: a site where the probe (AE) on "
            "BH disagreements ≥ 0.90 with output ≤ 0.10, and the probe beats the random 99th percentile there "
            "on the disagreements and the BH control",
            "measured": (f"{measured}; output {output_auroc:.4f}" if sites else f"none (output {output_auroc:.4f})")
            + (" — built in by the frozen prefix: a positive control, not a finding" if split["built_in"] else ""),
            "met": bool(above),
        }
    ]
    for transfer in ("A→B", "AE→BH"):
        best = _best_pgr(res, transfer)
        rows.append(
            {
                "target": f"PGR {transfer} ≥ 0.75 (best supervised method)",
                "measured": f"{best['pgr']:.3f} [{best['low']:.3f}, {best['high']:.3f}] ({best['method']})",
                "met": best["pgr"] >= 0.75,
            }
        )
    plain = res["anomaly"][0]
    rows.append(
        {
            "target": "anomaly detection AUROC ≥ 0.95",
            "measured": f"{plain['auroc']:.3f} [{plain['low']:.3f}, {plain['high']:.3f}]",
            "met": plain["auroc"] >= 0.95,
        }
    )
    for r in res["causal"]["rows"]:
        if r["site"] not in above or "nie_truth_to_true" not in r:
            continue
        truth = max(abs(r["nie_truth_to_true"]), abs(r["nie_truth_to_false"]))
        random = max(abs(r["nie_random_to_true_mean"]), abs(r["nie_random_to_false_mean"]))
        measured = (
            f"→true {r['nie_truth_to_true']:.3f}, →false {r['nie_truth_to_false']:.3f}; random mean →true "
            f"{r['nie_random_to_true_mean']:.3f}, →false {r['nie_random_to_false_mean']:.3f}"
        )
        rows.append(
            {
                "target": f"steering |NIE| ≥ 0.5, random < 0.1 ({r['direction']} at {r['site']})",
                "measured": measured,
                "met": truth >= 0.5 and random < 0.1,
            }
        )
    return rows


def method_sections(res: dict) -> list[Section]:
    best_pgr = {t: _best_pgr(res, t) for t in ("A→B", "AE→BH")}
    causal = res["causal"]["rows"]
    note = "<p class='note'>{}</p>".format
    return [
        Section(
            "Every method by layer",
            _chart(res, "AE", "BH_disagree", "truth", "Trained on Alice-easy, scored on Bob-hard disagreements")
            + _chart(res, "AE", "AE", "truth", "Trained on Alice-easy, scored on Alice-easy (in distribution)")
            + _chart(res, "A", "A", "truth", "Trained on Alice, scored on Alice (contrast methods read answer pairs)")
            + note(
                "Supervised methods (logistic, mean_diff, lda) read the statement's last token; CCS, CRC and "
                "VINC read the appended answer token of the contrast pair. Sign and scale of every method are "
                "fitted on its training rows (Platt scaling), never on these evaluation rows."
            ),
        ),
        *([Section("AUROC vs position", _position_tables(res["positions"]))] if res["positions"] else []),
        Section(
            "Transfer, EIL and PGR",
            table_html(res["pgr"])
            + note(
                f"Best supervised PGR: A→B {best_pgr['A→B']['pgr']:.3f} ({best_pgr['A→B']['method']}), AE→BH "
                f"{best_pgr['AE→BH']['pgr']:.3f} ({best_pgr['AE→BH']['method']}). PGR = (transfer − floor) / "
                "(ceiling − floor) at the reporter's earliest informative layer (EIL), chosen on its own "
                "in-distribution AUROC (A→A, AE→AE, B→B vs Bob's labels); floor and ceiling are final-site "
                "logistic regression (B→B or B→BH vs truth; A→A or A→AH). Intervals: 1000-resample "
                "percentile bootstrap over test rows."
            )
            + "<h3>EIL per reporter</h3>"
            + table_html([{"reporter": k, "EIL site": v} for k, v in res["eil"].items()]),
        ),
        Section(
            "All transfer AUROCs",
            _transfer_heatmap(res, "truth")
            + _transfer_heatmap(res, "bob")
            + note(
                "Every (training set, method) × evaluation subset × labels (truth = Alice's labels, bob = Bob's "
                "labels) × site. Red: reads the labels (AUROC near 1); white: chance (0.5); blue: reads them "
                "inverted; grey: n/a (one class only). Hover a cell for its value."
            )
            + folded(f"The full table ({len(res['auroc'])} rows, one column per site)", table_html(res["auroc"])),
        ),
        Section(
            "Anomaly detection",
            table_html(res["anomaly"])
            + note(
                "A Gaussian on the AE-trained reporter's per-layer log-odds (layers 1..L), fitted on the AE test "
                "rows; AUROC of telling Alice-hard (normal) from Bob-hard (anomalous) statements."
            ),
        ),
        Section(
            "What the unsupervised methods found",
            table_html(res["features"])
            + note(
                "AUROC of each A-trained reporter's score for candidate features of the statement, at the site "
                "where it is farthest from 0.5 (@site index). 0.5 = not read; near 0 or 1 = read."
            )
            + "<h3>Distractor variant (Farquhar et al.)</h3>"
            + table_html(res["rigor"]["distractor"])
            + note(
                "Each pair gets one of two words after its answer, by a coin independent of truth and swapped "
                "between the halves: a negation-consistent nuisance feature. AUROC vs distractor far from 0.5 "
                "(either side: the sign comes from truth labels, which are independent of the coin) means the "
                "method reads the coin. Logistic regression is supervised on the same pair differences."
            )
            + "<h3>CCS seed stability (distractor pairs, final site)</h3>"
            + table_html(res["rigor"]["seed_stability"])
            + "".join(
                f"<h3>Random-direction floor (AE → {escape(subset)})</h3>" + table_html(rows)
                for subset, rows in res["floor"].items()
            )
            + note(
                "AUROC quantiles over 1000 Gaussian directions, each with its sign fixed on the Alice-easy "
                "training rows (never on these evaluation rows); the summary sets each probe beside them."
            ),
        ),
        Section(
            "Causal checks",
            table_html(causal)
            + note(
                "Steering: the reporter's axis scaled to the training class-mean gap is added to false Alice "
                "statements (→ true) or subtracted from true ones (→ false) at the last token; NIE = the fraction "
                "of the clean P(True) − P(False) gap closed (geometry-of-truth). Random: a Gaussian direction of "
                "the same norm. LEACE erasure: the truth concept erased at the last token (eraser fitted on "
                "Alice-easy training rows); output AUROC vs truth before and after. Bob columns: mean answer "
                "log-odds on "
                "Bob-hard disagreements (truth true / false) before and after adding the direction."
            ),
        ),
    ]
