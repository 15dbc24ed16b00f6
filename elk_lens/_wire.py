"""Results sent between ranks as bytes, without pickle: a JSON tree whose tensors travel in one safetensors
buffer beside it.

``torch.distributed``'s object collectives pickle, and unpickling runs whatever the bytes name. Here a
rank's message is data only — JSON scalars, strings, lists, tuples, string-keyed dicts, tensors and
:class:`~elk_lens.reporters.Reporter` artifacts — so bytes from anywhere can at worst fail to decode. Nothing
is rounded: a float goes through JSON as Python's shortest repr, which reads back to the same float, and a
tensor's bytes go as they are (on the CPU).
"""

import json

from safetensors.torch import load, save
from torch import Tensor

from elk_lens._tensor_files import aligned

__all__ = ["pack", "unpack"]

_TREE = "tree"  # the safetensors metadata key that holds the JSON tree


def pack(tree: object) -> bytes:
    """``tree`` as bytes for :func:`unpack`; a value of any other type is a TypeError naming it and its place."""
    tensors: dict[str, Tensor] = {}

    def enc(x: object, where: str) -> object:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, Tensor):
            name = str(len(tensors))
            tensors[name] = x.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
            return {"tensor": name}
        if isinstance(x, (list, tuple)):
            return {"list" if isinstance(x, list) else "tuple": [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, dict):
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise TypeError(f"{where}: dict keys sent between ranks must be strings; got {bad[0]!r}")
            return {"dict": {k: enc(v, f"{where}[{k!r}]") for k, v in x.items()}}
        from elk_lens.reporters.base import Reporter  # here: the reporters package needs nothing from this one

        if isinstance(x, Reporter):
            fields = {"w": x.w, "v": x.v, "b": x.b, "method": x.method, "site": x.site, "reads": x.reads}
            return {"reporter": enc({**fields, "provenance": x.provenance}, where)}
        raise TypeError(
            f"{where}: a {type(x).__name__} cannot be sent between ranks; send JSON values, tuples, tensors "
            "or reporters"
        )

    text = json.dumps(enc(tree, "result"))
    return save(tensors, metadata={_TREE: text})


def unpack(data: bytes) -> object:
    """The tree :func:`pack` made ``data`` from."""
    tensors = aligned(load(data))  # at their offsets in ``data``: MKL would compute on them differently
    text = _metadata(data)

    def dec(x: object) -> object:
        if not isinstance(x, dict):
            return x
        ((kind, value),) = x.items()
        if kind == "tensor":
            return tensors[value]
        if kind == "list":
            return [dec(v) for v in value]
        if kind == "tuple":
            return tuple(dec(v) for v in value)
        if kind == "dict":
            return {k: dec(v) for k, v in value.items()}
        if kind == "reporter":
            from elk_lens.reporters.base import Reporter

            return Reporter(**dec(value))
        raise ValueError(f"bytes from another rank hold an unknown kind {kind!r}")

    return dec(json.loads(text))


def _metadata(data: bytes) -> str:
    """The JSON tree in a safetensors buffer's header (8 bytes of header length, then the header)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length])["__metadata__"][_TREE]
