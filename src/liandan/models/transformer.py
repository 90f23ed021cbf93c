"""A compact transformer encoder with the attention written out (Vaswani et al. 2017,
"Attention is all you need"), in the pre-norm arrangement of ViT (Dosovitskiy et al. 2021):
``x + MHA(LN(x))`` then ``x + FFN(LN(x))``, a final LayerNorm, and a class token (BERT,
Devlin et al. 2019) or mean pooling for classification.

Scaled dot-product attention: ``softmax(Q Kᵀ / √d_head) V`` per head; the ``√d_head`` keeps the
logits' variance at 1 so the softmax does not saturate. One block has ``12·d² + 13·d``
parameters (QKV 3d²+3d, output d²+d, FFN 8d²+5d, two LayerNorms 4d). The FFN can be a mixture
of experts (:mod:`liandan.models.moe`, Switch Transformer): ``moe_experts > 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from liandan.models._sequence import as_sequence, sequence_shape
from liandan.models.moe import MoE, collect_aux, expert_counts, ffn
from liandan.registry import register_model


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention; the same arithmetic as ``nn.MultiheadAttention(dim, heads)``.

    ``qkv`` holds ``[W_q; W_k; W_v]`` stacked like MHA's ``in_proj_weight``, ``proj`` is its
    ``out_proj``: weights copy across one to one.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads, self.head_dim, self.causal = heads, dim // heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        nh, hs = self.heads, self.head_dim
        q, k, v = self.qkv(x).view(b, t, 3, nh, hs).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        if self.causal:  # position i attends to j ≤ i only
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        if key_padding_mask is not None:  # (B, T), True = padding, ignored as a key (MHA's convention)
            att = att.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        att = self.attn_drop(att.softmax(-1))  # (B, nh, T, T)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C): heads side by side
        return self.proj_drop(self.proj(y))


@dataclass
class MoESpec:
    """The FFN as a mixture of experts (``experts == 0``: a dense FFN)."""

    experts: int = 0
    top_k: int = 1
    capacity_factor: float = 1.25
    aux_weight: float = 0.01


class Block(nn.Module):
    """Pre-norm encoder block: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, moe: MoESpec) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp: nn.Module = (MoE(dim, hidden, moe.experts, moe.top_k, moe.capacity_factor, moe.aux_weight,
                                   "gelu", dropout) if moe.experts else ffn(dim, hidden, "gelu", dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerClassifier(nn.Module):
    """``embed`` (input -> ``(B, N, D)`` tokens) + positions + encoder + a linear head.

    ``pool="cls"`` prepends a learned class token and classifies from its final state;
    ``"mean"`` averages the final token states.
    """

    def __init__(self, embed: nn.Module, num_tokens: int, num_classes: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "cls", moe: MoESpec | None = None) -> None:
        super().__init__()
        self.embed, self.pool = embed, pool
        extra = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if extra else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + extra, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, moe or MoESpec()) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self._init()

    def _init(self) -> None:
        # ViT/timm initialisation: truncated normal(0.02) for positions and linear weights.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # -> (B, num_classes)
        h = self.embed(x)  # (B, N, D)
        b, n, _ = h.shape
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(b, -1, -1), h], 1)  # (B, 1 + N, D)
        h = self.drop(h + self.pos_embed[:, : h.shape[1]])  # shorter sequences use the first positions
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        return self.head(h[:, 0] if self.cls_token is not None else h.mean(1))  # (B, D) -> (B, K)

    @property
    def aux_loss(self) -> torch.Tensor | None:
        """The MoE load-balancing loss of the last forward, added to the loss by the trainer."""
        return collect_aux(self)

    @property
    def expert_counts(self) -> torch.Tensor:
        """Assignments per expert ``(moe layers, experts)`` (empty without MoE)."""
        return expert_counts(self)


class SequenceEmbed(nn.Module):
    """``(B, T, F)`` (or anything :func:`as_sequence` reads) -> ``(B, T, D)`` by one Linear."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(as_sequence(x))  # (B, T, D)


@register_model("transformer", input_kind="sequence", paper="Vaswani et al. 2017")
def transformer(
    num_classes: int = 2,
    input_shape: tuple[int, ...] = (50, 1),
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 4.0,
    dropout: float = 0.1,
    pool: Literal["cls", "mean"] = "cls",
    moe_experts: int = 0,
    moe_top_k: int = 1,
    capacity_factor: float = 1.25,
    aux_weight: float = 0.01,
) -> nn.Module:
    """Transformer encoder over (B, T, F) sequences (attention written out); optional MoE FFN.

    Args:
        input_shape: one sample's (T, F): sequence length × features; inferred from the data
        dim: model width d (a multiple of heads)
        depth: encoder blocks
        heads: attention heads, each dim / heads wide
        mlp_ratio: hidden width of each block's FFN as a multiple of the model width (4 in Vaswani et al.
            2017)
        dropout: dropout probability on attention weights, residual branches and embeddings
        pool: cls: classify from a learned class token (as BERT); mean: average the tokens' final states
        moe_experts: make each block's FFN a mixture of this many experts (Switch Transformer); 0: a dense FFN
        moe_top_k: experts each token is routed to when moe_experts > 0 (1: Switch; 2: GShard)
        capacity_factor: expert capacity ⌈capacity_factor · tokens · k / experts⌉ per forward in training;
            assignments beyond it are dropped (the token passes through the residual); ≤ 0: unlimited
        aux_weight: weight α of the Switch load-balancing loss added to the task loss (0.01 in Fedus et al.
            2021)
    """
    t, f = sequence_shape(tuple(input_shape))
    return TransformerClassifier(SequenceEmbed(f, dim), t, num_classes, dim, depth, heads, mlp_ratio, dropout, pool,
                                 MoESpec(moe_experts, moe_top_k, capacity_factor, aux_weight))
