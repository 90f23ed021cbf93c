"""Adam and AdamW whose step calls torch's fused kernel directly, without torch.optim's per-step
bookkeeping.

``torch.optim.Adam(fused=True).step`` spends, per parameter group and per step, a Python pass
over the parameters (``_init_group``: state lookups, dtype checks, list building) and a grouping
of the tensors by device and dtype before the one fused kernel call. On a CPU that bookkeeping
costs about as much as the kernel itself for a small model, and liandan steps two groups (weights
with decay, biases and norm parameters without): ``bench/trainer_overhead.py`` measured 15-20 µs
of a 0.8 ms step of a 200k-parameter MLP, a few percent of the whole run.

Once every parameter has its state (torch's own ``step`` creates it on the first step), the lists
the kernel takes never change: the parameters, first and second moments and step counters are
the same tensors every step; only the gradients are new. This class keeps those lists and calls
``torch._fused_adam(w)_`` with exactly the arguments torch's ``step`` passes, so weights and state
are bit-identical to ``torch.optim.Adam``/``AdamW`` (``tests/optim/test_lean_fused.py`` compares
every step, with AMSGrad, maximize, a moving rate and a checkpoint round trip). Anything else — a
closure, a gradient scaler's inf check, a parameter without a gradient this step, a tensor rate,
mixed devices or dtypes in a group, complex parameters — takes torch's own ``step``.
"""

from __future__ import annotations

from typing import Any

import torch

_Lists = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


class _LeanFusedStep:
    """Mixin over ``torch.optim.Adam`` (or AdamW) built with ``fused=True``."""

    param_groups: list[dict[str, Any]]
    state: Any

    def _lean_lists(self) -> list[_Lists] | None:
        """Per group: params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps; None if not lean-able."""
        cached = getattr(self, "_lean_cache", None)
        if cached is not None:
            return cached
        lists = []
        for g in self.param_groups:
            params = g["params"]
            if not (g["fused"] and not g["capturable"] and not g["differentiable"] and not torch.is_tensor(g["lr"])):
                return None
            states = [self.state.get(p) for p in params]
            if not params or not all(states):  # the first step: torch's step creates the state
                return None
            first = params[0]
            if any(p.device != first.device or p.dtype != first.dtype or p.is_complex() for p in params):
                return None
            lists.append((params, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                          [s["max_exp_avg_sq"] for s in states] if g["amsgrad"] else [],
                          [s["step"] for s in states]))
        self._lean_cache = lists
        return lists

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        lists = None
        if closure is None and getattr(self, "grad_scale", None) is None and getattr(self, "found_inf", None) is None:
            lists = self._lean_lists()
        grads = None
        if lists is not None:
            grads = [[p.grad for p in ps] for ps, *_ in lists]
            if any(g is None or g.is_sparse for gs in grads for g in gs):
                grads = None
        if grads is None:
            return super().step(closure)  # type: ignore[misc]
        decoupled = self.param_groups[0]["decoupled_weight_decay"]
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        for g, (params, exp_avgs, exp_avg_sqs, max_sqs, steps), gs in zip(self.param_groups, lists, grads, strict=True):
            beta1, beta2 = g["betas"]
            torch._foreach_add_(steps, 1)
            kernel(params, gs, exp_avgs, exp_avg_sqs, max_sqs, steps, amsgrad=g["amsgrad"], lr=g["lr"],
                   beta1=float(beta1), beta2=float(beta2), weight_decay=g["weight_decay"], eps=g["eps"],
                   maximize=g["maximize"], grad_scale=None, found_inf=None)
        return None

    # anything that can replace the state tensors or the groups drops the cached lists
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._lean_cache = None
        super().load_state_dict(state_dict)  # type: ignore[misc]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._lean_cache = None
        super().add_param_group(param_group)  # type: ignore[misc]


class Adam(_LeanFusedStep, torch.optim.Adam):
    """``torch.optim.Adam`` with the lean fused step (see the module docstring)."""


class AdamW(_LeanFusedStep, torch.optim.AdamW):
    """``torch.optim.AdamW`` with the lean fused step (see the module docstring)."""
