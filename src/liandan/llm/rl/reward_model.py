"""A learned reward model: a scalar head on a run's transformer, trained on preference pairs.

The Bradley–Terry model (Bradley & Terry 1952) takes P(chosen ≻ rejected) = σ(r(c) − r(r)); the
reward model maximises its likelihood, i.e. minimises (Ouyang et al. 2022, "InstructGPT", eq. 1;
TRL's ``RewardTrainer``)::

    L = −log σ(r_θ(x, y_chosen) − r_θ(x, y_rejected))

r_θ reads the whole sequence and scores the hidden state of its last real token (as
``GPT2ForSequenceClassification``); its transformer starts from the run's trained weights (the
InstructGPT reward model starts from the SFT model). Pairs come from the run's own problems:
chosen = the right answer, rejected = the same answer with one token of the (final) answer
changed to another token that answers use (arith: a wrong digit). The report is the pairwise
accuracy, the share of held-out (test-split) pairs with r(chosen) > r(rejected).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liandan.errors import LiandanError


class RewardModel(nn.Module):
    """Token ids ``(B, T)`` (right-padded with ``pad_id``) -> one scalar reward per row ``(B,)``."""

    def __init__(self, body: nn.Module, width: int, vocab_size: int, pad_id: int = 0) -> None:
        super().__init__()
        self.body, self.head = body, nn.Linear(width, 1)
        self.vocab_size, self.pad_id = vocab_size, pad_id
        nn.init.normal_(self.head.weight, std=width**-0.5)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = (ids != self.pad_id).sum(1)  # (B,) real tokens (right padding)
        room = self.max_positions
        if ids.shape[1] > room:  # rows longer than the positions lose their first tokens (a sliding window)
            shift = (n - room).clamp(min=0)  # (B,)
            cols = (torch.arange(room)[None, :] + shift[:, None]).clamp(max=ids.shape[1] - 1)  # (B, room)
            ids, n = ids.gather(1, cols), n.clamp(max=room)
        h = self.body(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, D)
        last = (n - 1).clamp(min=0)  # (B,) the last real token
        return self.head(h[torch.arange(len(ids)), last]).squeeze(-1)  # (B,)

    @property
    def max_positions(self) -> int:
        c = self.body.config
        return int(getattr(c, "n_positions", None) or c.max_position_embeddings)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean −log σ(r_chosen − r_rejected) over pairs ``(B,)``."""
    return -F.logsigmoid(chosen - rejected).mean()


def _body(model: nn.Module) -> tuple[nn.Module, int]:
    hf = getattr(model, "hf", None)
    if hf is None or not hasattr(hf, "base_model"):
        raise LiandanError("reward-model: the run's model is not a Hugging Face transformer (gpt)")
    return hf.base_model, int(hf.config.hidden_size)


def corrupt(answer: list[int], choices: list[int], rng: np.random.Generator, final_id: int | None = None) -> list[int]:
    """``answer`` (``<eos>`` last) with one token of its final answer replaced by another of ``choices``."""
    start = len(answer) - answer[::-1].index(final_id) if final_id is not None and final_id in answer else 0
    spots = [j for j in range(start, len(answer) - 1) if answer[j] in choices]
    if not spots:
        return answer
    j = int(rng.choice(spots))
    out = list(answer)
    out[j] = int(rng.choice([c for c in choices if c != answer[j]]))
    return out


def make_pairs(probs, rng: np.random.Generator, n: int | None, final_id: int | None,
               choices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, T)`` chosen and rejected id rows (right-padded with 0) from a split's problems."""
    items = [pa for v in probs.buckets.values() for pa in v]
    order = rng.permutation(len(items))[: n or len(items)]
    chosen, rejected = [], []
    for i in order:
        p, a = items[i]
        bad = corrupt(a, choices, rng, final_id)
        if bad != a:
            chosen.append(p + a)
            rejected.append(p + bad)
    width = max(len(s) for s in chosen + rejected)

    def pad(rows: list[list[int]]) -> torch.Tensor:
        out = torch.zeros(len(rows), width, dtype=torch.int64)
        for k, s in enumerate(rows):
            out[k, : len(s)] = torch.tensor(s)
        return out

    return pad(chosen), pad(rejected)


@torch.no_grad()
def pairwise_accuracy(rm: RewardModel, chosen: torch.Tensor, rejected: torch.Tensor, batch: int = 512) -> float:
    rm.eval()
    wins = sum(float((rm(chosen[i:i + batch]) > rm(rejected[i:i + batch])).sum()) for i in range(0, len(chosen), batch))
    return wins / max(len(chosen), 1)


def reward_model(run_dir: str | Path, *, pairs: int | None = 4000, epochs: int = 3, lr: float = 3e-4,
                 batch_size: int = 64, seed: int = 0, out: str | Path | None = None,
                 quiet: bool = False) -> dict[str, Any]:
    """Train a Bradley–Terry reward model on ``run_dir``'s problems; returns its summary.json.

    ``pairs``: training pairs drawn from the train split (None: one per problem); the held-out
    pairs are the test split's. The directory (``--out``) holds ``reward_model.json``, the
    weights in ``checkpoints/reward_model.safetensors``, metrics.csv and summary.json
    (``final.test.pairwise_accuracy``); give it to :func:`~liandan.llm.rl.grpo` as ``reward``."""
    from liandan.llm.rl.rollout import problems
    from liandan.llm.rl.runio import REWARD_MODEL_JSON, check_lm_run, start_run_dir
    from liandan.recipe import load_recipe
    from liandan.training import checkpoint as ck
    from liandan.training.run import load_run, seed_everything
    from liandan.training.rundir import MetricsLog, write_json
    from liandan.training.setup import torch_threads

    if epochs < 1 or lr <= 0 or batch_size < 1 or (pairs is not None and pairs < 1):
        raise LiandanError("reward-model: need epochs ≥ 1, lr > 0, batch_size ≥ 1, pairs ≥ 1")
    base = check_lm_run(run_dir, "reward-model")
    echo = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    seed_everything(seed)
    run = load_run(base)
    body, width = _body(run.model)
    rm = RewardModel(body, width, run.info.vocab_size, run.info.pad_id or 0)
    for p in rm.parameters():
        p.requires_grad_(True)
    data = run.load_data()
    from liandan.data.tokenize import load_tokenizer

    tok = load_tokenizer(base / run.info.tokenizer)
    final = run.info.extras.get("final_after")
    final_id = tok.encode(final)[0] if final else None
    train_p, test_p = problems(run, data, "train"), problems(run, data, "test")
    rng = np.random.default_rng(seed)
    choices = sorted({t for v in train_p.buckets.values() for _, a in v for t in a[:-1]} - {final_id})
    if len(choices) < 2:
        raise LiandanError(f"{base}: its answers use fewer than two tokens; no rejected answers can be made")
    tr_c, tr_r = make_pairs(train_p, rng, pairs, final_id, choices)  # (N, T) each
    te_c, te_r = make_pairs(test_p, rng, None, final_id, choices)
    recipe = load_recipe({**run.recipe.to_dict(), "name": f"{run.recipe.name}-rm"})
    out_dir = start_run_dir(base, recipe, f"reward model on {base} (liandan reward-model)", out)
    log = MetricsLog(out_dir / "metrics.csv", ["pairwise_accuracy"])
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    with torch_threads(model=rm):
        t0, step, gen = time.perf_counter(), 0, torch.Generator().manual_seed(seed)
        before = pairwise_accuracy(rm, te_c, te_r)
        try:
            for epoch in range(1, epochs + 1):
                rm.train()
                for idx in torch.randperm(len(tr_c), generator=gen).split(batch_size):
                    loss = bradley_terry_loss(rm(tr_c[idx]), rm(tr_r[idx]))  # scalar, over (b,) pairs
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0))
                    opt.step()
                    step += 1
                    log.write({"epoch": epoch, "step": step, "split": "train", "loss": float(loss.detach()), "lr": lr,
                               "grad_norm": grad_norm, "wall_s": time.perf_counter() - t0})
                acc = pairwise_accuracy(rm, te_c, te_r)
                with torch.no_grad():
                    test_loss = float(bradley_terry_loss(rm(te_c), rm(te_r)))
                log.write({"epoch": epoch, "step": step, "split": "test", "loss": test_loss, "pairwise_accuracy": acc,
                           "wall_s": time.perf_counter() - t0})
                echo(f"reward-model epoch {epoch}/{epochs}: test pairwise accuracy {acc:.4f}  loss {test_loss:.4f}")
        finally:
            log.close()
    rm.eval()
    ck.save_weights(rm, out_dir / "checkpoints" / "reward_model.safetensors")
    doc = {"base_run": str(base), "width": width, "vocab_size": run.info.vocab_size, "pad_id": rm.pad_id}
    write_json(out_dir / REWARD_MODEL_JSON, doc)
    summary = {"name": recipe.name, "status": "completed", "method": "reward_model", "base_run": str(base),
               "epochs": epochs, "steps": step, "wall_s": round(time.perf_counter() - t0, 3),
               "weights": "reward_model", "pairs": {"train": len(tr_c), "test": len(te_c)},
               "before": {"test": {"pairwise_accuracy": before}},
               "final": {"train": {"pairwise_accuracy": pairwise_accuracy(rm, tr_c, tr_r)},
                         "test": {"pairwise_accuracy": acc, "loss": test_loss}},
               "params": sum(p.numel() for p in rm.parameters())}
    write_json(out_dir / "summary.json", summary)
    return {"dir": str(out_dir), **summary}


def load_reward_model(path: str | Path) -> RewardModel:
    """The reward model a ``liandan reward-model`` directory holds (its transformer rebuilt from its recipe)."""
    from liandan.data.pipeline import DataInfo
    from liandan.llm.rl.runio import REWARD_MODEL_JSON
    from liandan.recipe import load_recipe
    from liandan.training import checkpoint as ck
    from liandan.training.run import build_recipe_model
    from liandan.training.rundir import read_json

    path = Path(path)
    if not (path / REWARD_MODEL_JSON).is_file():
        raise LiandanError(f"{path} is not a reward-model directory (no {REWARD_MODEL_JSON})")
    doc = read_json(path / REWARD_MODEL_JSON)
    info = DataInfo.from_dict(read_json(path / "data.json"))
    body, width = _body(build_recipe_model(load_recipe(path / "recipe.yaml"), info, base_weights=False))
    rm = RewardModel(body, width, doc["vocab_size"], doc["pad_id"])
    ck.load_weights(rm, path / "checkpoints" / "reward_model.safetensors")
    return rm.eval()
