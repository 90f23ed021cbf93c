"""The lean fused Adam/AdamW step calls torch's fused kernel without torch.optim's bookkeeping:
weights and optimizer state must be bit-identical to torch's own classes, step after step."""

from __future__ import annotations

import pytest
import torch

from liandan.optim.lean_fused import Adam, AdamW


def _params(g: torch.Generator) -> list[torch.Tensor]:
    # odd sizes: the vectorised kernels have tails
    return [torch.randn(shape, generator=g).requires_grad_() for shape in [(257, 33), (31,), (7, 5, 3), (1000,)]]


def _train(cls, steps: int = 30, reload_at: int | None = None, **kw) -> tuple[list[torch.Tensor], dict]:
    g = torch.Generator().manual_seed(0)
    params = _params(g)
    groups = [{"params": [params[0], params[2]], "weight_decay": 0.05},
              {"params": [params[1], params[3]], "weight_decay": 0.0}]
    opt = cls(groups, lr=3e-3, fused=True, **kw)
    for s in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * (s + 1)
        if s == 7:
            params[1].grad = None  # a parameter without a gradient this step: torch's path
        for group in opt.param_groups:  # a schedule moves the rate every step
            group["lr"] = 3e-3 * (1 + s) / steps
        opt.step()
        if s == reload_at:  # a checkpoint round trip replaces the state tensors
            sd = opt.state_dict()
            opt = cls(groups, lr=3e-3, fused=True, **kw)
            opt.load_state_dict(sd)
    return [p.detach() for p in params], opt.state_dict()


CASES = [(Adam, torch.optim.Adam, {}), (Adam, torch.optim.Adam, {"weight_decay": 0.01, "amsgrad": True}),
         (AdamW, torch.optim.AdamW, {}), (AdamW, torch.optim.AdamW, {"amsgrad": True, "maximize": True}),
         (AdamW, torch.optim.AdamW, {"betas": (0.5, 0.9), "eps": 1e-6})]


@pytest.mark.parametrize(("ours", "theirs", "kw"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
@pytest.mark.parametrize("reload_at", [None, 12])
def test_bit_identical_to_torch(ours, theirs, kw: dict, reload_at: int | None) -> None:
    mine, my_state = _train(ours, reload_at=reload_at, **kw)
    ref, ref_state = _train(theirs, reload_at=reload_at, **kw)
    assert all(torch.equal(a, b) for a, b in zip(mine, ref, strict=True))
    for i, st in ref_state["state"].items():
        assert all(torch.equal(st[k], my_state["state"][i][k]) for k in st)
    assert my_state["param_groups"] == ref_state["param_groups"]  # checkpoints stay interchangeable


def test_steps_without_torch_bookkeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first step (which creates the state) torch's generic step is not called again."""
    calls = []
    real = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: calls.append(1) or real(self, closure))
    g = torch.Generator().manual_seed(0)
    params = _params(g)
    opt = AdamW(params, lr=1e-3, fused=True)
    for _ in range(5):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    assert len(calls) == 1
