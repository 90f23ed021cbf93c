"""AdaBelief (Zhuang et al., NeurIPS 2020, "AdaBelief Optimizer: Adapting Stepsizes by the
Belief in Observed Gradients").

Adam scales the step by the EMA of g²; AdaBelief scales it by the EMA of (g − m)², the
"belief" in the current gradient direction: a gradient close to its running mean gives a large
step, a surprising one a small step.

    m_t = β1·m + (1−β1)·g
    s_t = β2·s + (1−β2)·(g − m_t)² + ε
    θ  ← θ − lr · m̂_t / (√ŝ_t + ε)          (m̂, ŝ bias-corrected)

Defaults follow the reference ``adabelief-pytorch`` 0.2.x (ε = 1e-16, decoupled weight decay)
without its RAdam-style rectification; a test checks step-for-step equality with that package
run with ``rectify=False``.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class AdaBelief(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16,
                 weight_decay: float = 0.0, amsgrad: bool = False, decoupled: bool = True) -> None:
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid AdaBelief hyper-parameters lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_var"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        st["max_exp_avg_var"] = torch.zeros_like(p)
                if group["weight_decay"]:
                    if group["decoupled"]:
                        p.mul_(1.0 - group["lr"] * group["weight_decay"])
                    else:
                        g = g.add(p, alpha=group["weight_decay"])
                st["step"] += 1
                m, s = st["exp_avg"], st["exp_avg_var"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                diff = g - m
                s.mul_(b2).addcmul_(diff, diff, value=1 - b2)
                if group["amsgrad"]:
                    torch.maximum(st["max_exp_avg_var"], s.add_(group["eps"]), out=st["max_exp_avg_var"])
                    s_hat = st["max_exp_avg_var"]
                else:
                    s_hat = s.add_(group["eps"])  # ε inside the EMA, as in the paper's Algorithm 2
                bc1 = 1 - b1 ** st["step"]
                bc2 = 1 - b2 ** st["step"]
                denom = (s_hat.sqrt() / math.sqrt(bc2)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / bc1)
        return loss
