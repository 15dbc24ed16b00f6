"""Where a model placed by HF accelerate takes its inputs, and reading the weights it offloaded.

A model placed with a ``device_map`` that sends blocks to ``"cpu"`` or ``"disk"`` beside accelerators (or a
``max_memory`` too small for it) keeps those weights off the execution devices: each parameter sits on the
``meta`` device, and an accelerate ``AlignDevicesHook`` on its module brings the values from the hook's
``weights_map`` for every forward and drops them after (docs/guide/scaling-out.md). Forwards, and so
capture and interventions, need nothing more. What reads weights outside a forward reads them here: the
fingerprint behind every cache key and reporter provenance, and :func:`elk_lens.models.save_model`, through
:func:`onloaded`, so an offloaded model hashes and saves as the same model loaded whole; the circuit scores'
``W_O`` and the answer logits' ``W_U``, through :func:`onload`. Token ids go to :func:`input_device`.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

__all__ = ["input_device", "onload", "onloaded"]


class _Onloaded(Mapping):
    """A state dict whose offloaded tensors are read from accelerate's weights map when looked up, one at a
    time: a model offloaded to disk because it does not fit in memory is never all in memory here."""

    def __init__(self, state: Mapping[str, Tensor], loaders: Mapping[int, Callable[[], Tensor]]) -> None:
        self._state, self._loaders = state, loaders

    def __getitem__(self, name: str) -> Tensor:
        tensor = self._state[name]
        load = self._loaders.get(id(tensor))
        return tensor.detach() if load is None else load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def onloaded(module: nn.Module, state: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """``state`` — a ``state_dict(keep_vars=True)`` taken from ``module`` (or from a module inside it), whose
    values are the parameters and buffers themselves — with every tensor accelerate offloaded read from its
    weights map (on the CPU) when it is looked up, and every other tensor detached.

    Raises:
        ValueError: a tensor is on the meta device and no accelerate hook holds its values (a model built on
            the meta device and never loaded): there are no weights to read.
    """
    if not any(t.is_meta for t in state.values()):
        return {name: t.detach() for name, t in state.items()}
    loaders = {}
    for sub in _offloaded(module):
        weights = sub._hf_hook.weights_map
        for name, tensor in [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]:
            if tensor.is_meta:
                loaders[id(tensor)] = lambda weights=weights, name=name: weights[name].to("cpu")
    lost = [name for name, t in state.items() if t.is_meta and id(t) not in loaders]
    if lost:
        raise ValueError(f"the weights {lost[:4]} are {_NEVER_LOADED}")
    return _Onloaded(state, loaders)


@contextmanager
def onload(module: nn.Module) -> Iterator[None]:
    """Within the block, the weights accelerate offloaded inside ``module`` sit on its execution device, as
    they do during a forward: for reading processed weights outside a forward (TransformerLens's ``W_O``,
    ``W_U``), which the bridge refuses on the meta device. Copy out what must outlive the block
    (``.detach()`` keeps the values; the module's parameters go back to the meta device on exit)."""
    with ExitStack() as stack:
        if any(p.is_meta for p in module.parameters()):
            from accelerate.utils.modeling import align_module_device

            for sub in _offloaded(module):
                stack.enter_context(align_module_device(sub))
        yield


def input_device(model: nn.Module) -> torch.device:
    """Where a model's token ids go: the device of its first parameter, the token embedding — or, when a device
    map offloaded the embedding (its parameter is on the meta device), the device accelerate computes it on."""
    first = next(model.parameters())
    if not first.is_meta:
        return first.device
    for sub in _offloaded(model):
        if any(p is first for p in sub.parameters(recurse=False)):
            return torch.device(sub._hf_hook.execution_device)
    raise ValueError(f"the model's embedding is {_NEVER_LOADED}")


_NEVER_LOADED = (
    "on the meta device and no accelerate offload hook holds the values (a model built on the meta "
    "device and never loaded?); load it with elk_lens.load_model"
)


def _offloaded(module: nn.Module) -> list[nn.Module]:
    """The modules inside ``module`` whose own weights accelerate offloaded (each holds an ``AlignDevicesHook``
    with the values); imported here only: a model that offloads nothing needs no accelerate."""
    from accelerate.utils.modeling import has_offloaded_params

    return [sub for sub in module.modules() if has_offloaded_params(sub)]
