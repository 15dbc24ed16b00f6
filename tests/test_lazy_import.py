"""``import elk_lens`` is lazy (issue 18, item 4): the public names load on first use, as the stubs list them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import elk_lens
import elk_lens.data

PACKAGES = {"elk_lens": elk_lens, "elk_lens.data": elk_lens.data}


def _stub_all(package) -> list[str]:
    """``__all__`` as written in the package's ``__init__.pyi`` (what type checkers and the docs read)."""
    tree = ast.parse(Path(package.__file__).with_suffix(".pyi").read_text())
    (names,) = [node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "__all__"]
    return ast.literal_eval(names)


@pytest.mark.parametrize("name", list(PACKAGES))
def test_the_stubs_all_is_the_lazy_all_and_every_name_resolves(name):
    package = PACKAGES[name]
    assert _stub_all(package) == sorted(package.__all__)
    for attr in package.__all__:
        assert getattr(package, attr) is not None, attr
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018


def test_the_function_capture_is_not_shadowed_by_its_module():
    import elk_lens.capturing

    assert callable(elk_lens.capture) and elk_lens.capture is elk_lens.capturing.capture


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    ["import elk_lens", "from elk_lens.cli import main", "from elk_lens.data.truth_datasets import TRUTH_SETS"],
)
def test_the_command_line_and_data_list_load_neither_torch_nor_transformer_lens(code):
    loaded = _modules_after(code)
    assert "torch" not in loaded and "transformer_lens" not in loaded
