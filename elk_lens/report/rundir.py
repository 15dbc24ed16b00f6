"""Self-describing run directories: config, manifest, metrics, tables, and resumable stages."""

import csv
import io
import json
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from safetensors.torch import load_file, save
from torch import Tensor

from elk_lens._atomic import atomic_write_bytes, atomic_write_text

__all__ = ["RunDir", "csv_text", "environment"]

_PACKAGES = ("elk-lens", "transformer-lens", "torch", "transformers", "tokenizers", "numpy", "safetensors")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def csv_text(rows: Sequence[dict]) -> str:
    """CSV of dict rows; the columns are the union of the rows' keys (missing cells left blank)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def environment() -> dict:
    """Versions and revision a result depends on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git_revision": _git_revision()}  # fmt: skip


class RunDir:
    """A run directory. Each stage's JSON result is saved when it finishes, so a killed run resumes."""

    def __init__(self, path: Path, config_text: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        saved = path / "config.toml"
        if saved.is_file() and saved.read_text() != config_text:
            raise ValueError(
                f"run directory {path} already holds a run of a different config; "
                f"pick another name (--name) or delete the directory"
            )
        atomic_write_text(saved, config_text)
        self.timings: dict[str, float] = {}
        self.resumed: list[str] = []

    def stage(self, name: str, compute: Callable[[], dict]) -> dict:
        """Return the saved result of stage ``name``, or compute and save it."""
        path = self.path / "stages" / f"{name}.json"
        if path.is_file():
            self.resumed.append(name)
            return json.loads(path.read_text())
        started = time.perf_counter()
        result = compute()
        self.timings[name] = round(time.perf_counter() - started, 2)
        atomic_write_text(path, json.dumps(result, indent=2))
        return result

    def tensor_stage(self, name: str, compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """As :meth:`stage`, for a result of named tensors (saved as safetensors, atomically)."""
        path = self.path / "stages" / f"{name}.safetensors"
        if path.is_file():
            self.resumed.append(name)
            return load_file(str(path))
        started = time.perf_counter()
        result = compute()
        self.timings[name] = round(time.perf_counter() - started, 2)
        # clone: safetensors refuses tensors that share storage (e.g. a view of another result tensor)
        atomic_write_bytes(path, save({k: v.detach().clone().contiguous() for k, v in result.items()}))
        return result

    def write_json(self, name: str, obj: object) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(obj, indent=2, default=str))
        return path

    def write_csv(self, name: str, rows: Sequence[dict]) -> Path:
        path = self.path / name
        atomic_write_text(path, csv_text(rows))
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        atomic_write_text(path, text)
        return path
