"""Group Relative Policy Optimization (GRPO; Shao et al. 2024, "DeepSeekMath", §4.1).

For each prompt q the policy samples a group of G completions o_1..o_G (temperature sampling
with the key/value cache of :func:`liandan.generation.text.sample`); each is scored r_i, and its
advantage is relative to its group, so no value network is needed::

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)           (std unbiased, eps 1e-4, as TRL)

Every token t of completion i shares A_i. With the ratio to the sampling policy
ρ = π_θ(o_t | q, o_<t) / π_old(o_t | ...), the PPO clipped surrogate (Schulman et al. 2017)
plus a KL penalty to a frozen reference π_ref, estimated per token with Schulman's k3
(unbiased and never negative; "Approximating KL divergence", 2020)::

    KL_t = π_ref/π_θ - log(π_ref/π_θ) - 1
    L_t  = -min(ρ A_i, clip(ρ, 1-ε, 1+ε) A_i) + β KL_t

The loss averages L_t over every completion token of the batch (``loss_type="token"``: DAPO's
token-level mean, Yu et al. 2025, TRL's default) or over each completion first and then over
completions (``"sequence"``: the paper's 1/G Σ_i 1/|o_i| Σ_t). Prompt tokens and the padding
after ``<eos>`` carry no loss. With one update per batch (``inner_steps=1``) π_old = π_θ, so
ρ = 1 and the clip never binds; ``inner_steps > 1`` re-uses the batch (the paper's μ).
β = 0 drops the reference (TRL's default since 2025); β = 0.04 is the paper's.

The rollout and the update are the ``grpo`` task (:mod:`liandan.llm.rl.tasks`), which the one
trainer runs (:mod:`liandan.llm.rl.grpo_run`); this module holds the loss, which the tests compare
with the formula written out by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def group_advantages(rewards: torch.Tensor, group: int, eps: float = 1e-4) -> torch.Tensor:
    """``(B*G,)`` rewards (each group of G consecutive) -> ``(B*G,)`` group-normalised advantages."""
    r = rewards.view(-1, group)  # (B, G)
    mean, std = r.mean(1, keepdim=True), r.std(1, keepdim=True)  # (B, 1)
    return ((r - mean) / (std + eps)).reshape(-1)


def token_logprobs(model: nn.Module, seq: torch.Tensor, prompt_len: int, temperature: float = 1.0) -> torch.Tensor:
    """log π(token | context) of the completion tokens ``seq[:, prompt_len:]``: ``(N, T - prompt_len)``."""
    logits = model(seq[:, :-1])  # (N, T-1, V): position j predicts token j+1
    return completion_logprobs(logits, seq, prompt_len, temperature)


def completion_logprobs(logits: torch.Tensor, seq: torch.Tensor, prompt_len: int,
                        temperature: float = 1.0) -> torch.Tensor:
    """Logits ``(N, T-1, V)`` of ``seq[:, :-1]`` -> log-probabilities ``(N, T - P)`` of ``seq[:, P:]``.

    The logits are divided by the sampling temperature, so π is the distribution the rollouts
    were drawn from (as TRL does); T = 1 is the model itself."""
    logp = (logits[:, prompt_len - 1:].float() / temperature).log_softmax(-1)  # (N, T-P, V)
    return logp.gather(-1, seq[:, prompt_len:, None]).squeeze(-1)  # (N, T-P)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate exp(d) - d - 1 with d = log π_ref - log π_θ (Schulman 2020)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04,
              loss_type: str = "token") -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of completion tokens (see the module docstring) and its statistics.

    ``logp``/``old_logp``/``ref_logp``/``mask``: ``(N, T)``; ``advantages``: ``(N,)``. ``ref_logp``
    may be None when ``beta == 0``. Returns (scalar loss, {policy_loss, kl, clip_frac, ratio})."""
    adv = advantages[:, None]  # (N, 1): every token of a completion shares its advantage
    ratio = torch.exp(logp - old_logp)  # (N, T)
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    pg = -torch.min(ratio * adv, clipped * adv)  # (N, T)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None and beta > 0 else torch.zeros_like(logp)
    per_token = pg + beta * kl

    def mean(x: torch.Tensor) -> torch.Tensor:
        if loss_type == "token":
            return (x * mask).sum() / mask.sum().clamp(min=1)
        return ((x * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()  # "sequence"

    if loss_type not in ("token", "sequence"):
        from liandan.errors import LiandanError

        raise LiandanError(f"loss_type: use token or sequence, got {loss_type!r}")
    loss = mean(per_token)
    out_of_range = ((ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)).float()
    with torch.no_grad():
        stats = {"policy_loss": float(mean(pg)), "kl": float(mean(kl)) if ref_logp is not None else float("nan"),
                 "clip_frac": float(mean(out_of_range)), "ratio": float(mean(ratio))}
    return loss, stats


def grpo(run_dir: str | Path, reward: Any = "exact", *, steps: int = 100, group: int = 8, batch: int = 32,
         lr: float = 3e-4, beta: float = 0.04, clip_eps: float = 0.2, temperature: float = 1.0,
         inner_steps: int = 1, loss_type: str = "token", adapter: str | dict | None = None,
         eval_every: int = 0, eval_samples: int | None = None, seed: int = 0, out: str | Path | None = None,
         quiet: bool = False, overrides: list[str] | dict | None = None, callbacks: list | None = None,
         resume: bool = False):
    """Fine-tune the language-model run ``run_dir`` with GRPO; returns the new run (a
    :class:`~liandan.training.run.Run`) whose directory holds recipe.yaml, data.json, tokenizer,
    metrics.csv (one ``step`` row per step: reward, reward_std, kl, clip_frac, ...),
    checkpoints/final.safetensors and summary.json (reward first/last, KL, test exact match
    before and after, ``exact_match_gain``).

    ``reward``: ``exact``, ``format``, ``exact+format`` (:mod:`~liandan.llm.rl.reward`), a callable
    ``fn(completions, answers) -> list[float]``, or a reward-model directory (``liandan
    reward-model``). ``group``: completions per prompt (G ≥ 2); ``batch``: prompts per step.
    ``adapter`` (``"lora"`` or ``{"name": "lora", "r": 8}``) trains an adapter on the frozen run
    instead of every weight; a run fine-tuned with an adapter trains that adapter.
    ``eval_every`` > 0 logs the greedy exact match on ``val`` (at most ``eval_samples`` problems).

    It trains through the one trainer (task ``grpo``; :mod:`liandan.llm.rl.fit`): ``overrides`` of
    its recipe (``train.precision=bf16``, ``train.accumulate=2``: prompt batches per step, ...),
    ``callbacks``, and ``resume`` of an interrupted run in ``out`` (the same arguments)."""
    from liandan.llm.rl.grpo_run import run_grpo

    return run_grpo(run_dir, reward, steps=steps, group=group, batch=batch, lr=lr, beta=beta, clip_eps=clip_eps,
                    temperature=temperature, inner_steps=inner_steps, loss_type=loss_type, adapter=adapter,
                    eval_every=eval_every, eval_samples=eval_samples, seed=seed, out=out, quiet=quiet,
                    overrides=overrides, callbacks=callbacks, resume=resume)
