"""The bad-input catalogue (issue 13): every case of tests/bad_inputs/, by area.

Each case asserts the error's type and that its message names the problem, or that the result equals
the correct one. Areas: models, data, capture, cache, reporters, specs/CLI, training, trajectories,
growth, circuits, reports.
"""

import importlib
import pkgutil
import re

import bad_inputs
import pytest
from bad_inputs import Case, Env
from conftest import boot_native

AREAS = sorted(m.name for m in pkgutil.iter_modules(bad_inputs.__path__))
CASES: list[Case] = [c for area in AREAS for c in importlib.import_module(f"bad_inputs.{area}").CASES]


@pytest.fixture(scope="module")
def catalogue_model(char_tok_dir):
    return boot_native(char_tok_dir)


def test_case_ids_are_unique_and_many():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 80, f"the catalogue holds {len(CASES)} cases; issue 13 asks for at least 80"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, char_tok_dir, catalogue_model):
    env = Env(tmp=tmp_path, tok_dir=char_tok_dir, model=catalogue_model)
    if case.error is None:
        case.check(case.run(env), env)
        return
    with pytest.raises(case.error) as info:
        case.run(env)
    assert re.search(case.match, str(info.value), re.S), f"message does not name the problem: {info.value}"
