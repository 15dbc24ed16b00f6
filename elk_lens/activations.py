"""`Activations`: captured residuals with the sites, read position and provenance they came from."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jaxtyping import Float, Int
from torch import Tensor

from elk_lens.sites import Site

__all__ = ["Activations"]


@dataclass
class Activations:
    """Residual-stream values, ``[n, n_sites, d_model]`` (or ``[n, n_sites, pos, d_model]`` for all positions).

    When captured with a cache directory the values stay on disk until first used (``loader``),
    so holding an ``Activations`` costs no memory; ``at(site)`` loads one site only. Every such read
    checks each shard's checksum again: bytes damaged on disk after capture raise, naming the shard.

    Attributes:
        sites: The sites, in the order of axis 1.
        position: The read position rule (``"last"``, an int, or ``"all"``).
        meta: Provenance: model and data fingerprints, sites, position, padding side, dtype.
        mask: ``[n, pos]`` attention mask, for ``position="all"`` only.
    """

    _values: Tensor | None
    sites: list[Site]
    position: object
    meta: dict
    mask: Int[Tensor, "batch pos"] | None = None
    loader: Callable[[Sequence[int] | None], Tensor] | None = field(default=None, repr=False)

    @property
    def values(self) -> Float[Tensor, "batch n_sites *pos d_model"]:
        if self._values is None:
            assert self.loader is not None
            self._values = self.loader(None)
        return self._values

    def __len__(self) -> int:
        return self.meta["n_rows"] if "n_rows" in self.meta else self.values.shape[0]

    def site_index(self, site: Site | str | int) -> int:
        """Axis-1 index of a site, given as a Site, a hook name, or a position in ``sites``."""
        if isinstance(site, int):
            if not -len(self.sites) <= site < len(self.sites):
                raise IndexError(f"site index {site} out of range for {len(self.sites)} sites")
            return site % len(self.sites)
        wanted = Site.parse(site)
        if wanted not in self.sites:
            raise KeyError(f"{wanted.name} was not captured; captured sites: {[s.name for s in self.sites]}")
        return self.sites.index(wanted)

    def at(self, site: Site | str | int) -> Float[Tensor, "batch *pos d_model"]:
        """Values of one site."""
        i = self.site_index(site)
        if self._values is None and self.loader is not None:
            return self.loader([i])[:, 0]
        return self.values[:, i]
