"""``apply_rope`` computes the textbook rotation bit for bit, whatever the layout, dtype or autograd state."""

import pytest
import torch

from locret.rope import apply_rope, rotate_half


def textbook(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    rotary = cos.shape[-1]
    x_rot, x_pass = x[..., :rotary], x[..., rotary:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rotary", [16, 8])  # full and partial rotary
@pytest.mark.parametrize("transposed", [False, True])  # [B, H, T, D] as a view of [B, T, H, D]
def test_apply_rope_equals_the_textbook_formula(dtype, rotary, transposed):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, 16, generator=generator).to(dtype)
    x = x.transpose(1, 2) if transposed else x.transpose(1, 2).contiguous()
    cos, sin = (torch.randn(7, rotary, generator=generator).to(dtype) for _ in range(2))
    assert torch.equal(apply_rope(x, cos, sin), textbook(x, cos, sin))


def test_apply_rope_keeps_gradients():
    x = torch.randn(1, 2, 5, 8, requires_grad=True)
    cos, sin = torch.randn(5, 8), torch.randn(5, 8)
    apply_rope(x, cos, sin).square().sum().backward()
    expected = x.detach().clone().requires_grad_()
    textbook(expected, cos, sin).square().sum().backward()
    assert torch.allclose(x.grad, expected.grad)
