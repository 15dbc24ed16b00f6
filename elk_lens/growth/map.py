"""`GrowthMap`: how a grown model's residual stream, layers and heads relate to the model it grew from.

A function-preserving growth embeds the old residual linearly, ``x' = P x`` with ``P`` of shape
(d_model', d_model), renumbers blocks (``layers[i]`` is old block ``i``'s index in the grown model) and
keeps old heads at ``heads[h]``. A reporter then moves exactly: its readout is a covector, so
``w' = P (PᵀP)⁻¹ w`` gives ``w'·P x = w·x``; its concept vector is a vector, ``v' = P v``. The two
rules differ whenever ``PᵀP ≠ I`` (mean-padding), which is why a reporter keeps both.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from elk_lens._atomic import read_dir, save_dir
from elk_lens._tensor_files import read_tensors, tensor_record
from elk_lens.reporters import Reporter

__all__ = ["GrowthMap"]

_SITE = re.compile(r"^blocks\.(\d+)\.(.+)$")
MAP_FILE = "growth_map.json"
TENSOR_FILE = "growth_map.safetensors"
_FORMAT_VERSION = 2  # 2: checksums of every file and of the JSON, dtype and shape of each tensor (1: no version)
# the JSON fields, each with the type it must hold
_FIELDS = {
    "layers": list,
    "heads": list,
    "source": str,
    "target": str,
    "exact": bool,
    "ops": list,
    "sites": dict,
    "info": dict,
}


@dataclass(frozen=True)
class GrowthMap:
    """The map from a source model to the model grown from it.

    Attributes:
        P: Residual embedding, shape (d_model', d_model), float64: the grown residual is ``P @ x``.
        layers: ``layers[i]``: the grown model's index of old block ``i``.
        heads: ``heads[h]``: the grown model's index of old head ``h`` (the same in every layer).
        source: Fingerprint of the model grown from.
        target: Fingerprint of the grown model.
        exact: Whether the grown model computes the same function (True for the preserving operators;
            False for stacking, random blocks, and maps fitted on activations).
        ops: What was done, in order (e.g. ``["widen_d_model(128->192, mean)", "insert_blocks([2, 4])"]``).
        offset: Added after ``P`` (``x' = P x + offset``); None for the operators (zero). Maps fitted on
            activations have one: the difference of the two models' mean residuals.
        sites: Explicit source → target hook names, for maps that hold only at some sites (fitted maps,
            whose ``layers`` are empty).
        info: Anything else worth keeping (e.g. the residual of a fitted map).
    """

    P: Float[Tensor, "d_model_new d_model"]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    source: str
    target: str
    exact: bool = True
    ops: tuple[str, ...] = ()
    offset: Float[Tensor, " d_model_new"] | None = None
    sites: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.P.ndim != 2 or self.P.shape[0] < self.P.shape[1]:
            raise ValueError(
                f"P must have shape (d_model', d_model) with d_model' >= d_model, got {tuple(self.P.shape)}"
            )
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"layers must be strictly increasing (blocks keep their order), got {self.layers}")

    @property
    def d_source(self) -> int:
        return self.P.shape[1]

    @property
    def d_target(self) -> int:
        return self.P.shape[0]

    def site(self, name: str) -> str:
        """The grown model's hook name for a source hook ``blocks.{i}.*`` (other hooks keep their name)."""
        if name in self.sites:
            return self.sites[name]
        if not self.layers:
            raise ValueError(f"this map holds at {sorted(self.sites)} only, not at {name!r}")
        m = _SITE.match(name)
        if m is None:
            return name
        i = int(m.group(1))
        if i >= len(self.layers):
            raise ValueError(f"{name!r}: the source model has blocks 0..{len(self.layers) - 1}")
        return f"blocks.{self.layers[i]}.{m.group(2)}"

    def covector(self, w: Float[Tensor, " d_model"]) -> Float[Tensor, " d_model_new"]:
        """``P (PᵀP)⁻¹ w``: the readout with ``w'·(P x) = w·x`` for every x."""
        P = self.P.to(torch.float64)
        return P @ torch.linalg.solve(P.T @ P, w.to(torch.float64))

    def vector(self, v: Float[Tensor, " d_model"]) -> Float[Tensor, " d_model_new"]:
        """``P v``: where a residual-stream vector (a concept or steering direction) lands."""
        return self.P.to(torch.float64) @ v.to(torch.float64)

    def transport(self, reporter: Reporter, *, allow_unverified: bool = False) -> Reporter:
        """The reporter on the grown model: readout as a covector, concept vector as a vector, same bias,
        the mapped site; its scores equal the original's on every input of a function-preserving growth.
        With an offset the bias absorbs it: ``b' = b - w'·offset``.

        The reporter must have been fitted on this map's source model: its provenance ``"model"``
        fingerprint is checked (``allow_unverified=True`` accepts a reporter that records none).
        """
        if reporter.w.shape[0] != self.d_source:
            raise ValueError(
                f"reporter reads d_model={reporter.w.shape[0]}, this map starts from d_model={self.d_source}"
            )
        fitted_on = reporter.provenance.get("model")
        if fitted_on is None and not allow_unverified:
            raise ValueError(
                "the reporter records no model fingerprint (provenance['model']), so it cannot be "
                "checked against this map's source; pass allow_unverified=True to transport it "
                "anyway"
            )
        if fitted_on is not None and fitted_on != self.source:
            raise ValueError(
                f"the reporter was fitted on model {fitted_on}, this map grows model {self.source}: "
                "transport it through the maps that lead from its own model"
            )
        dtype = reporter.w.dtype
        provenance = {
            **reporter.provenance,
            "model": self.target,
            "transported_from": fitted_on,
            "growth": list(self.ops),
            "growth_exact": self.exact,
        }
        w = self.covector(reporter.w)
        # a contrast reporter reads a difference of residuals: the offset cancels there
        shift = 0.0 if self.offset is None or reporter.reads == "contrast" else float(w @ self.offset.double())
        return Reporter(
            w.to(dtype),
            reporter.b - shift,
            self.vector(reporter.v).to(dtype),
            reporter.method,
            self.site(reporter.site),
            provenance,
            reporter.reads,
        )

    def then(self, after: "GrowthMap", *, across_training: bool = False) -> "GrowthMap":
        """This map followed by ``after``, which must start at the model this one ends at, unless
        ``across_training``: the model was trained between the two growths, so only the structure
        composes (the result is not exact)."""
        if after.source != self.target and not across_training:
            raise ValueError(f"cannot compose: this map ends at model {self.target}, the next starts at {after.source}")
        if after.d_source != self.d_target:
            raise ValueError(f"cannot compose: widths {self.d_target} and {after.d_source} differ")
        P2 = after.P.to(torch.float64)
        offset = None if self.offset is None else P2 @ self.offset.double()
        if after.offset is not None:
            offset = after.offset.double() if offset is None else offset + after.offset.double()
        sites = {s: after.site(t) for s, t in self.sites.items()}
        if after.sites and not after.layers and self.layers:  # after holds at some sites only: pull them back
            for t, u in after.sites.items():
                m = _SITE.match(t)
                if m is not None and int(m.group(1)) in self.layers:
                    sites[f"blocks.{self.layers.index(int(m.group(1)))}.{m.group(2)}"] = u
        return GrowthMap(
            P2 @ self.P.to(torch.float64),
            tuple(after.layers[i] for i in self.layers) if after.layers else (),
            tuple(after.heads[h] for h in self.heads) if after.heads else (),
            self.source,
            after.target,
            self.exact and after.exact and not across_training,
            self.ops + (("trained",) if across_training else ()) + after.ops,
            offset,
            sites,
            {k: v for k, v in (("first", self.info), ("then", after.info)) if v},
        )

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """``growth_map.safetensors`` (P, offset) and last ``growth_map.json`` (the rest, the dtype and shape
        of each tensor, the checksums), atomic and non-destructive like ``Reporter.save``: an existing file
        or a non-empty directory is refused unless ``overwrite``, which replaces only an earlier map's files."""
        tensors = {"P": self.P.contiguous()} | ({} if self.offset is None else {"offset": self.offset.contiguous()})
        meta = {
            "format_version": _FORMAT_VERSION,
            "layers": list(self.layers),
            "heads": list(self.heads),
            "source": self.source,
            "target": self.target,
            "exact": self.exact,
            "ops": list(self.ops),
            "sites": self.sites,
            "info": self.info,
            "tensors": tensor_record(tensors),
        }
        return save_dir(
            path,
            meta,
            lambda tmp: save_file(tensors, str(tmp / TENSOR_FILE)),
            marker=MAP_FILE,
            overwrite=overwrite,
            what="growth map",
        )

    @classmethod
    def load(cls, path: str | Path) -> "GrowthMap":
        """A saved map, verified: every file against its checksum and the JSON against its own, the tensors
        against the dtypes and shapes the JSON records, all finite (maps saved before checksums get the
        shape and finiteness checks)."""
        path = Path(path)
        marker = path / MAP_FILE
        meta = read_dir(path, marker=MAP_FILE, what="growth map")
        version = meta.get("format_version", 1)
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"{marker}: format_version {version!r} is not one this elk-lens reads (1, {_FORMAT_VERSION})"
            )
        required = {**_FIELDS, **({"tensors": dict, "files": dict} if version == _FORMAT_VERSION else {})}
        for key, kind in required.items():
            if not isinstance(meta.get(key), kind):
                got = f"{meta[key]!r}" if key in meta else "no such key"
                raise ValueError(
                    f"{marker}: {key!r} must be a {kind.__name__}; got {got}: the saved growth map is damaged"
                )
        for key, want, ok in (
            ("layers", "non-negative ints", all(map(_is_index, meta["layers"]))),
            ("heads", "non-negative ints", all(map(_is_index, meta["heads"]))),
            ("ops", "strings", all(isinstance(o, str) for o in meta["ops"])),
            ("sites", "hook names to hook names", all(isinstance(x, str) for kv in meta["sites"].items() for x in kv)),
        ):
            if not ok:
                raise ValueError(f"{marker}: {key!r} must hold {want}; got {meta[key]!r}")
        tensors = read_tensors(path / TENSOR_FILE, meta.get("tensors"), marker=marker, what="growth map")
        if "P" not in tensors or set(tensors) - {"P", "offset"}:
            raise ValueError(
                f"{path / TENSOR_FILE} holds tensors {sorted(tensors)}; a growth map has 'P' and optionally 'offset'"
            )
        P, offset = tensors["P"], tensors.get("offset")
        if offset is not None and (P.ndim != 2 or tuple(offset.shape) != (P.shape[0],)):
            raise ValueError(
                f"{path / TENSOR_FILE}: offset must have shape (d_model',) matching P "
                f"{tuple(P.shape)}; got {tuple(offset.shape)}"
            )
        try:
            return cls(
                P,
                tuple(meta["layers"]),
                tuple(meta["heads"]),
                meta["source"],
                meta["target"],
                meta["exact"],
                tuple(meta["ops"]),
                offset,
                meta["sites"],
                meta["info"],
            )
        except ValueError as e:  # P's shape or the layers' order
            raise ValueError(f"{path} holds an invalid growth map ({MAP_FILE}, {TENSOR_FILE}): {e}") from None


def _is_index(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
