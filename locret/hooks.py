"""Forward hooks that live exactly as long as a ``with`` block: labelling, recording and masking passes hook
every attention layer (or retaining head) for one pass and must leave the model untouched afterwards, also
when the pass raises."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["forward_hooks"]


@contextmanager
def forward_hooks(
    hooks: Iterable[tuple[nn.Module, Callable]], *, pre: bool, with_kwargs: bool = False
) -> Iterator[None]:
    """Inside the block each ``(module, hook)`` pair is registered as a forward pre-hook (``pre=True``) or a
    forward hook; all are removed on leaving it."""
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()
