"""PyTorch as the oracle: the peephole LSTM against nn.LSTM, the attention against
nn.MultiheadAttention, and the ViT parameter counts against torchvision/timm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liandan.models.recurrent import PeepholeLSTM, _PeepholeRecurrence
from liandan.models.transformer import Block, MoESpec, MultiHeadSelfAttention
from liandan.registry import MODELS


def _copy_lstm(ref: nn.LSTM, mine: PeepholeLSTM) -> None:
    dirs = 2 if ref.bidirectional else 1
    with torch.no_grad():
        for layer in range(ref.num_layers):
            for d in range(dirs):
                cell = mine.cells[layer * dirs + d]
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(ref, name + suffix))
                cell.peephole.zero_()


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_peephole_lstm_with_zero_peepholes_is_nn_lstm(layers: int, bidirectional: bool) -> None:
    torch.manual_seed(0)
    ref = nn.LSTM(3, 8, layers, batch_first=True, bidirectional=bidirectional)
    mine = PeepholeLSTM(3, 8, layers, bidirectional)
    _copy_lstm(ref, mine)
    x = torch.randn(4, 9, 3)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, (h_a, c_a) = ref(xa)
    out_b, (h_b, c_b) = mine(xb)
    for a, b in ((out_a, out_b), (h_a, h_b), (c_a, c_b)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    # and the hand-written backward through time gives the same gradients
    w = torch.randn_like(out_a)
    ((out_a * w).sum() + h_a.square().sum() + c_a.sum()).backward()
    ((out_b * w).sum() + h_b.square().sum() + c_b.sum()).backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)
    for layer in range(layers):
        for d in range(2 if bidirectional else 1):
            cell = mine.cells[layer * (2 if bidirectional else 1) + d]
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                torch.testing.assert_close(getattr(cell, name).grad, getattr(ref, name + suffix).grad,
                                           rtol=1e-5, atol=1e-5)


def test_peephole_backward_through_time_matches_finite_differences() -> None:
    torch.manual_seed(0)
    t, b, h = 5, 3, 4
    args = [torch.randn(t, b, 4 * h), torch.randn(4 * h, h), torch.randn(3, h), torch.randn(b, h), torch.randn(b, h)]
    args = [a.double().requires_grad_() for a in args]  # nonzero peepholes: every term of the backward
    assert torch.autograd.gradcheck(_PeepholeRecurrence.apply, args)


def test_peepholes_change_the_function() -> None:
    torch.manual_seed(0)
    mine = PeepholeLSTM(3, 8)
    x = torch.randn(2, 6, 3)
    out, _ = mine(x)
    with torch.no_grad():
        mine.cells[0].peephole.zero_()
    assert not torch.allclose(mine(x)[0], out)


@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
def test_attention_matches_nn_multihead_attention(mask: str) -> None:
    torch.manual_seed(0)
    dim, heads, t = 32, 4, 7
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    mine = MultiHeadSelfAttention(dim, heads, causal=mask == "causal")
    with torch.no_grad():  # [W_q; W_k; W_v] and the output projection copy one to one
        mine.qkv.weight.copy_(ref.in_proj_weight)
        mine.qkv.bias.copy_(ref.in_proj_bias)
        mine.proj.weight.copy_(ref.out_proj.weight)
        mine.proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(3, t, dim)
    kw: dict = {}
    pad = None
    if mask == "causal":
        kw["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(t)
    elif mask == "padding":
        pad = torch.zeros(3, t, dtype=torch.bool)
        pad[1, 5:] = True  # the last two keys of sample 1 are padding
        kw["key_padding_mask"] = pad
    expected, _ = ref(x, x, x, need_weights=False, **kw)
    torch.testing.assert_close(mine(x, key_padding_mask=pad), expected, rtol=0, atol=1e-6)


def test_block_has_12_d2_plus_13_d_parameters() -> None:
    d = 96
    block = Block(d, 4, 4.0, 0.0, MoESpec())
    assert sum(p.numel() for p in block.parameters()) == 12 * d * d + 13 * d


def test_vit_b16_has_torchvision_parameter_count() -> None:
    entry = MODELS.get("vit")
    with torch.device("meta"):
        base = entry.fn(num_classes=1000, input_shape=(3, 224, 224))  # size auto: base, patch 16
        small = entry.fn(num_classes=1000, input_shape=(3, 224, 224), size="small")
    assert sum(p.numel() for p in base.parameters()) == 86_567_656 == entry.extra["ref_params"]
    assert base.pos_embed.shape == (1, 197, 768) and base.embed.proj.kernel_size == (16, 16)
    assert sum(p.numel() for p in small.parameters()) == 22_050_664  # timm vit_small_patch16_224


@pytest.mark.parametrize(("shape", "tokens"), [((1, 8, 8), 16), ((1, 32, 32), 64), ((3, 16, 16), 64)])
def test_vit_picks_a_cpu_size_and_patch_for_small_images(shape: tuple[int, ...], tokens: int) -> None:
    m = MODELS.get("vit").fn(num_classes=10, in_channels=shape[0], input_shape=shape)
    assert m.pos_embed.shape == (1, tokens + 1, 64)  # tiny, plus the class token
    assert m(torch.randn(2, *shape)).shape == (2, 10)
    with pytest.raises(ValueError, match="patches"):
        MODELS.get("vit").fn(input_shape=shape, patch=3)
