"""A few metadata values of a GGUF file, read without parsing the rest.

``gguf.GGUFReader`` turns every element of every metadata array into numpy views: for Gemma 3's
262k-token vocabulary (tokens, scores, types) that is 22 s on one core, to learn two values (measured,
issue 14). This reader walks the key-value section of the GGUF layout (the specification,
https://github.com/ggml-org/ggml/blob/master/docs/gguf.md: little-endian ``GGUF``, version, tensor count,
key-value count, then per key a length-prefixed string, a type code and the value), returning the
scalar or string values of the keys asked for and stepping over everything else, arrays included, by
their lengths alone.
"""

import mmap
import struct
from pathlib import Path

__all__ = ["read_metadata"]

# GGUF value type codes -> struct format of one value (8: string, 9: array are handled apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.at + n > len(self.data):
            raise ValueError(f"a string of {n} bytes at offset {self.at} runs past the end of the file")
        value = self.data[self.at : self.at + n].decode("utf-8")
        self.at += n
        return value

    def skip(self, kind: int) -> None:
        if kind in _SCALARS:
            self.at += struct.calcsize(_SCALARS[kind])
        elif kind == _STRING:
            length = self.take("<Q")  # (not `self.at += self.take(...)`: that adds to the value before the take)
            self.at += length
        elif kind == _ARRAY:
            item, count = self.take("<I"), self.take("<Q")
            if item in _SCALARS:
                self.at += count * struct.calcsize(_SCALARS[item])
            else:
                for _ in range(count):
                    self.skip(item)
        else:
            raise ValueError(f"unknown GGUF value type {kind} at offset {self.at}")
        if self.at > len(self.data):
            raise ValueError("a value runs past the end of the file")


def read_metadata(path: Path, keys: set[str]) -> dict[str, object]:
    """The values of ``keys`` (scalars and strings) that the GGUF at ``path`` holds; keys it lacks are absent.

    Raises ``ValueError`` for a file that is not a little-endian GGUF of version 2 or 3, is truncated
    inside its metadata, or holds an array under one of ``keys``.
    """
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cursor = _Cursor(data)
        try:
            if data[:4] != b"GGUF":
                raise ValueError("it does not start with the GGUF magic")
            cursor.at = 4
            version = cursor.take("<I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} (elk-lens reads 2 and 3, little-endian)")
            cursor.take("<Q")  # tensor count
            found: dict[str, object] = {}
            for _ in range(cursor.take("<Q")):
                key, kind = cursor.string(), cursor.take("<I")
                if key not in keys:
                    cursor.skip(kind)
                elif kind == _STRING:
                    found[key] = cursor.string()
                elif kind in _SCALARS:
                    found[key] = cursor.take(_SCALARS[kind])
                else:
                    raise ValueError(f"{key} holds a value of GGUF type {kind}, not a scalar or string")
                if len(found) == len(keys):
                    break
            return found
        except (struct.error, UnicodeDecodeError) as e:
            raise ValueError(f"its metadata ends early or is garbled ({e})") from None
