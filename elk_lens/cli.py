"""The ``elk-lens`` command: ``run`` an analysis, ``zoo list`` / ``zoo train`` the embedded models,
``data list`` / ``data export`` the truth datasets."""

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _check_out(flag: str, out: str) -> None:
    """An output directory: it may exist, but not as a file."""
    if Path(out).exists() and not Path(out).is_dir():
        raise NotADirectoryError(f"{flag} {out!r} is a file; give a directory to write into")


def _zoo_list(_: argparse.Namespace) -> int:
    from elk_lens.zoo import zoo_card, zoo_names

    for name in zoo_names():
        card = zoo_card(name)
        print(f"zoo:{name}")
        print(f"    {card.get('summary', '(no card)')}")
        for key, value in {**card.get("notes", {}), **card.get("measured", {})}.items():
            print(f"    {key}: {value}")
    return 0


def _zoo_train(args: argparse.Namespace) -> int:
    from elk_lens._checks import check_number
    from elk_lens._progress import progress_to
    from elk_lens.quirky.card import measure_and_write_cards
    from elk_lens.quirky.recipe import QuirkyRecipe, train_quirky

    if args.name != "quirky-arith":
        raise SystemExit(f"elk-lens zoo train: unknown recipe {args.name!r}; valid: ['quirky-arith']")
    _check_out("--out", args.out)
    check_number("--seed", args.seed, kind=int, low=0)
    check_number("--threads", args.threads, kind=int, low=1)
    started = time.perf_counter()
    recipe = QuirkyRecipe(seed=args.seed, threads=args.threads, device=args.device)
    with progress_to(sys.stderr):
        written = train_quirky(recipe, Path(args.out), log=lambda msg: print(msg, file=sys.stderr))
    measure_and_write_cards(written, wall_seconds=time.perf_counter() - started)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _data_list(_: argparse.Namespace) -> int:
    from elk_lens.data.truth_datasets import TRUTH_SETS

    for name, spec in TRUTH_SETS.items():
        print(f"{name}  ({spec.topic}; {', '.join(spec.sources)})\n    {spec.template}\n    {spec.rules}")
    return 0


def _data_export(args: argparse.Namespace) -> int:
    from elk_lens._checks import check_number
    from elk_lens.data.truth_datasets import TRUTH_SETS, export_truth_set

    unknown = [n for n in args.sets if n not in TRUTH_SETS]
    if unknown:
        raise SystemExit(f"elk-lens data export: unknown datasets {unknown}; valid: {sorted(TRUTH_SETS)}")
    _check_out("out", args.out)
    check_number("--seed", args.seed, kind=int, low=0)
    for name in args.sets or TRUTH_SETS:
        csv_path, _ = export_truth_set(name, args.out, seed=args.seed)
        print(csv_path)
    return 0


def _run(args: argparse.Namespace) -> int:
    from elk_lens._progress import progress_to
    from elk_lens.runner import run_analysis

    with progress_to(sys.stderr):  # stages and progress as lines, also when stderr is a log file
        run_dir = run_analysis(Path(args.config), runs_root=Path(args.runs), run_name=args.name, device=args.device)
    print(json.dumps({"run_dir": str(run_dir), "report": str(run_dir / "report.html")}))
    print(f"report: {run_dir / 'report.html'}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elk-lens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an analysis spec (TOML) into a run directory with report.html")
    run.add_argument("config", help="analysis spec, e.g. analyses/quirky_elk.toml")
    run.add_argument("--runs", default="runs", help="parent directory of run directories")
    run.add_argument("--name", default=None, help="run directory name (default: the spec's name); reused to resume")
    run.add_argument("--device", default="cpu", help="torch device for every model the analysis loads: cpu, cuda, ...")
    run.set_defaults(func=_run)

    data = sub.add_parser("data", help="the truth datasets (extra 'truth')").add_subparsers(
        dest="data_command", required=True
    )
    data.add_parser("list", help="datasets with their templates and construction rules").set_defaults(func=_data_list)
    export = data.add_parser("export", help="write datasets as CSV with a card (JSON) each")
    export.add_argument("out", help="directory to write <name>.csv and <name>.card.json into")
    export.add_argument("--sets", nargs="*", default=[], help="dataset names (default: all)")
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=_data_export)

    zoo = sub.add_parser("zoo", help="the embedded models").add_subparsers(dest="zoo_command", required=True)
    zoo.add_parser("list", help="list embedded models with their cards").set_defaults(func=_zoo_list)
    train = zoo.add_parser("train", help="retrain an embedded model family from scratch (deterministic per seed)")
    train.add_argument("name", help="recipe name: quirky-arith")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="directory to write the models into")
    train.add_argument(
        "--threads", type=int, default=2, help="torch threads (the weights depend on it; the zoo used 1)"
    )
    train.add_argument("--device", default="cpu")
    train.set_defaults(func=_zoo_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` defaults to ``sys.argv[1:]`` (tests pass a list). Bad input (a bad spec, a
    path that is not what it should be, a missing extra) ends with its message, not a traceback."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError) as e:
        command = " ".join(
            x for x in (args.command, getattr(args, "zoo_command", None), getattr(args, "data_command", None)) if x
        )
        raise SystemExit(f"elk-lens {command}: {e}") from e


if __name__ == "__main__":
    raise SystemExit(main())
