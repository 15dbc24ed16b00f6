"""Property tests of the spec check (issue 13): random TOML values of random types under an analysis's
keys, plus stray keys, are either accepted or refused with a ValueError that names the key — never a
KeyError, IndexError, AttributeError or an error that does not say which key is wrong. No analysis runs.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk_lens.analyses import ANALYSES
from elk_lens.analyses.spec import spec_keys
from elk_lens.runner import load_spec

# strings a spec plausibly holds, so that values get past the type checks into the deeper ones
PLAUSIBLE = [
    "",
    "-2",
    "last",
    "content",
    "zoo:quirky-arith-base",
    "zoo:quirky-arith",
    "zoo:nope",
    "./no/such/dir",
    "~nobody",
    "blocks.1.hook_resid_pre",
    "blocks.0.hook_resid_pre",
    "blocks.9.hook_resid_post",
    "resid_mid.2",
    "blocks.x",
    "logistic",
    "mean_diff",
    "ttpd",
    "ccs",
    "cities",
    "neg_cities",
    "embed.",
    "blocks.0.",
    "blocks.7.",
    "Alice",
    "Carol",
    "twin",
    "mean",
    "grow",
    "stack",
    "random_blocks",
    "label",
    "bob_label",
    "answer",
    "stream",
    "all",
    "alice",
    "none",
]
TEXT = st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=12))
SCALAR = st.one_of(
    st.integers(-3, 10),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    TEXT,
)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=4), st.lists(TEXT, max_size=4))


def _string(text: str) -> str:
    """A TOML basic string: a JSON string, but for DEL, which TOML wants escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    return "[" + ", ".join(map(_toml, value)) + "]"


def _spec_text(name: str, analysis: str, entries: dict[tuple[str, str], object]) -> str:
    tables: dict[str, dict[str, object]] = {}
    for (table, key), value in entries.items():
        tables.setdefault(table, {})[key] = value
    lines = [f"name = {_toml(name)}", f"analysis = {_toml(analysis)}"]
    for table, keys in tables.items():
        lines.append(f"[{_string(table)}]")
        lines += [f"{_string(k)} = {_toml(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def _keys(analysis: str) -> tuple[str, ...]:
    """The dotted ``table.key`` keys of an analysis's spec (``name`` aside)."""
    return tuple(k for k in spec_keys(ANALYSES[analysis].Spec) if k != "name")


@st.composite
def specs(draw, analysis: str) -> tuple[str, list[str]]:
    """A spec's text and every dotted key it sets."""
    known = [tuple(k.split(".")) for k in _keys(analysis)]
    entries = {key: draw(VALUE) for key in draw(st.lists(st.sampled_from(known), max_size=6, unique=True))}
    tables = sorted({t for t, _ in known}) + ["extra"]
    for table, key in draw(st.lists(st.tuples(st.sampled_from(tables), st.text(min_size=1, max_size=8)), max_size=2)):
        entries.setdefault((table, key), draw(VALUE))
    name = draw(st.one_of(st.just("fuzz"), st.text(max_size=10)))
    return _spec_text(name, analysis, entries), [f"{t}.{k}" for t, k in entries] + ["name"]


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_spec_check_accepts_or_names_the_key(analysis, data, tmp_path):
    text, keys = data.draw(specs(analysis))
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)  # parses and checks
    except ValueError as e:
        named = keys + list(_keys(analysis))
        assert any(repr(k) in str(e) for k in named), (str(e), text)


WRONG_TYPES = [0, 1.5, True, "x", [0], ["x"], [[0]]]


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_every_key_given_every_type_is_accepted_or_named(analysis, tmp_path):
    """Every key of every analysis meets a value of every TOML type, deterministically (the property
    test above samples keys; a union-typed list key once raised an AttributeError that it missed). A spec
    this sparse may be refused for another key it lacks, so any key named will do, as above."""
    for dotted in _keys(analysis):
        table, key = dotted.split(".")
        for value in WRONG_TYPES:
            path = tmp_path / "spec.toml"
            path.write_text(_spec_text("typed", analysis, {(table, key): value}), encoding="utf-8")
            try:
                load_spec(path)
            except ValueError as e:
                assert any(repr(k) in str(e) for k in _keys(analysis)), (dotted, value, str(e))


_HUGE_INTS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))  # a check that builds per-value data fails here
sys.path[:0] = sys.argv[2:]
from pathlib import Path
from test_fuzz_specs import _keys, _spec_text
from elk_lens.analyses import ANALYSES
from elk_lens.runner import load_spec
path = Path(sys.argv[1]) / "huge.toml"
for analysis in sorted(ANALYSES):
    for dotted in _keys(analysis):
        table, key = dotted.split(".")
        path.write_text(_spec_text("huge", analysis, {(table, key): 2**62}))
        try:
            load_spec(path)
        except ValueError:
            pass
"""


def test_a_huge_count_is_refused_before_the_check_builds_anything(tmp_path):
    """2**62 under every key, in a process with 4 GiB of address space: the hypothesis test above once drew
    2**40 drift.probe_rows, and the check built that many statements until the machine killed the test run."""
    import subprocess
    import sys
    from pathlib import Path

    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", _HUGE_INTS, str(tmp_path), here], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
