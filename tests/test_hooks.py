import pytest
import torch
from torch import nn

from locret.hooks import forward_hooks


def test_hooks_run_inside_the_block_and_are_gone_after_it():
    layers = [nn.Linear(2, 2), nn.Linear(2, 2)]
    seen = []
    pre = [(layer, lambda module, args, i=i: seen.append(("pre", i))) for i, layer in enumerate(layers)]
    with forward_hooks(pre, pre=True):
        for layer in layers:
            layer(torch.zeros(1, 2))
    assert seen == [("pre", 0), ("pre", 1)]
    post = [(layers[0], lambda module, args, kwargs, output: seen.append(("post", kwargs)))]
    with forward_hooks(post, pre=False, with_kwargs=True):
        layers[0](torch.zeros(1, 2))
    assert seen[-1] == ("post", {})
    for layer in layers:
        layer(torch.zeros(1, 2))
    assert len(seen) == 3
    assert all(not layer._forward_pre_hooks and not layer._forward_hooks for layer in layers)


def test_hooks_are_removed_when_the_block_raises():
    layer = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="boom"):
        with forward_hooks([(layer, lambda module, args: None)], pre=True):
            assert len(layer._forward_pre_hooks) == 1
            raise RuntimeError("boom")
    assert not layer._forward_pre_hooks
