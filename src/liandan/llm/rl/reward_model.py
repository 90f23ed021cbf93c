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

import json
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
            cols = torch.arange(room, device=ids.device)[None, :] + shift[:, None]  # (B, room)
            cols = cols.clamp(max=ids.shape[1] - 1)
            ids, n = ids.gather(1, cols), n.clamp(max=room)
        h = self.body(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, D)
        last = (n - 1).clamp(min=0)  # (B,) the last real token
        return self.head(h[torch.arange(len(ids), device=ids.device), last]).squeeze(-1)  # (B,)

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


def pair_batches(chosen: torch.Tensor, rejected: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0):
    """Pairs as the ``pairwise_preference`` task's batches: x ``(N, 2, T)`` (chosen first), y ``(N,)`` ones."""
    from liandan.data.loaders import TensorBatches

    return TensorBatches(torch.stack([chosen, rejected], 1), torch.ones(len(chosen)), batch_size, shuffle=shuffle,
                         seed=seed)


def _pair_data(run, base: Path, pairs: int | None, batch_size: int, seed: int, rng: np.random.Generator):
    """The pairs of every split of the run as a DataModule (val: None when the run has no val split)."""
    from dataclasses import replace

    from liandan.data.pipeline import DataModule
    from liandan.data.tokenize import load_tokenizer
    from liandan.llm.rl.rollout import problems

    data = run.load_data()
    tok = load_tokenizer(base / run.info.tokenizer)
    final = run.info.extras.get("final_after")
    final_id = tok.encode(final)[0] if final else None
    train_p, test_p = problems(run, data, "train"), problems(run, data, "test")
    choices = sorted({t for v in train_p.buckets.values() for _, a in v for t in a[:-1]} - {final_id})
    if len(choices) < 2:
        raise LiandanError(f"{base}: its answers use fewer than two tokens; no rejected answers can be made")
    split = {"train": make_pairs(train_p, rng, pairs, final_id, choices),  # (N, T) chosen, (N, T) rejected
             "test": make_pairs(test_p, rng, None, final_id, choices)}
    if len(data.indices.get("val", [])):  # drawn last: the train and test pairs are those of earlier versions
        split["val"] = make_pairs(problems(run, data, "val"), rng, None, final_id, choices)
    batches = {k: pair_batches(c, r, batch_size, shuffle=k == "train", seed=seed) for k, (c, r) in split.items()}
    sizes = {k: len(c) for k, (c, _) in split.items()}
    info = replace(run.info, task="pairwise_preference", input_shape=(2, split["train"][0].shape[1]), sizes=sizes)
    return DataModule(info, batches["train"], batches.get("val"), batches["test"], data.source, {}), sizes


def reward_model(run_dir: str | Path, *, pairs: int | None = 4000, epochs: int = 3, lr: float = 3e-4,
                 batch_size: int = 64, seed: int = 0, out: str | Path | None = None, quiet: bool = False,
                 overrides: list[str] | dict | None = None, callbacks: list | None = None,
                 resume: bool = False) -> dict[str, Any]:
    """Train a Bradley–Terry reward model on ``run_dir``'s problems; returns its summary.json.

    ``pairs``: training pairs drawn from the train split (None: one per problem); the held-out
    pairs are the test split's (and the val split's, logged each epoch). It trains through the
    trainer (task ``pairwise_preference``, :mod:`liandan.llm.rl.fit`: ``overrides`` of its recipe,
    ``callbacks``, ``resume`` of an interrupted run in ``out``). The directory (``--out``) holds
    ``reward_model.json``, the weights in ``checkpoints/reward_model.safetensors``, the trainer's
    checkpoints, metrics.csv and summary.json (``final.test.pairwise_accuracy``); give it to
    :func:`~liandan.llm.rl.grpo` as ``reward``."""
    from liandan.llm.rl.fit import echo_fn, open_run_dir, run_facts, run_trainer, trainer_recipe, write_report
    from liandan.llm.rl.runio import REWARD_MODEL_JSON, check_lm_run
    from liandan.recipe import load_recipe
    from liandan.training import checkpoint as ck
    from liandan.training.loop import evaluate
    from liandan.training.run import load_run, seed_everything
    from liandan.training.rundir import write_json
    from liandan.training.setup import pick_device

    if epochs < 1 or lr <= 0 or batch_size < 1 or (pairs is not None and pairs < 1):
        raise LiandanError("reward-model: need epochs ≥ 1, lr > 0, batch_size ≥ 1, pairs ≥ 1")
    base = check_lm_run(run_dir, "reward-model")
    echo = echo_fn(quiet)
    seed_everything(seed)
    run = load_run(base)
    body, width = _body(run.model)
    rm = RewardModel(body, width, run.info.vocab_size, run.info.pad_id or 0)
    for p in rm.parameters():
        p.requires_grad_(True)
    data, sizes = _pair_data(run, base, pairs, batch_size, seed, np.random.default_rng(seed))
    recipe = load_recipe({**run.recipe.to_dict(), "name": f"{run.recipe.name}-rm"})
    options = {"pairs": pairs, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
               **({"overrides": overrides} if overrides else {})}
    out_dir, resume_path = open_run_dir(base, recipe, f"reward model on {base} (liandan reward-model)", out, options,
                                        resume)
    tr = trainer_recipe(recipe, "pairwise_preference", lr, epochs, overrides)
    device = pick_device(tr.train.device)
    rm.to(device)
    test = lambda: evaluate(rm, data.eval_batches("test"), bradley_terry_loss, data.info, device)  # noqa: E731
    before = test()
    trainer = None
    try:
        trainer = run_trainer(tr, data, rm, bradley_terry_loss, out_dir, device, list(callbacks or []), resume_path,
                              echo, quiet)
    finally:
        facts = run_facts(trainer) if trainer is not None else {"status": "failed"}
        summary = {"name": recipe.name, **facts, "method": "reward_model", "base_run": str(base), "epochs": epochs,
                   "options": json.loads(json.dumps(options)), "pairs": sizes,
                   "before": {"test": {"pairwise_accuracy": before["pairwise_accuracy"]}}, "final": {},
                   "params": sum(p.numel() for p in rm.parameters())}
        if trainer is not None and trainer.status == "completed":
            summary["final"] = {k: evaluate(rm, data.eval_batches(k), bradley_terry_loss, data.info, device)
                                for k in ("train", "val", "test") if getattr(data, k) is not None}
            rm.eval()
            ck.save_weights(rm, out_dir / "checkpoints" / "reward_model.safetensors")
            summary["weights"] = "reward_model"
            write_json(out_dir / REWARD_MODEL_JSON, {"base_run": str(base), "width": width,
                                                     "vocab_size": run.info.vocab_size, "pad_id": rm.pad_id})
        write_json(out_dir / "summary.json", summary)
    if summary["final"]:
        echo(f"reward model: test pairwise accuracy {before['pairwise_accuracy']:.4f} -> "
             f"{summary['final']['test']['pairwise_accuracy']:.4f}  ({out_dir})")
    else:
        echo(f"reward model: {summary['status']}: {summary.get('reason', '')}  ({out_dir})")
    write_report(tr, out_dir, echo)
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
