"""Are two finished runs of one spec the same numbers? ``metrics.json`` and every CSV table compared
byte for byte (a script for refactors, issue 15: "the same specs give byte-identical metrics.json").

    python benchmarks/same_metrics.py RUN_BEFORE RUN_AFTER [--rename OLD=NEW ...]

``--rename`` applies a documented renaming to the *before* files first (a JSON string or CSV cell, or
its first space-separated word; longest first), for a refactor whose only change is a name. Exit status 0
when everything matches.
"""

import argparse
import re
import sys
from pathlib import Path


def renamed(text: str, renames: list[tuple[str, str]]) -> str:
    for old, new in sorted(renames, key=lambda r: -len(r[0])):
        text = re.sub(rf'(?<=[",\n]){re.escape(old)}(?=[", \n])', new, text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--rename", nargs="*", default=[], help="OLD=NEW pairs applied to the before files")
    args = p.parse_args()
    renames = [tuple(r.split("=", 1)) for r in args.rename]
    files = sorted(
        {"metrics.json", *(f.name for f in args.before.glob("*.csv")), *(f.name for f in args.after.glob("*.csv"))}
    )
    ok = True
    for name in files:
        a, b = args.before / name, args.after / name
        if not a.is_file() or not b.is_file():
            print(f"{name}: only in {'after' if b.is_file() else 'before'}")
            ok = False
            continue
        same = renamed(a.read_text(encoding="utf-8"), renames) == b.read_text(encoding="utf-8")
        print(f"{name}: {'identical' if same else 'DIFFERENT'} ({b.stat().st_size} bytes)")
        ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
