"""Mixture of experts: a router sends each token to its top-k expert FFNs.

- Sparsely-gated MoE layer: Shazeer et al. 2017, "Outrageously large neural networks".
- Switch Transformer (Fedus, Zoph & Shazeer 2021, JMLR 2022): top-1 routing, the output is the
  expert's output scaled by its router probability (so the router gets a gradient), a fixed
  expert *capacity* ``⌈capacity_factor · tokens · k / experts⌉`` beyond which assignments are
  dropped (the token then passes through the residual connection unchanged), and the auxiliary
  load-balancing loss ``α · E · Σ_e f_e · P_e`` (their eq. 4): ``f_e`` is the fraction of
  assignments sent to expert ``e``, ``P_e`` the mean router probability of ``e``. It is 1·α when
  routing is uniform and grows as routing collapses onto a few experts.
- For k > 1 the k gates are renormalised to sum to 1 and first choices fill the experts before
  second choices (GShard, Lepikhin et al. 2021).

Tokens are only dropped in training; in eval every assignment is kept, so a prediction never
depends on which other samples share its batch. Each layer counts the assignments each expert
received (``counts``, cumulative until :func:`reset_expert_counts`) and those it dropped.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from liandan.models._layers import activation as make_activation
from liandan.registry import register_model


def ffn(dim: int, hidden: int, act: str = "gelu", dropout: float = 0.0) -> nn.Sequential:
    """The transformer's position-wise feed-forward network: Linear → act → dropout → Linear."""
    return nn.Sequential(nn.Linear(dim, hidden), make_activation(act), nn.Dropout(dropout), nn.Linear(hidden, dim))


class MoE(nn.Module):
    """Top-k mixture of ``experts`` FFNs on the last axis of ``(..., dim)`` inputs."""

    def __init__(self, dim: int, hidden: int, experts: int = 4, top_k: int = 1, capacity_factor: float = 1.25,
                 aux_weight: float = 0.01, act: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"moe top_k={top_k} must be between 1 and experts={experts}")
        self.num_experts, self.top_k = experts, top_k
        self.capacity_factor, self.aux_weight = capacity_factor, aux_weight
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(ffn(dim, hidden, act, dropout) for _ in range(experts))
        # utilisation histogram: not model state, so not saved with the weights
        self.register_buffer("counts", torch.zeros(experts, dtype=torch.int64), persistent=False)
        self.register_buffer("dropped", torch.zeros((), dtype=torch.int64), persistent=False)
        self.aux: torch.Tensor | None = None  # load-balancing loss of the last forward

    def capacity(self, tokens: int) -> int | None:
        """Most assignments one expert takes per forward (None: unlimited, as in eval)."""
        if not self.training or self.capacity_factor <= 0:
            return None
        return math.ceil(self.capacity_factor * tokens * self.top_k / self.num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, D) tokens
        n, e, k = x.shape[0], self.num_experts, self.top_k
        probs = self.router(x).softmax(-1)  # (N, E)
        top_p, top_i = probs.topk(k, dim=-1)  # (N, k)
        gates = top_p if k == 1 else top_p / top_p.sum(-1, keepdim=True)  # (N, k)
        onehot = F.one_hot(top_i, e)  # (N, k, E)
        # Position of each assignment in its expert's queue: all first choices in token order, then
        # all second choices, ... (k·N, E) -> (N, k).
        queue = onehot.transpose(0, 1).reshape(k * n, e)
        pos = ((queue.cumsum(0) - 1) * queue).sum(-1).view(k, n).t()
        cap = self.capacity(n)
        keep = pos < cap if cap is not None else torch.ones_like(pos, dtype=torch.bool)  # (N, k)
        # Switch load balancing (eq. 4), with f over all k choices: E · Σ_e f_e · P_e.
        f = onehot.float().mean((0, 1))  # (E,) fraction of assignments per expert
        p_mean = probs.mean(0)  # (E,) mean router probability
        self.aux = self.aux_weight * e * (f * p_mean).sum()
        out = torch.zeros_like(x)  # dropped assignments contribute nothing
        for j, expert in enumerate(self.experts):
            tok, slot = ((top_i == j) & keep).nonzero(as_tuple=True)  # tokens routed (and kept) to j
            if len(tok):
                y = gates[tok, slot].unsqueeze(1) * expert(x[tok])  # (n_j, D)
                out.index_add_(0, tok, y.to(out.dtype))  # (autocast may run the expert in bf16)
        with torch.no_grad():
            self.counts += torch.bincount(top_i[keep], minlength=e)
            self.dropped += (~keep).sum()
        return out.view(shape)

    def __getstate__(self) -> dict:
        # The last loss is a non-leaf tensor: drop it so copy.deepcopy and pickling keep working.
        state = self.__dict__.copy()
        state["aux"] = None
        return state


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def collect_aux(model: nn.Module) -> torch.Tensor | None:
    """Sum of the load-balancing losses of every MoE layer's last forward (None without MoE)."""
    losses = [m.aux for m in moe_layers(model) if m.aux is not None]
    return torch.stack(losses).sum() if losses else None


def expert_counts(model: nn.Module) -> torch.Tensor:
    """Assignments per expert, ``(layers, experts)``, since the last :func:`reset_expert_counts`."""
    layers = moe_layers(model)
    return torch.stack([m.counts for m in layers]) if layers else torch.zeros(0, 0, dtype=torch.int64)


def reset_expert_counts(model: nn.Module) -> None:
    for m in moe_layers(model):
        m.counts.zero_()
        m.dropped.zero_()


class MoEMLP(nn.Module):
    """Flatten → Linear → [x + MoE(LayerNorm(x))] × layers → LayerNorm → Linear.

    ``aux_loss`` (read by the trainer after each forward) sums the layers' balancing losses;
    ``expert_counts`` is the utilisation histogram ``(layers, experts)``.
    """

    def __init__(self, in_features: int, num_classes: int, dim: int, hidden: int, layers: int, experts: int,
                 top_k: int, capacity_factor: float, aux_weight: float, act: str, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(in_features, dim), make_activation(act))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.moes = nn.ModuleList(MoE(dim, hidden, experts, top_k, capacity_factor, aux_weight, act, dropout)
                                  for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, num_classes)
        h = self.embed(x)  # (B, dim)
        for norm, moe in zip(self.norms, self.moes, strict=True):
            h = h + moe(norm(h))  # residual: a dropped token keeps h
        return self.head(self.norm(h))

    @property
    def aux_loss(self) -> torch.Tensor | None:
        return collect_aux(self)

    @property
    def expert_counts(self) -> torch.Tensor:
        return expert_counts(self)


@register_model("moe_mlp", input_kind="any", paper="Shazeer et al. 2017; Fedus et al. 2021 (Switch Transformer)")
def moe_mlp(
    num_classes: int,
    input_shape: tuple[int, ...] = (64,),
    dim: int = 64,
    hidden: int = 128,
    layers: int = 1,
    experts: int = 4,
    top_k: int = 1,
    capacity_factor: float = 1.25,
    aux_weight: float = 0.01,
    activation: Literal["relu", "gelu", "silu", "tanh"] = "gelu",
    dropout: float = 0.0,
) -> nn.Module:
    """MLP whose hidden blocks are top-k mixtures of experts with Switch load balancing.

    Args:
        input_shape: one sample's shape, inferred from the data; flattened
        dim: width of the residual stream the expert blocks read and write
        hidden: hidden width of each expert's FFN
        layers: residual mixture-of-experts blocks
        experts: expert FFNs per block
        top_k: experts each sample is routed to (1: Switch Transformer; 2: GShard)
        capacity_factor: expert capacity ⌈capacity_factor · tokens · k / experts⌉ per forward in training;
            assignments beyond it are dropped (the token passes through the residual); ≤ 0: unlimited
        aux_weight: weight α of the Switch load-balancing loss added to the task loss (0.01 in Fedus et al.
            2021)
        activation: activation inside the experts and after the input projection
        dropout: dropout probability inside each expert's FFN
    """
    return MoEMLP(math.prod(input_shape), num_classes, dim, hidden, layers, experts, top_k, capacity_factor,
                  aux_weight, activation, dropout)
