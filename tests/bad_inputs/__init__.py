"""The bad-input catalogue (issue 13): one `Case` per bad input or fault, run by tests/test_bad_inputs.py.

Each area keeps its cases in its own module (``models.py``, ``data.py``, ``capture.py``, ...) as a list
``CASES``. A case either expects an error (its type, and a regex its message must match: the message
names the argument or file, the value and the valid choices) or a result that equals the correct one
(``check``). ``finding=True`` marks a case the independent battery found; each of those failed before
its fix.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from elk_lens._atomic import CONTENT_KEY, content_digest

__all__ = ["Case", "Env", "edit_marker"]


@dataclass
class Env:
    """What a case may use. ``model`` is shared by every case: never modify it (boot your own)."""

    tmp: Path  # a fresh empty directory for this case
    tok_dir: Path  # the tests' char tokenizer (conftest.make_char_tokenizer_dir)
    model: TransformerBridge  # the tests' tiny native model (conftest.boot_native)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One bad input: ``run(env)`` must raise ``error`` with a message matching ``match``; or, with
    ``error=None``, return a value that ``check(value, env)`` accepts (it asserts)."""

    id: str
    run: Callable[[Env], object]
    error: type[BaseException] | tuple[type[BaseException], ...] | None = None
    match: str | None = None
    check: Callable[[object, Env], None] | None = None
    finding: bool = False

    def __post_init__(self) -> None:
        if (self.error is None) == (self.check is None):
            raise ValueError(f"case {self.id}: give either error (with match) or check")
        if self.error is not None and not self.match:
            raise ValueError(f"case {self.id}: an expected error needs a message pattern (match)")


def edit_marker(file: Path, edit: Callable[[dict], object], *, reseal: bool) -> None:
    """Edit a saved directory's marker JSON in place. ``reseal=True`` records the edited content's digest
    (a consistent but wrong marker, as a buggy tool would write: the checks after the digest are what is
    tested); ``reseal=False`` leaves the old digest (a hand edit, which the digest itself must catch)."""
    meta = json.loads(file.read_text())
    edit(meta)
    if reseal and CONTENT_KEY in meta:
        meta[CONTENT_KEY] = content_digest({k: v for k, v in meta.items() if k != CONTENT_KEY})
    file.write_text(json.dumps(meta))
