"""The README stays a short front page whose links resolve, and every citation of a docs page in the code
names a page and a section that exist (``mkdocs build --strict`` checks the links inside docs/ itself)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_LIMIT = 10_000  # bytes: what a newcomer reads on one or two screens; the rest lives in docs/
CITING = ["elk_lens", "tests", "hooks", "benchmarks", "analyses", "notebooks"]
# a page, then one or more sections: "docs/methods/elk_methods.md §1, §2.1, §3.0-3.3" (not a URL's docs/)
CITATION = re.compile(r"(?<![/\w])(docs/[\w/-]+\.md)`*((?:,?\s*§\d+(?:\.\d+)?(?:[-–]\d+(?:\.\d+)?)?)*)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)(?:[-–](\d+(?:\.\d+)?))?")
METHOD_PAGES = (
    "elk_methods",
    "drift_growth_circuits",
    "transformer_lens_4_3",
    "offline_data",
    "quirky_recipe",
    "quirky_real_lm",
)
# a method page named without its docs/methods/ folder, or the notes outside the repository it was made from
OUTSIDE = re.compile(rf"shared/notes|(?<![/\w])({'|'.join(METHOD_PAGES)})\.md")


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for folder in CITING:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".toml", ".ipynb"} or "__pycache__" in path.parts:
                continue
            for match in CITATION.finditer(path.read_text(encoding="utf-8")):
                sections = [s for m in SECTION.finditer(match.group(2)) for s in m.groups() if s]
                found += [(str(path.relative_to(ROOT)), match.group(1), s) for s in sections or [""]]
    return sorted(set(found))


def _has_section(page: str, number: str) -> bool:
    """``## 8. ...`` for §8; ``### 8.2 ...`` for §8.2, or item ``15.`` of section 9's list for §9.15."""
    major, _, minor = number.partition(".")
    if not minor:
        return re.search(rf"^##+ {major}\.? ", page, re.M) is not None
    if re.search(rf"^##+ {major}\.{minor}\b", page, re.M):
        return True
    body = re.split(rf"^## {major}\. .*$", page, flags=re.M)
    return len(body) == 2 and re.search(rf"^{minor}\. ", body[1].split("\n## ")[0], re.M) is not None


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move detail into docs/"


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert targets and not missing, f"README.md links to missing files: {missing}"


def test_code_cites_no_notes_outside_the_repository():
    stale = [
        f"{path}: {line.strip()}"
        for folder in CITING
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != Path(__file__).resolve()
        for line in path.read_text(encoding="utf-8").splitlines()
        if OUTSIDE.search(line)
    ]
    assert not stale, "cite the in-repo page (docs/methods/...):\n" + "\n".join(stale)


@pytest.mark.parametrize("source, page, section", _citations())
def test_cited_section_exists(source, page, section):
    path = ROOT / page
    assert path.is_file(), f"{source} cites {page}, which does not exist"
    if section:
        assert _has_section(path.read_text(encoding="utf-8"), section), f"{source} cites {page} §{section}: none there"
