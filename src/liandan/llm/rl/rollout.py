"""Prompts, sampled completions and their rewards: what GRPO and the reward model read from a run.

A problem is a split's sequence cut where :func:`liandan.generation.text.exact_match` cuts it: after the
run's ``answer_after`` symbol (arith: ``=``), else before its first learned token. Prompts of one
length batch without padding (the GPTs have learned positions and no attention mask, so left
padding would shift them), hence problems are kept in buckets by prompt length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.llm.rl.reward import RewardFn, to_text, until_eos


@dataclass
class Problems:
    """Prompts and expected answers (``<eos>`` included) of one split, bucketed by prompt length."""

    buckets: dict[int, list[tuple[list[int], list[int]]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.buckets.values())

    @property
    def longest_answer(self) -> int:
        return max((len(a) for v in self.buckets.values() for _, a in v), default=0)

    def draw(self, rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
        """``n`` problems of one prompt length: a problem drawn uniformly picks the length, the rest
        are drawn from its bucket (with replacement when it is small), so each problem is equally
        likely to appear over the run."""
        sizes = np.array([len(v) for v in self.buckets.values()], dtype=float)
        key = list(self.buckets)[rng.choice(len(sizes), p=sizes / sizes.sum())]
        bucket = self.buckets[key]
        pick = rng.choice(len(bucket), size=n, replace=n > len(bucket))
        return [bucket[i] for i in pick]


def problems(run, data, split: str, max_samples: int | None = None) -> Problems:
    """The prompted problems of ``split`` in the run's data (``run.info.extras['answer_after']``)."""
    from liandan.data.tokenize import load_tokenizer
    from liandan.generation.text import prompted_problems

    idx = data.indices.get(split)
    if idx is None or len(idx) == 0:
        raise LiandanError(f"{run.dir}: no {split!r} split")
    idx = torch.as_tensor(idx[:max_samples] if max_samples else idx, dtype=torch.int64)
    tok = load_tokenizer(run.dir / run.info.tokenizer)
    after = run.info.extras.get("answer_after")
    marker = tok.encode(after)[0] if after else None
    out = Problems()
    out.buckets = prompted_problems(data.source.x[idx], data.source.y[idx], marker)
    if not len(out):
        raise LiandanError(f"{run.dir}: its data has no prompts (a prompt ends at the data's answer_after "
                           "symbol or before the first learned token, as in arith); RL needs prompted problems")
    return out


def completion_mask(completion: torch.Tensor, eos: int) -> torch.Tensor:
    """``(N, T)`` float mask of a completion's real tokens: up to and including its first ``eos``
    (the padding :func:`~liandan.generation.text.sample_tokens` writes after it is 0). Unfinished rows: all 1."""
    is_eos = (completion == eos).int()  # (N, T)
    before = is_eos.cumsum(1) - is_eos  # eos tokens strictly before each position
    return (before == 0).float()


def score(completions: torch.Tensor, answers: list[list[int]], reward: RewardFn | nn.Module, tok,
          prompts: torch.Tensor | None = None) -> torch.Tensor:
    """Rewards ``(N,)`` of completions ``(N, T)`` against the expected answers: a rule (text in,
    floats out) or a learned :class:`~liandan.llm.rl.reward_model.RewardModel` (prompt + completion
    tokens in, a scalar each out)."""
    from liandan.data.tokenize import EOS, PAD

    rows = [until_eos(r, EOS) for r in completions.tolist()]
    if isinstance(reward, nn.Module):
        full = [p + r for p, r in zip(prompts.tolist(), rows, strict=True)]
        ids = torch.full((len(full), max(map(len, full))), PAD, dtype=torch.int64)
        for i, s in enumerate(full):
            ids[i, : len(s)] = torch.tensor(s)
        with torch.no_grad():
            return reward(ids.to(next(reward.parameters()).device)).float().cpu()
    got = reward([to_text(r, tok) for r in rows], [to_text(a, tok) for a in answers])
    return torch.tensor(got, dtype=torch.float32)


def greedy_reward(model: nn.Module, probs: Problems, reward: RewardFn | nn.Module, tok, slack: int = 0,
                  batch: int = 256, temperature: float = 0.0, seed: int = 0) -> float:
    """Mean reward of greedy completions over every problem (``exact``: greedy exact match). As in
    :func:`~liandan.generation.text.exact_match`, each prompt length decodes up to its longest expected
    answer plus ``slack`` tokens (16 with chain of thought: a longer working may still be right).
    ``temperature > 0``: one seeded sample per problem instead (the expected reward of sampling)."""
    from liandan.data.tokenize import EOS, PAD
    from liandan.generation.text import sample_tokens

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, n, gen = 0.0, 0, torch.Generator(device).manual_seed(seed)
    for cut, items in sorted(probs.buckets.items()):
        limit = max(len(a) for _, a in items) + slack
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            prompts = torch.tensor([p for p, _ in chunk], device=device)  # (b, cut)
            out = sample_tokens(model, prompts, limit, temperature=temperature, eos=EOS, pad=PAD,
                                generator=gen)[:, cut:]
            total += float(score(out, [a for _, a in chunk], reward, tok, prompts).sum())
            n += len(chunk)
    model.train(was)
    return total / max(n, 1)
