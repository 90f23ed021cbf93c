"""One tiny arith GPT base run (1 layer, width 32, 600 problems, 1 epoch) shared by the fine-tuning
tests of this folder, and the recipe they fine-tune it with."""

from __future__ import annotations

import pytest

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
MODEL = {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2}


def arith_recipe(operators: str, **extra) -> dict:
    return {"name": f"arith{operators}", "seed": 0, "data": {"source": "arith", "n": 600, "operators": operators},
            "model": dict(MODEL), "optim": {"lr": 3e-3}, "train": {"epochs": 1}, **extra}


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    import liandan

    return liandan.train(arith_recipe("+"), overrides=FAST, out=tmp_path_factory.mktemp("llm") / "base", quiet=True)


def lm_steps(model, ids, lr: float, steps: int = 5, **call) -> list[float]:
    """``steps`` Adam steps of next-token loss on ``ids`` over the trainable parameters; the losses."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        logits = model(input_ids=ids, **call).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses

