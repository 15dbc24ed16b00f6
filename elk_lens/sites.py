"""Residual-stream sites: where in the model a capture reads (``blocks.{layer}.hook_{kind}``)."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from transformer_lens.model_bridge import TransformerBridge

__all__ = ["SITE_KINDS", "Site", "every_nth", "parse_sites", "residual_sites", "short_name"]

SiteKind = Literal["resid_pre", "resid_mid", "resid_post"]
SITE_KINDS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post")
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(\w+)$")
_SHORT = re.compile(r"^(\w+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Site:
    """One residual-stream hook point: ``Site(3, "resid_pre")`` is ``blocks.3.hook_resid_pre``."""

    layer: int
    kind: str = "resid_pre"

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"unknown site kind {self.kind!r}; valid: {SITE_KINDS}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise TypeError(f"a site's layer must be an int; got {self.layer!r}")
        if self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def name(self) -> str:
        return self.hook_name

    @property
    def depth(self) -> tuple[int, int]:
        """Order in the forward pass: resid_pre < resid_mid < resid_post within a block."""
        return self.layer, SITE_KINDS.index(self.kind)

    def check(self, model: TransformerBridge) -> None:
        """Raise if this site does not exist on ``model``."""
        n_layers = model.cfg.n_layers
        if self.layer >= n_layers:
            raise ValueError(
                f"layer {self.layer} is out of range: the model has layers 0..{n_layers - 1} ({self.name})"
            )
        if self.hook_name not in model.hook_dict:
            raise KeyError(
                f"{self.hook_name} does not exist on this model (e.g. parallel-attention models such as "
                f"GPT-NeoX have no resid_mid); valid kinds here: "
                f"{[k for k in SITE_KINDS if f'blocks.0.hook_{k}' in model.hook_dict]}"
            )

    @classmethod
    def parse(cls, spec: "Site | str") -> "Site":
        """``"blocks.3.hook_resid_pre"`` or ``"resid_pre.3"``."""
        if isinstance(spec, Site):
            return spec
        if not isinstance(spec, str):
            raise TypeError(
                f"site {spec!r} must be a Site or a name like 'blocks.L.hook_KIND' or 'KIND.L' "
                f"with KIND in {SITE_KINDS}"
            )
        match = _HOOK.match(spec) or _SHORT.match(spec)
        if match is None:
            raise ValueError(
                f"cannot parse site {spec!r}; write 'blocks.L.hook_KIND' or 'KIND.L' with KIND in {SITE_KINDS}"
            )
        if match.re is _HOOK:
            return cls(int(match.group(1)), match.group(2))
        return cls(int(match.group(2)), match.group(1))


def short_name(site: "Site | str") -> str:
    """A site as charts label it: ``"blocks.3.hook_resid_pre"`` -> ``"3 resid_pre"``."""
    site = Site.parse(site)
    return f"{site.layer} {site.kind}"


def parse_sites(sites: Sequence[Site | str]) -> list[Site]:
    """Parse and de-duplicate, keeping the caller's order."""
    if isinstance(sites, (str, Site)):
        sites = [sites]
    if not isinstance(sites, Iterable):
        raise TypeError(
            f"sites must be a list of sites (Site objects or names like 'blocks.0.hook_resid_pre'); "
            f"got {type(sites).__name__} {sites!r}"
        )
    out = list(dict.fromkeys(Site.parse(s) for s in sites))
    if not out:
        raise ValueError("no sites given; e.g. ['blocks.0.hook_resid_pre']")
    return out


def residual_sites(model: TransformerBridge) -> list[Site]:
    """Every layer's residual: ``resid_pre`` of blocks 0..L-1, then ``resid_post`` of the last block.

    Layer ``l`` of this list equals HF ``hidden_states[l]`` (the last one before the final norm).
    """
    n_layers = model.cfg.n_layers
    return [Site(layer, "resid_pre") for layer in range(n_layers)] + [Site(n_layers - 1, "resid_post")]


def every_nth(items: Sequence, n: int) -> list:
    """Every ``n``-th of ``items`` from the first, and the last: a thinned sweep over a deep model's layers
    that still ends at the top."""
    last_skipped = len(items) > 0 and (len(items) - 1) % n != 0
    return list(items[::n]) + ([items[-1]] if last_skipped else [])
