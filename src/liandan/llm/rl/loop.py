"""The GRPO training loop: rollout, reward, group advantages, clipped update with a KL penalty.

A plain loop rather than the supervised :class:`~liandan.training.loop.Trainer`: a step here
samples from the model it trains, and a batch is built by the policy, not read from a loader.
The model stays in eval mode throughout (no dropout: the sampling and the scoring policy must be
the same for ρ = 1 at the first inner step, as TRL disables dropout for the same reason).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liandan.errors import LiandanError


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
           inner_steps: int) -> None:
    if group < 2:
        raise LiandanError(f"group must be ≥ 2 (advantages are relative to the group), got {group}")
    if steps < 1 or batch < 1 or inner_steps < 1:
        raise LiandanError("steps, batch and inner_steps must be ≥ 1")
    if lr <= 0 or beta < 0 or not 0 < clip_eps < 1 or temperature <= 0:
        raise LiandanError("need lr > 0, beta ≥ 0, 0 < clip_eps < 1 and temperature > 0")


def run_grpo(run_dir: str | Path, reward: Any, *, steps: int, group: int, batch: int, lr: float, beta: float,
             clip_eps: float, temperature: float, inner_steps: int, loss_type: str, adapter: str | dict | None,
             eval_every: int, eval_samples: int | None, seed: int, out: str | Path | None, quiet: bool):
    """:func:`liandan.llm.rl.grpo` (documented there)."""
    from liandan.data.tokenize import EOS, PAD
    from liandan.generation.text import sample_tokens
    from liandan.llm.rl.grpo import group_advantages, grpo_loss, token_logprobs
    from liandan.llm.rl.reward import exact_reward
    from liandan.llm.rl.rollout import completion_mask, greedy_reward, problems, score
    from liandan.llm.rl.runio import check_lm_run, finish_run_dir, open_policy, start_run_dir
    from liandan.training.run import Run, seed_everything
    from liandan.training.rundir import MetricsLog
    from liandan.training.setup import torch_threads

    _check(steps, group, batch, lr, beta, clip_eps, temperature, inner_steps)
    if loss_type not in ("token", "sequence"):
        raise LiandanError(f"loss_type: use token or sequence, got {loss_type!r}")
    base = check_lm_run(run_dir, "grpo")
    echo = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    seed_everything(seed)
    policy, recipe, run, tok = open_policy(base, adapter, "grpo")
    final_after = run.info.extras.get("final_after")
    reward_fn, reward_name = _reward_fn(reward, run, final_after)
    exact = lambda c, a: exact_reward(c, a, final_after)  # noqa: E731 (the exact match every run reports)
    slack = 16 if final_after else 0
    context = int(getattr(policy, "max_len", None) or run.info.max_len)
    data = run.load_data()
    train_p = problems(run, data, "train")
    test_p = problems(run, data, "test") if len(data.indices.get("test", [])) else None
    val_p = problems(run, data, "val", eval_samples) if eval_every and len(data.indices.get("val", [])) else None
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise LiandanError(f"{base}: the model has no trainable parameters")
    ref = None
    if beta > 0:  # π_ref: the policy as it starts, frozen (an adapter's base alone would also do)
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    options = {"reward": reward_name, "steps": steps, "group": group, "batch": batch, "lr": lr, "beta": beta,
               "clip_eps": clip_eps, "temperature": temperature, "inner_steps": inner_steps, "loss_type": loss_type,
               "adapter": recipe.adapter.name if recipe.adapter else None, "seed": seed}
    out_dir = start_run_dir(base, recipe, f"GRPO fine-tune of {base} ({reward_name}; liandan grpo)", out)
    log = MetricsLog(out_dir / "metrics.csv", ["reward", "reward_std", "kl", "clip_frac", "completion_len",
                                               "exact_match"])
    with torch_threads(model=policy):
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        t0, curve, kls = time.perf_counter(), [], []
        try:
            before = _test_metrics(policy, test_p, exact, tok, slack, temperature, seed)
            if before:
                echo(f"grpo: test exact match before {before['exact_match']:.4f}")
            for step in range(1, steps + 1):
                items = train_p.draw(rng, batch)
                prompts = torch.tensor([p for p, _ in items])  # (B, P)
                answers = [a for _, a in items for _ in range(group)]  # B*G, group-major like the rows
                cut = prompts.shape[1]
                # a little room to run on, within the model's positions (the scoring pass reads it whole)
                limit = min(max(len(a) for a in answers) + 2 + slack, context + 1 - cut)
                rep = prompts.repeat_interleave(group, 0)  # (B*G, P)
                seq = sample_tokens(policy, rep, limit, temperature=temperature, eos=EOS, generator=gen,
                                    pad=PAD)  # (B*G, P+n)
                completion = seq[:, cut:]  # (B*G, n)
                mask = completion_mask(completion, EOS)  # (B*G, n)
                rewards = score(completion, answers, reward_fn, tok, rep)  # (B*G,)
                adv = group_advantages(rewards, group)  # (B*G,)
                with torch.no_grad():
                    old_logp = token_logprobs(policy, seq, cut, temperature) if inner_steps > 1 else None
                    ref_logp = token_logprobs(ref, seq, cut, temperature) if ref is not None else None  # (B*G, n)
                for _ in range(inner_steps):
                    logp = token_logprobs(policy, seq, cut, temperature)  # (B*G, n)
                    loss, stats = grpo_loss(logp, logp.detach() if old_logp is None else old_logp, ref_logp, adv, mask,
                                            clip_eps, beta, loss_type)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
                    opt.step()
                policy.eval()
                curve.append(float(rewards.mean()))
                kls.append(stats["kl"])
                row = {"epoch": 0, "step": step, "split": "train", "loss": float(loss.detach()), "reward": curve[-1],
                       "reward_std": float(rewards.view(-1, group).std(1).mean()), "kl": stats["kl"],
                       "clip_frac": stats["clip_frac"], "completion_len": float(mask.sum(1).mean()), "lr": lr,
                       "grad_norm": grad_norm, "wall_s": time.perf_counter() - t0}
                if val_p is not None and (step % eval_every == 0 or step == steps):
                    em = greedy_reward(policy, val_p, exact, tok, slack)
                    log.write({"epoch": 0, "step": step, "split": "val", "exact_match": em,
                               "wall_s": time.perf_counter() - t0})
                log.write(row)
                if step == 1 or step % max(1, steps // 10) == 0 or step == steps:
                    echo(f"grpo step {step}/{steps}: reward {curve[-1]:.3f}  kl {stats['kl']:.4f}  "
                         f"loss {row['loss']:.4f}")
            after = _test_metrics(policy, test_p, exact, tok, slack, temperature, seed)
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            finish_run_dir(out_dir, policy, recipe, {"status": status, "steps": len(curve), "base_run": str(base)})
            raise
        finally:
            log.close()
    k = max(1, len(curve) // 10)
    wall = time.perf_counter() - t0
    finite_kl = [x for x in kls[-k:] if not math.isnan(x)]
    summary = {"status": "completed", "method": "grpo", "base_run": str(base), "epochs": 0, "steps": steps,
               "wall_s": round(wall, 3), "options": options,
               "reward": {"first": float(np.mean(curve[:k])), "last": float(np.mean(curve[-k:])),
                          "mean": float(np.mean(curve)), "max": float(np.max(curve))},
               "kl": float(np.mean(finite_kl)) if finite_kl else None,
               "before": {"test": before} if before else {}, "final": {"test": after} if after else {},
               "exact_match_gain": after["exact_match"] - before["exact_match"] if before else None}
    finish_run_dir(out_dir, policy, recipe, summary)
    if after:
        echo(f"grpo: test exact match {before['exact_match']:.4f} -> {after['exact_match']:.4f}  ({out_dir})")
    from liandan.training.rundir import read_json

    return Run(out_dir, recipe, read_json(out_dir / "summary.json"), run.info, policy, data)
