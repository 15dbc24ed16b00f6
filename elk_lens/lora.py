"""LoRA (Hu et al. 2021, arXiv:2106.09685) on a TransformerBridge's block projections, for
:func:`elk_lens.train.fine_tune` (``docs/methods/lora.md``).

Each target projection ``W`` (``out x in``) of every block gets ``A`` (``rank x in``) and ``B`` (``out x
rank``); its output becomes ``W x + (alpha / rank) B A dropout(x)``. The low-rank term is added by a
forward hook on the ``nn.Linear`` the bridge's ``LinearBridge`` wraps, so TransformerLens's hooks around
the projection (``hook_q``, ``hook_z``, ``mlp.hook_pre``...) see the adapted values and the model's own
weights and state dict stay as they are. ``B`` starts at zero, so the adapted model starts as the base
model exactly; ``A`` is uniform in ``±1/sqrt(in)`` (peft's Kaiming default), drawn from a generator of its
own seed. A checkpoint saves :func:`merge`'s ``W + (alpha / rank) B A``: a plain model of the base
architecture, which every analysis reads like any other.

Not peft: peft 0.21 wraps the linears (hooks still fire), but the bridge's state dict then names every
wrapped weight ``...q.base_layer.weight`` and leaves the adapters out, and after ``merge_and_unload`` it
still does, so neither the merged model nor the adapters would round-trip (``docs/methods/lora.md §1``).
"""

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._atomic import atomic_write_bytes, sha256_file
from elk_lens._checks import check_number
from elk_lens._fingerprint import fingerprint
from elk_lens.trajectory import Trajectory

__all__ = ["TARGETS", "Lora", "LoraConfig", "adapters_at", "lora_record", "merge"]

TARGETS = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out")
"""The projections of a block LoRA can adapt, by their TransformerLens names (``mlp.in`` is Llama's
``up_proj``, ``mlp.gate`` its ``gate_proj``, ``mlp.out`` its ``down_proj``)."""


@dataclass(frozen=True)
class LoraConfig:
    """The adapters :func:`elk_lens.train.fine_tune` trains (``lora=``); checked when built.

    ``rank`` r and ``alpha`` scale the update by ``alpha / rank``; ``dropout`` (on the adapters' input,
    during training only) is off by default; ``targets`` are the projections adapted in every block.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        check_number("LoraConfig.rank", self.rank, kind=int, low=1)
        check_number("LoraConfig.alpha", self.alpha, low=0, low_open=True)
        check_number("LoraConfig.dropout", self.dropout, low=0, high=1, high_open=True)
        targets = self.targets
        if (
            not isinstance(targets, tuple)
            or not targets
            or any(t not in TARGETS for t in targets)
            or len(set(targets)) != len(targets)
        ):
            raise ValueError(
                f"LoraConfig.targets must be a non-empty tuple of distinct projections from {list(TARGETS)}; "
                f"got {targets!r}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def merge(state: Mapping[str, Tensor], adapters: Mapping[str, Tensor], config: LoraConfig) -> dict[str, Tensor]:
    """``state`` (a model's state dict) with every adapted ``<name>.weight`` replaced by
    ``W + (alpha / rank) B A``, from ``adapters`` as :meth:`Lora.tensors` names them."""
    out = dict(state)
    for key in adapters:
        if not key.endswith(".lora_A"):
            continue
        name = key.removesuffix(".lora_A")
        w = state[f"{name}.weight"]
        out[f"{name}.weight"] = w + config.scale * (adapters[f"{name}.lora_B"].to(w) @ adapters[key].to(w))
    return out


class Lora(nn.Module):
    """The adapters of one model: ``A`` and ``B`` for each target projection of every block, in block
    order, named ``"blocks.<i>.<target>"``. Attach them with :meth:`attached`."""

    def __init__(self, model: TransformerBridge, config: LoraConfig, *, seed: int = 0):
        super().__init__()
        self.config = config
        self.linears = _linears(model, config.targets)  # a plain dict: the model's modules are not ours
        gen = torch.Generator().manual_seed(seed)
        self.A, self.B = nn.ParameterList(), nn.ParameterList()
        for linear in self.linears.values():
            w, bound = linear.weight, 1 / math.sqrt(linear.in_features)
            a = (torch.rand(config.rank, linear.in_features, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            self.A.append(nn.Parameter(a.to(w.device, w.dtype)))
            self.B.append(nn.Parameter(torch.zeros(linear.out_features, config.rank, device=w.device, dtype=w.dtype)))
        self._fired: set[str] = set()

    def tensors(self) -> dict[str, Tensor]:
        """The adapters by name (``"blocks.0.attn.q.lora_A"``), as saved beside each checkpoint."""
        out = {}
        for name, a, b in zip(self.linears, self.A, self.B, strict=True):
            out[f"{name}.lora_A"], out[f"{name}.lora_B"] = a.detach(), b.detach()
        return out

    def load(self, tensors: Mapping[str, Tensor]) -> None:
        """Set the adapters from :meth:`tensors`' names and shapes (anything else is an error)."""
        own = self.tensors()
        if set(tensors) != set(own) or any(tensors[k].shape != v.shape for k, v in own.items()):
            raise ValueError(
                f"the saved adapters do not fit these: {len(tensors)} tensors for {len(own)} "
                f"(e.g. {next(iter(own))} {tuple(next(iter(own.values())).shape)})"
            )
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(tensors[k])

    def save(self, path: Path, step: int) -> dict:
        """Write the adapters to ``path`` (safetensors, atomically, their config in its metadata); returns
        the record a trajectory keeps of them (``step``, ``file``, ``sha256``)."""
        tensors = {k: v.cpu().contiguous().clone() for k, v in self.tensors().items()}
        blob = save(tensors, metadata={"lora": json.dumps(asdict(self.config))})
        atomic_write_bytes(path, blob)
        return {"step": step, "file": path.name, "sha256": hashlib.sha256(blob).hexdigest()}

    def merged(self, model: TransformerBridge) -> dict[str, Tensor]:
        """``model``'s state dict with the adapters merged in (detached; ``model`` holds the base weights)."""
        return merge(model.state_dict(), self.tensors(), self.config)

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Add the adapters' term to every target projection's output; removed on exit."""
        handles = [
            linear.register_forward_hook(self._hook(name, a, b))
            for name, linear, a, b in zip(self.linears, self.linears.values(), self.A, self.B, strict=True)
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def check_fired(self) -> None:
        """Raise if a target projection ran no adapter since the last check: a forward that reads a weight
        directly (TransformerLens's split-QKV paths) would train nothing there."""
        silent = [n for n in self.linears if n not in self._fired]
        self._fired.clear()
        if silent:
            raise RuntimeError(
                f"LoRA adapters never ran on {silent[:4]} ({len(silent)} in all): this forward reads the "
                f"weights without calling the projections (use_split_qkv_input, use_attn_result?)"
            )

    def _hook(self, name: str, a: Tensor, b: Tensor):
        p, scale = self.config.dropout, self.config.scale

        def hook(
            linear: nn.Linear, args: tuple[Float[Tensor, "... d_in"]], out: Float[Tensor, "... d_out"]
        ) -> Float[Tensor, "... d_out"]:
            self._fired.add(name)
            x = F.dropout(args[0], p, training=linear.training) if p else args[0]
            return out + scale * F.linear(F.linear(x, a), b)

        return hook


def _linears(model: TransformerBridge, targets: tuple[str, ...]) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` inside each target ``LinearBridge`` of every block, by name; an error names the
    first target this model lacks and those its blocks have."""
    out = {}
    for i, block in enumerate(model.blocks):
        for t in targets:
            module = _submodule(block, t)
            linear = getattr(module, "original_component", None)
            if not isinstance(linear, nn.Linear):
                have = [
                    u
                    for u in TARGETS
                    if isinstance(getattr(_submodule(block, u), "original_component", None), nn.Linear)
                ]
                raise ValueError(
                    f"LoraConfig.targets: block {i} has no linear projection {t!r} (a "
                    f"{type(module).__name__ if module is not None else 'missing module'}); this model's "
                    f"blocks have {have}"
                )
            out[f"blocks.{i}.{t}"] = linear
    return out


def _submodule(block: nn.Module, target: str) -> nn.Module | None:
    try:
        return block.get_submodule(target)
    except AttributeError:
        return None


def adapters_at(trajectory: Trajectory, i: int) -> tuple[dict[str, Tensor], LoraConfig]:
    """The adapters a LoRA :func:`~elk_lens.train.fine_tune` saved beside checkpoint ``i``, checked
    against the SHA-256 recorded for them, and their config."""
    record = trajectory.info.get("lora")
    if not isinstance(record, dict):
        raise ValueError("this trajectory was not trained with LoRA: its info holds no 'lora' record")
    step = trajectory.checkpoints[i].step
    entry = next((e for e in record["adapters"] if e["step"] == step), None)
    if entry is None:
        raise ValueError(f"no adapters were saved at step {step}")
    path = Path(entry["file"]) if trajectory.root is None else trajectory.root / entry["file"]
    if sha256_file(path) != entry["sha256"]:
        raise ValueError(f"{path} fails its checksum (recorded in trajectory.json): changed or damaged since saved")
    try:
        tensors = load(path.read_bytes())
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
    return tensors, LoraConfig(**{**record["config"], "targets": tuple(record["config"]["targets"])})


def lora_record(config: LoraConfig, model: TransformerBridge) -> dict:
    """What a resumed LoRA run must match: its config and the base model the adapters sit on."""
    return {"config": asdict(config), "base": fingerprint(model)}
