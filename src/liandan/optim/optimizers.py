"""Optimizers, registered with ``@register_optimizer``: the notes' SGD, momentum, RMSProp,
Adagrad, Adam, AdamW and AdaBelief.

By default weight decay skips biases and normalisation parameters (1-D tensors): decaying a
BatchNorm scale or a bias towards zero constrains the model without reducing overfitting.

Kernels: torch's *fused* kernels (one kernel updates every parameter) where torch has them for
the parameters' device (SGD, Adagrad, Adam, AdamW on CPU and GPUs), else the multi-tensor
(``foreach``) ones. On a CPU torch defaults to a Python loop over parameters, which dominates the
step of a small model: for LeNet-5 (62k parameters) fused AdamW steps 3-4x faster than the
default (bench/trainer_overhead.py sees it in the whole run). Adam and AdamW then call the fused
kernel without torch.optim's per-step bookkeeping (``optim/lean_fused.py``; bit-identical).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from liandan.optim import lazy_dynamo
from liandan.optim.adabelief import AdaBelief
from liandan.optim.lean_fused import Adam, AdamW
from liandan.registry import OPTIMIZERS, register_optimizer

lazy_dynamo.install()  # torch.optim imports torch._dynamo (~1 s) only when something compiles

Params = Iterable[dict]


def _kernel(params: Params) -> dict:
    """``fused=True`` when the parameters' device has fused kernels, else ``foreach=True``.

    ``params`` must be a list of parameter groups (the builders below get one from
    :func:`param_groups`), so looking at it does not consume it.
    """
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    first = next((p for g in params for p in g["params"]), None)
    fused = first is not None and first.device.type in _get_fused_kernels_supported_devices() and all(
        p.is_floating_point() for g in params for p in g["params"])
    return {"fused": True} if fused else {"foreach": True}


@register_optimizer("sgd")
def sgd(params: Params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0, nesterov: bool = False,
        dampening: float = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        momentum: momentum factor; 0: plain SGD (0.9 is usual)
        nesterov: Nesterov's look-ahead momentum (needs momentum > 0 and dampening 0)
        dampening: share of each gradient held back from the momentum buffer
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                           weight_decay=weight_decay, **_kernel(params))


@register_optimizer("momentum")
def momentum(params: Params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
             nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum 0.9 (Polyak 1964): velocity smooths noisy gradients.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        momentum: heavy-ball momentum factor: the share of the previous velocity kept each step
        nesterov: take the gradient at the look-ahead point (as the nesterov optimizer does)
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           **_kernel(params))


@register_optimizer("nesterov")
def nesterov(params: Params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (Sutskever et al. 2013): the gradient is taken at the look-ahead point.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        momentum: momentum factor: the share of the previous velocity kept each step
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay,
                           **_kernel(params))


@register_optimizer("rmsprop")
def rmsprop(params: Params, lr: float, weight_decay: float = 0.0, alpha: float = 0.99, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False) -> torch.optim.Optimizer:
    """RMSProp (Hinton 2012): divide by a running RMS of recent gradients.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        alpha: decay of the running mean of squared gradients (0.9 in Hinton's lecture, 0.99 in torch)
        eps: added to the denominator for numerical stability
        momentum: momentum on the scaled step; 0: none
        centered: divide by the gradient's estimated variance instead of its raw second moment
    """
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered,
                               weight_decay=weight_decay, foreach=True)


@register_optimizer("adagrad")
def adagrad(params: Params, lr: float, weight_decay: float = 0.0, eps: float = 1e-10) -> torch.optim.Optimizer:
    """Adagrad (Duchi et al. 2011): per-parameter rates shrink with the sum of squared gradients.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        eps: added to the denominator for numerical stability
    """
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay, **_kernel(params))


@register_optimizer("adam")
def adam(params: Params, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015): momentum + RMSProp with bias correction; L2 decay inside the gradient.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: L2 penalty added to the gradient (the recipe's optim.weight_decay); biases and norm
            parameters are exempt unless optim.decay_bias_and_norm
        betas: decay rates (β1, β2) of the running means of the gradient and of its square
        eps: added to the denominator for numerical stability
        amsgrad: divide by the largest second moment seen so far (AMSGrad, Reddi et al. 2018)
    """
    return Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, **_kernel(params))


@register_optimizer("adamw")
def adamw(params: Params, lr: float, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the gradient.

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: decoupled weight decay: weights shrink by lr·weight_decay each step, outside the
            adaptive update (the recipe's optim.weight_decay)
        betas: decay rates (β1, β2) of the running means of the gradient and of its square
        eps: added to the denominator for numerical stability
        amsgrad: divide by the largest second moment seen so far (AMSGrad, Reddi et al. 2018)
    """
    return AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, **_kernel(params))


@register_optimizer("adabelief")
def adabelief(params: Params, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-16, amsgrad: bool = False, decoupled: bool = True) -> torch.optim.Optimizer:
    """AdaBelief (Zhuang et al. 2020): step size from the belief (g − m)² instead of g².

    Args:
        lr: learning rate (the recipe's optim.lr)
        weight_decay: weight decay (the recipe's optim.weight_decay): decoupled as AdamW's, or L2 if not
            decoupled
        betas: decay rates (β1, β2) of the running means of the gradient and of its square
        eps: added to the belief (g − m)² inside the square root (1e-16 in the paper)
        amsgrad: divide by the largest second moment seen so far (AMSGrad, Reddi et al. 2018)
        decoupled: decay the weights directly (AdamW-style); false: add an L2 term to the gradient
    """
    return AdaBelief(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                     decoupled=decoupled)


def param_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool = False,
                 include_frozen: bool = False) -> list[dict]:
    """Two groups: weights with decay, and biases/norm parameters (ndim ≤ 1) without.

    ``include_frozen``: frozen parameters join too (they get no gradient, so the optimizer skips
    them, weight decay included) so that unfreezing later trains them with no new group."""
    params = [p for p in model.parameters() if p.requires_grad or include_frozen]
    if decay_bias_and_norm or not weight_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, options: dict,
                    decay_bias_and_norm: bool = False, include_frozen: bool = False) -> torch.optim.Optimizer:
    entry = OPTIMIZERS.get(name)
    opts = entry.validate(options, where="optim")
    groups = param_groups(model, weight_decay, decay_bias_and_norm, include_frozen)
    return entry.fn(groups, lr=lr, weight_decay=weight_decay, **opts)
