"""Hooks that fail loudly: unknown hook points raise before the forward, silent ones raise after it.

TransformerLens 4.3 lists gated hook points that never fire and silently drops hooks at or after
``stop_at_layer`` (docs/methods/transformer_lens_4_3.md §2.1, §2.3); a hook that never fires is a bug here.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

__all__ = ["HookFn", "check_hook_names", "loud_hooks"]

HookFn = Callable[..., Tensor | None]  # fn(tensor, *, hook) -> replacement or None


def check_hook_names(model: TransformerBridge, names: Sequence[str]) -> None:
    """Raise ``KeyError`` naming every unknown hook point, with examples of valid ones."""
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        examples = [n for n in model.hook_dict if n.startswith("blocks.0.hook_resid")]
        raise KeyError(f"hook points {missing} do not exist on this model; e.g. {examples}")


@contextmanager
def loud_hooks(model: TransformerBridge, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[set[str]]:
    """Attach forward hooks by name; on a normal exit, raise if any of them never fired.

    Yields the set of names that have fired so far (callers may inspect it). Hooks are removed in
    ``finally`` by TransformerLens's own context manager, also when the forward raises.
    """
    names = [name for name, _ in hooks]
    check_hook_names(model, names)
    fired: set[str] = set()

    def wrap(name: str, fn: HookFn) -> HookFn:
        def hook_fn(tensor: Tensor, *, hook) -> Tensor | None:
            fired.add(name)
            return fn(tensor, hook=hook)

        return hook_fn

    with model.hooks(fwd_hooks=[(name, wrap(name, fn)) for name, fn in hooks]):
        yield fired
    silent = [n for n in names if n not in fired]
    if silent:
        raise RuntimeError(
            f"hooks never fired: {silent} (a gated hook point that is not enabled, a block the forward "
            f"never reached, or an architecture without this hook)"
        )
