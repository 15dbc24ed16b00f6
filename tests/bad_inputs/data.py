"""Bad statement files and statement sets: every error names the file (and line and row) or the argument."""

import json

import numpy as np
import torch

from bad_inputs import Case, Env
from elk_lens.data import StatementSet, load_statements
from elk_lens.quirky import quirky_arithmetic, quirky_cities, quirky_nl_arithmetic
from elk_lens.token_stream import TokenStream

CLEAN_CSV = "text,label,topic\nParis is in France.,1,geo\nParis is in Peru.,false,geo\n"


def _load(name: str, body: str | bytes, **kwargs):
    def run(env: Env):
        path = env.tmp / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        return load_statements(path, **kwargs)

    return run


def _jsonl(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _same_as_clean(result, env: Env) -> None:
    (env.tmp / "clean.csv").write_text(CLEAN_CSV)
    clean = load_statements(env.tmp / "clean.csv")
    assert result.texts == clean.texts and torch.equal(result.truth, clean.truth)
    assert {k: v.tolist() for k, v in result.meta.items()} == {k: v.tolist() for k, v in clean.meta.items()}


def _mkdir(env: Env):
    (env.tmp / "facts.csv").mkdir()
    return load_statements(env.tmp / "facts.csv")


CASES = [
    Case(
        "data/non-utf8-csv",
        _load("facts.csv", b"text,label\nParis.,1\nCaf\xe9.,0\n"),
        ValueError,
        r"facts\.csv.*not UTF-8.*line 3",
        finding=True,
    ),
    Case(
        "data/malformed-jsonl-line",
        _load("facts.jsonl", _jsonl({"text": "a.", "label": 1}, '{"text": "b",')),
        ValueError,
        r"facts\.jsonl:2: .*not valid JSON",
        finding=True,
    ),
    Case(
        "data/jsonl-line-not-an-object",
        _load("facts.jsonl", _jsonl({"text": "a.", "label": 1}, [1, 2])),
        ValueError,
        r"facts\.jsonl:2: .*JSON object.*got list",
    ),
    Case(
        "data/jsonl-duplicate-key",
        _load("facts.jsonl", '{"text": "a.", "text": "b.", "label": 1}\n'),
        ValueError,
        r"facts\.jsonl:1: .*duplicate key 'text'",
    ),
    Case(
        "data/duplicate-csv-columns",
        _load("facts.csv", "text,label,text\na.,1,b.\n"),
        ValueError,
        r"facts\.csv.*duplicate column.*'text'",
        finding=True,
    ),
    Case(
        "data/null-text-jsonl",
        _load("facts.jsonl", _jsonl({"text": "a.", "label": 1}, {"text": None, "label": 0})),
        ValueError,
        r"facts\.jsonl:2: row 1: no text in column 'text'",
        finding=True,
    ),
    Case(
        "data/empty-text-csv",
        _load("facts.csv", "text,label\na.,1\n,0\n"),
        ValueError,
        r"facts\.csv:3: row 1: no text in column 'text'",
        finding=True,
    ),
    Case(
        "data/missing-text-key-jsonl",
        _load("facts.jsonl", _jsonl({"text": "a.", "label": 1}, {"label": 0})),
        ValueError,
        r"facts\.jsonl:2: row 1: no text in column 'text'",
    ),
    Case(
        "data/number-text-jsonl",
        _load("facts.jsonl", _jsonl({"text": 5, "label": 1})),
        ValueError,
        r"facts\.jsonl:1: row 0: column 'text' must hold a string; got int 5",
    ),
    Case(
        "data/list-text-jsonl",
        _load("facts.jsonl", _jsonl({"text": ["a", "b"], "label": 1})),
        ValueError,
        r"facts\.jsonl:1: row 0: column 'text' must hold a string; got list",
    ),
    Case(
        "data/extra-cells-csv",
        _load("facts.csv", "text,label\na.,1\nb.,0,oops\n"),
        ValueError,
        r"facts\.csv:3: row 1: 3 cells for the 2 columns of the header",
    ),
    Case(
        "data/bad-label-names-file-and-row",
        _load("facts.csv", "text,label\na.,1\nb.,maybe\n"),
        ValueError,
        r"facts\.csv:3: row 1: label column 'label' has 'maybe'; valid labels",
    ),
    Case(
        "data/label-outside-0-1-jsonl",
        _load("facts.jsonl", _jsonl({"text": "a.", "label": 2})),
        ValueError,
        r"facts\.jsonl:1: row 0: label column 'label' has 2",
    ),
    Case("data/empty-file", _load("facts.csv", ""), ValueError, r"facts\.csv holds no statements"),
    Case("data/header-only-csv", _load("facts.csv", "text,label\n"), ValueError, r"facts\.csv holds no statements"),
    Case("data/directory-not-file", _mkdir, IsADirectoryError, r"facts\.csv is a directory, not a statement file"),
    Case(
        "data/template-positional-field",
        _load("facts.csv", CLEAN_CSV, template="{0} True?"),
        ValueError,
        r"template '\{0\} True\?'.*named columns.*\['text', 'label', 'topic'\]",
    ),
    Case(
        "data/same-text-and-label-column",
        _load("facts.csv", CLEAN_CSV, text_column="label"),
        ValueError,
        r"text_column and label_column are both 'label'",
    ),
    Case("data/csv-with-bom-reads-clean", _load("facts.csv", "\ufeff" + CLEAN_CSV), check=_same_as_clean),
    Case("data/csv-with-crlf-reads-clean", _load("facts.csv", CLEAN_CSV.replace("\n", "\r\n")), check=_same_as_clean),
    Case(
        "data/statementset-bare-string-texts",
        lambda env: StatementSet("abc", torch.ones(3, dtype=torch.bool)),
        TypeError,
        r"texts must be a list of statements, got a single str",
    ),
    Case(
        "data/statementset-truth-not-a-tensor",
        lambda env: StatementSet(["a.", "b."], [True, False]),
        TypeError,
        r"truth must be a bool torch tensor.*got list",
    ),
    Case(
        "data/statementset-int-truth",
        lambda env: StatementSet(["a.", "b."], torch.tensor([1, 0])),
        ValueError,
        r"truth must be a bool tensor of shape \(2,\), got dtype torch.int64",
    ),
    Case(
        "data/statementset-meta-2d",
        lambda env: StatementSet(["a.", "b."], torch.tensor([True, False]), {"x": np.zeros((2, 3))}),
        ValueError,
        r"meta column 'x' must be one value per row.*shape \(2, 3\)",
    ),
    Case("data/quirky-float-n", lambda env: quirky_arithmetic(2.5), TypeError, r"n must be an int; got 2\.5"),
    Case(
        "data/quirky-string-seed",
        lambda env: quirky_arithmetic(2, seed="7"),
        TypeError,
        r"seed must be an int; got '7'",
    ),
    Case(
        "data/quirky-cities-unknown-task",
        lambda env: quirky_cities(2, task="capitals"),
        ValueError,
        r"task must be one of \['hemisphere', 'population'\]; got 'capitals'",
    ),
    Case(
        "data/quirky-cities-n-over-split",
        lambda env: quirky_cities(10**6, task="hemisphere", split="val"),
        ValueError,
        r"n must be at most the \d+ cities of split 'val'; got 1000000",
    ),
    Case(
        "data/quirky-nl-arithmetic-unknown-split",
        lambda env: quirky_nl_arithmetic(2, split="dev"),
        ValueError,
        r"split must be one of \['train', 'val', 'test'\]; got 'dev'",
    ),
    Case(
        "data/token-stream-bare-string-texts",
        lambda env: TokenStream.from_texts(env.model, "one long document"),
        TypeError,
        r"texts must be a list of statements, got a single str",
    ),
    Case(
        "data/token-stream-float-context",
        lambda env: TokenStream(torch.arange(40), 8.0),
        TypeError,
        r"context must be an int; got 8\.0",
    ),
]
