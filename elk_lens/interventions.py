"""Causal interventions on the residual stream: steer, erase or reflect chosen positions
(docs/methods/elk_methods.md §8).

An edit is a pure function on the rows being edited (``[m, d_model] -> [m, d_model]``); ``intervene``
applies it at one hook point to ``resid[row, positions[row]]`` only. EG's reference code wrote
``hiddens[-1] = ...`` on the *batch* axis and so edited every position; here every position not named
in ``positions`` stays bit-identical (tested).
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Literal, get_args

import torch
from concept_erasure import LeaceEraser
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens._hooks import loud_hooks
from elk_lens.sites import Site

__all__ = [
    "Edit",
    "check_site",
    "erase",
    "erase_edit",
    "intervene",
    "nie",
    "random_direction_like",
    "reflect",
    "reflect_edit",
    "steer",
    "steer_edit",
]

Edit = Callable[[Float[Tensor, "m d_model"]], Float[Tensor, "m d_model"]]
Toward = Literal["true", "false"]


def _vector(v: Tensor, what: str) -> Tensor:
    if not isinstance(v, Tensor) or not v.is_floating_point():
        raise TypeError(f"{what} must be a floating tensor [d_model]; got {type(v).__name__} {getattr(v, 'dtype', '')}")
    if v.ndim != 1:
        raise ValueError(f"{what} must be a vector [d_model], got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{what} contains NaN or inf")
    return v


def _unit(v: Tensor, what: str) -> Tensor:
    norm = _vector(v, what).norm()
    if norm == 0:
        raise ValueError(f"{what} is the zero vector; it has no direction")
    return v / norm


def _check_width(h: Tensor, width: int, what: str) -> None:
    if h.shape[-1] != width:
        raise ValueError(f"{what} has width {width} but the hooked activations have width {h.shape[-1]}")


def _work_dtype(h: Tensor) -> torch.dtype:
    """At least float32: a bf16 projection would lose most of the component it is meant to remove."""
    return torch.promote_types(h.dtype, torch.float32)


def steer_edit(direction: Float[Tensor, " d_model"], alpha: float) -> Edit:
    """``h + alpha * direction`` (GoT, docs/methods/elk_methods.md §8.2, adds the rescaled truth direction; negative
    alpha subtracts it)."""
    _vector(direction, "steering direction")
    check_number("alpha", alpha)

    def edit(h: Float[Tensor, "m d_model"]) -> Float[Tensor, "m d_model"]:
        _check_width(h, direction.shape[0], "steering direction")
        dt = _work_dtype(h)
        return (h.to(dt) + alpha * direction.to(h.device, dt)).to(h.dtype)

    return edit


def erase_edit(eraser_or_direction: LeaceEraser | Float[Tensor, " d_model"]) -> Edit:
    """LEACE ``eraser(h)``, or the orthogonal projection that removes one direction: ``h - (h·û)û``."""
    if isinstance(eraser_or_direction, LeaceEraser):
        eraser = eraser_or_direction
        width = eraser.proj_left.shape[0]

        def leace(h: Float[Tensor, "m d_model"]) -> Float[Tensor, "m d_model"]:
            _check_width(h, width, "LEACE eraser")
            e = eraser
            if e.proj_left.device != h.device:  # rank-k factors: moving them per call is cheap
                bias = None if e.bias is None else e.bias.to(h.device)
                e = replace(e, proj_left=e.proj_left.to(h.device), proj_right=e.proj_right.to(h.device), bias=bias)
            # the eraser's matmuls need its own dtype (float64 from fit_leace), not the model's
            return e(h.to(e.proj_left.dtype)).to(h.dtype)

        return leace
    u = _unit(eraser_or_direction, "erased direction")

    def project_out(h: Float[Tensor, "m d_model"]) -> Float[Tensor, "m d_model"]:
        _check_width(h, u.shape[0], "erased direction")
        dt = _work_dtype(h)
        x, u_ = h.to(dt), u.to(h.device, dt)
        return (x - (x @ u_)[:, None] * u_).to(h.dtype)

    return project_out


def reflect_edit(w: Float[Tensor, " d_model"], mu: Float[Tensor, " d_model"]) -> Edit:
    """Reflect across the probe hyperplane through ``mu``: ``h - 2((h - mu)·ŵ)ŵ`` (EG,
    docs/methods/elk_methods.md §8.1).

    The probe's reading ``(h - mu)·ŵ`` flips sign; the component orthogonal to ``ŵ`` is untouched.
    """
    w_hat = _unit(w, "probe direction w")
    if _vector(mu, "mean mu").shape != w.shape:
        raise ValueError(f"mean mu has width {mu.shape[0]} but probe direction w has width {w.shape[0]}")

    def edit(h: Float[Tensor, "m d_model"]) -> Float[Tensor, "m d_model"]:
        _check_width(h, w_hat.shape[0], "probe direction w")
        dt = _work_dtype(h)
        x, w_, mu_ = h.to(dt), w_hat.to(h.device, dt), mu.to(h.device, dt)
        return (x - 2 * ((x - mu_) @ w_)[:, None] * w_).to(h.dtype)

    return edit


def check_site(model: TransformerBridge, site: Site | str, width: int | None = None, what: str = "vector") -> str:
    """The hook name of ``site`` on ``model``, checked before any forward.

    ``site`` is a ``Site``, its short form (``"resid_pre.3"``) or any hook name (``loud_hooks`` checks
    those). A residual site past the last layer is a ``KeyError`` naming the model's layers; with
    ``width``, a vector (``what``) that does not fit the residual's ``d_model`` is a ``ValueError``.
    """
    if not isinstance(site, (Site, str)):
        raise TypeError(f"site must be a Site or a hook name such as 'blocks.0.hook_resid_pre'; got {site!r}")
    try:
        parsed = Site.parse(site)
    except ValueError:  # not a residual site (e.g. "blocks.0.hook_attn_out"): use the name as given
        return str(site)
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    if parsed.layer >= n_layers:
        raise KeyError(
            f"hook points {[parsed.hook_name]} do not exist on this model: it has layers 0..{n_layers - 1} "
            f"(sites 'resid_pre.0' to 'resid_post.{n_layers - 1}')"
        )
    if width is not None and width != d_model:
        raise ValueError(f"{what} has width {width} but {parsed.hook_name} has width {d_model} (the model's d_model)")
    return parsed.hook_name


def _positions(positions: Tensor) -> Int[Tensor, "batch k"]:
    positions = torch.as_tensor(positions)
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor, got {positions.dtype}")
    if positions.ndim not in (1, 2):
        raise ValueError(f"positions must have shape [batch] or [batch, k], got {tuple(positions.shape)}")
    if bool((positions < 0).any()):  # -1 would silently wrap to the last (often padding) column
        raise ValueError(f"positions {positions.tolist()} out of range: positions count from 0, left to right")
    positions = positions.long().reshape(positions.shape[0], -1)
    ordered = positions.sort(1).values
    if (ordered[:, 1:] == ordered[:, :-1]).any():  # an edit at a repeated position would apply only once
        raise ValueError(f"positions repeat within a row: {positions.tolist()}")
    return positions


@contextmanager
def intervene(
    model: TransformerBridge, site: Site | str, edit: Edit, positions: Int[Tensor, "batch ..."]
) -> Iterator[None]:
    """Apply ``edit`` to ``resid[row, positions[row]]`` at ``site`` during every forward in the block.

    Args:
        model: The bridge to hook.
        site: A ``Site`` or hook name whose activation is ``[batch, pos, d_model]``.
        edit: A row edit from ``steer_edit`` / ``erase_edit`` / ``reflect_edit`` (or your own).
        positions: Column(s) to edit in each row: ``[batch]`` or ``[batch, k]``, counted in the padded
            sequence (for right padding, the last real token is ``mask.sum(1) - 1``).

    Raises ``KeyError`` for an unknown hook name (before the forward), ``ValueError`` when the forward's
    batch or length does not fit ``positions``, and ``RuntimeError`` if the hook never fired.
    """
    name = check_site(model, site)
    pos = _positions(positions)
    if not callable(edit):
        raise TypeError(f"edit must be a function of the rows [m, d_model] (e.g. steer_edit(...)); got {edit!r}")

    def hook_fn(resid: Float[Tensor, "batch pos d_model"], *, hook) -> Float[Tensor, "batch pos d_model"]:
        if resid.ndim != 3:
            raise ValueError(f"{name} gives shape {tuple(resid.shape)}; intervene edits [batch, pos, d_model]")
        if resid.shape[0] != pos.shape[0]:
            raise ValueError(
                f"positions are for a batch of {pos.shape[0]} rows but {name} has a batch of {resid.shape[0]}"
            )
        p = pos.to(resid.device)
        if bool((p < 0).any()) or bool((p >= resid.shape[1]).any()):
            raise ValueError(f"positions {pos.tolist()} out of range for {resid.shape[1]} positions at {name}")
        rows = torch.arange(resid.shape[0], device=resid.device)[:, None].expand_as(p)  # NOT resid[-1]
        h = resid[rows, p]  # [batch, k, d_model]; advanced indexing copies
        try:
            edited = edit(h.reshape(-1, h.shape[-1])).reshape(h.shape)
        except ValueError as e:
            raise ValueError(f"edit at {name}: {e}") from None
        out = resid.clone()
        out[rows, p] = edited.to(out.dtype)
        return out

    with loud_hooks(model, [(name, hook_fn)]):
        yield


def steer(
    model: TransformerBridge, site: Site | str, direction: Tensor, *, alpha: float, positions: Tensor
) -> AbstractContextManager[None]:
    """``intervene`` with ``steer_edit(direction, alpha)``."""
    edit = steer_edit(direction, alpha)
    check_site(model, site, direction.shape[0], "steering direction")
    return intervene(model, site, edit, positions)


def erase(
    model: TransformerBridge, site: Site | str, eraser_or_direction: LeaceEraser | Tensor, *, positions: Tensor
) -> AbstractContextManager[None]:
    """``intervene`` with ``erase_edit(eraser_or_direction)``."""
    edit = erase_edit(eraser_or_direction)
    check_site(model, site, _erased_width(eraser_or_direction), "erased direction or eraser")
    return intervene(model, site, edit, positions)


def reflect(
    model: TransformerBridge, site: Site | str, w: Tensor, mu: Tensor, *, positions: Tensor
) -> AbstractContextManager[None]:
    """``intervene`` with ``reflect_edit(w, mu)``."""
    edit = reflect_edit(w, mu)
    check_site(model, site, w.shape[0], "probe direction w")
    return intervene(model, site, edit, positions)


def _erased_width(eraser_or_direction: LeaceEraser | Tensor) -> int:
    if isinstance(eraser_or_direction, LeaceEraser):
        return eraser_or_direction.proj_left.shape[0]
    return eraser_or_direction.shape[0]


def random_direction_like(direction: Float[Tensor, " d_model"], *, seed: int) -> Float[Tensor, " d_model"]:
    """A Gaussian direction of the same norm: the control GoT and EG run beside every real direction."""
    _vector(direction, "direction")
    check_number("seed", seed, kind=int)
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(direction.shape, generator=g, dtype=torch.float64)  # CPU float64: same draw on any device
    r = r * (direction.double().norm().cpu() / r.norm())
    return r.to(direction.device, direction.dtype)


def nie(pd_true_clean: float, pd_false_clean: float, pd_intervened: float, *, toward: Toward) -> float:
    """Normalised indirect effect (GoT, docs/methods/elk_methods.md §8.2): the fraction of the clean true/false gap
    closed.

    ``toward="true"`` (false statements pushed to true): ``(PD₋* − PD₋)/(PD₊ − PD₋)``;
    ``toward="false"``: ``(PD₊* − PD₊)/(PD₋ − PD₊)``. All inputs are means over statements.
    """
    if toward not in get_args(Toward):
        raise ValueError(f"toward must be one of {get_args(Toward)}, got {toward!r}")
    for name, value in (
        ("pd_true_clean", pd_true_clean),
        ("pd_false_clean", pd_false_clean),
        ("pd_intervened", pd_intervened),
    ):
        check_number(name, value)
    start, goal = (pd_false_clean, pd_true_clean) if toward == "true" else (pd_true_clean, pd_false_clean)
    if goal == start:
        raise ValueError(f"NIE is undefined: the clean PD is {start} on both true and false statements")
    return (pd_intervened - start) / (goal - start)
