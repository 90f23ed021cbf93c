"""A GRPO run: the policy, its prompt batches and reward, handed to the one trainer (task ``grpo``,
:mod:`liandan.llm.rl.tasks`), and the run directory around it (test exact match before and after).

metrics.csv has the trainer's rows: one ``step`` row per step (loss, reward, reward_std, kl,
clip_frac, completion_len, lr, grad_norm), ``val`` rows with the greedy exact match every
``eval_every`` steps, and the epoch's ``train`` row (the means over the run).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from liandan.errors import LiandanError
from liandan.training.callbacks import Callback
from liandan.training.callbacks.csv_logger import CSVLogger


def _reward_fn(reward: Any, run, final_after: str | None):
    """A rule reward bound to the run's final marker, a callable, or a learned reward model."""
    from liandan.llm.rl.reward import resolve_reward
    from liandan.llm.rl.runio import REWARD_MODEL_JSON

    if isinstance(reward, str | Path) and (Path(reward) / REWARD_MODEL_JSON).is_file():
        from liandan.llm.rl.reward_model import load_reward_model

        rm = load_reward_model(reward)
        if rm.vocab_size != run.info.vocab_size:
            raise LiandanError(f"reward: {reward} scores a vocabulary of {rm.vocab_size} tokens, the policy "
                               f"has {run.info.vocab_size}")
        return rm, f"reward_model:{reward}"
    return resolve_reward(reward if callable(reward) else str(reward), final_after), (
        getattr(reward, "__name__", "callable") if callable(reward) else str(reward))


def _test_metrics(policy, test_p, exact, tok, slack: int, temperature: float, seed: int) -> dict[str, float]:
    """Greedy exact match, and the exact reward of sampling at the rollout temperature (4 per problem)
    (what GRPO optimises: RL sharpens sampling before it moves the greedy answer; Yue et al. 2025)."""
    from liandan.llm.rl.rollout import greedy_reward

    if test_p is None:
        return {}
    return {"exact_match": greedy_reward(policy, test_p, exact, tok, slack),
            "sampled_exact_match": sum(greedy_reward(policy, test_p, exact, tok, slack, temperature=temperature,
                                                     seed=seed + k) for k in range(4)) / 4}


def _check(steps: int, group: int, batch: int, lr: float, beta: float, clip_eps: float, temperature: float,
           inner_steps: int, loss_type: str) -> None:
    if group < 2:
        raise LiandanError(f"group must be ≥ 2 (advantages are relative to the group), got {group}")
    if steps < 1 or batch < 1 or inner_steps < 1:
        raise LiandanError("steps, batch and inner_steps must be ≥ 1")
    if lr <= 0 or beta < 0 or not 0 < clip_eps < 1 or temperature <= 0:
        raise LiandanError("need lr > 0, beta ≥ 0, 0 < clip_eps < 1 and temperature > 0")
    if loss_type not in ("token", "sequence"):
        raise LiandanError(f"loss_type: use token or sequence, got {loss_type!r}")


class StepStats(CSVLogger):
    """metrics.csv with the GRPO statistics of each step in its ``step`` row, the greedy exact match on
    the val problems every ``eval_every`` steps (a ``val`` row) and a progress line every tenth of the run."""

    reads_grad_norm = False

    def __init__(self, val_p, exact, tok, slack: int, eval_every: int, echo) -> None:
        super().__init__()
        self.val_p, self.exact, self.tok, self.slack, self.eval_every, self.echo = val_p, exact, tok, slack, \
            eval_every, echo

    def on_log(self, trainer, row: dict[str, Any]) -> None:
        if row["split"] == "step":
            row.update(trainer.task.last)
        super().on_log(trainer, row)

    def on_step_end(self, trainer, loss, grad_norm, applied: bool) -> None:
        from liandan.llm.rl.rollout import greedy_reward

        step, total = trainer.state.step, trainer.total_steps
        if self.val_p is not None and (step % self.eval_every == 0 or step == total):
            em = greedy_reward(trainer.model, self.val_p, self.exact, self.tok, self.slack)
            row = {"epoch": trainer.state.epoch, "step": step, "split": "val", "exact_match": em,
                   "wall_s": round(trainer.clock(), 3)}
            for fn in trainer.hooks["on_log"]:
                fn(trainer, row)
        if step == 1 or step % max(1, total // 10) == 0 or step == total:
            last = trainer.task.last
            self.echo(f"grpo step {step}/{total}: reward {last['reward']:.3f}  kl {last['kl']:.4f}  "
                      f"loss {float(loss):.4f}")


def _curve(out_dir: Path) -> tuple[list[float], list[float]]:
    from liandan.training.rundir import read_metrics

    rows = [r for r in read_metrics(out_dir / "metrics.csv") if r["split"] == "step"]
    return [r["reward"] for r in rows], [r["kl"] if r["kl"] != "" else math.nan for r in rows]


def run_grpo(run_dir: str | Path, reward: Any, *, steps: int, group: int, batch: int, lr: float, beta: float,
             clip_eps: float, temperature: float, inner_steps: int, loss_type: str, adapter: str | dict | None,
             eval_every: int, eval_samples: int | None, seed: int, out: str | Path | None, quiet: bool,
             overrides: list[str] | dict | None = None, callbacks: list[Callback] | None = None,
             resume: bool = False):
    """:func:`liandan.llm.rl.grpo` (documented there)."""
    from liandan.data.pipeline import DataModule
    from liandan.llm.rl.fit import echo_fn, open_run_dir, run_facts, run_trainer, trainer_recipe, write_report
    from liandan.llm.rl.reward import exact_reward
    from liandan.llm.rl.rollout import problems
    from liandan.llm.rl.runio import check_lm_run, finish_run_dir, open_policy
    from liandan.llm.rl.tasks import GRPOObjective, PromptBatches
    from liandan.training.run import Run, seed_everything
    from liandan.training.rundir import read_json
    from liandan.training.setup import pick_device

    _check(steps, group, batch, lr, beta, clip_eps, temperature, inner_steps, loss_type)
    base = check_lm_run(run_dir, "grpo")
    echo = echo_fn(quiet)
    seed_everything(seed)
    policy, recipe, run, tok = open_policy(base, adapter, "grpo")
    final_after = run.info.extras.get("final_after")
    reward_fn, reward_name = _reward_fn(reward, run, final_after)
    exact = lambda c, a: exact_reward(c, a, final_after)  # noqa: E731 (the exact match every run reports)
    slack = 16 if final_after else 0
    data = run.load_data()
    train_p = problems(run, data, "train")
    test_p = problems(run, data, "test") if len(data.indices.get("test", [])) else None
    val_p = problems(run, data, "val", eval_samples) if eval_every and len(data.indices.get("val", [])) else None
    if not any(p.requires_grad for p in policy.parameters()):
        raise LiandanError(f"{base}: the model has no trainable parameters")
    options = {"reward": reward_name, "steps": steps, "group": group, "batch": batch, "lr": lr, "beta": beta,
               "clip_eps": clip_eps, "temperature": temperature, "inner_steps": inner_steps, "loss_type": loss_type,
               "adapter": recipe.adapter.name if recipe.adapter else None, "seed": seed,
               **({"overrides": overrides} if overrides else {})}
    out_dir, resume_path = open_run_dir(base, recipe, f"GRPO fine-tune of {base} ({reward_name}; liandan grpo)", out,
                                        options, resume)
    tr = trainer_recipe(recipe, "grpo", lr, 1, overrides)
    device = pick_device(tr.train.device)
    policy.to(device)
    if isinstance(reward_fn, nn.Module):
        reward_fn.to(device)
    # π_ref: the policy as it starts, frozen (an adapter's base alone would also do)
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if beta > 0 else None
    objective = GRPOObjective(reward_fn, tok, ref, group, beta, clip_eps, temperature, inner_steps, loss_type, slack,
                              int(getattr(policy, "max_len", None) or run.info.max_len), seed)
    prompts = PromptBatches.draw(train_p, steps * tr.train.accumulate, batch, seed)
    info = copy.copy(run.info)
    info.task, info.sizes = "grpo", {"train": len(train_p)}
    grpo_data = DataModule(info, prompts, None, None, data.source, {})
    before = _test_metrics(policy, test_p, exact, tok, slack, temperature, seed)
    if before:
        echo(f"grpo: test exact match before {before['exact_match']:.4f}")
    stats = StepStats(val_p, exact, tok, slack, eval_every or steps + 1, echo)
    trainer = None
    try:
        trainer = run_trainer(tr, grpo_data, policy, objective, out_dir, device, [stats, *(callbacks or [])],
                              resume_path, echo, quiet)
    finally:
        if trainer is None or trainer.status != "completed":
            facts = run_facts(trainer) if trainer is not None else {"status": "failed"}
            finish_run_dir(out_dir, policy, recipe, {**facts, "method": "grpo", "base_run": str(base),
                                                     "options": options})
    if trainer.status != "completed":
        echo(f"grpo: {trainer.status}: {trainer.stop_reason}  ({out_dir})")
        return Run(out_dir, recipe, read_json(out_dir / "summary.json"), run.info, policy, data)
    policy.eval()
    after = _test_metrics(policy, test_p, exact, tok, slack, temperature, seed)
    curve, kls = _curve(out_dir)
    k = max(1, len(curve) // 10)
    finite_kl = [x for x in kls[-k:] if not math.isnan(x)]
    summary = {**run_facts(trainer), "method": "grpo", "base_run": str(base), "epochs": 0,
               "options": json.loads(json.dumps(options)),
               "reward": {"first": float(np.mean(curve[:k])), "last": float(np.mean(curve[-k:])),
                          "mean": float(np.mean(curve)), "max": float(np.max(curve))},
               "kl": float(np.mean(finite_kl)) if finite_kl else None,
               "before": {"test": before} if before else {}, "final": {"test": after} if after else {},
               "exact_match_gain": after["exact_match"] - before["exact_match"] if before else None}
    finish_run_dir(out_dir, policy, recipe, summary)
    if after:
        echo(f"grpo: test exact match {before['exact_match']:.4f} -> {after['exact_match']:.4f}  ({out_dir})")
    write_report(tr, out_dir, echo)
    return Run(out_dir, recipe, read_json(out_dir / "summary.json"), run.info, policy, data)
