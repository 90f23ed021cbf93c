"""The alignment tasks the one :class:`~liandan.training.loop.Trainer` runs (registered as
``pairwise_preference`` and ``grpo``), so precision, accumulation, clipping, the non-finite
guard, checkpoints, exact resume, the doctor and the callbacks are the trainer's for them too.

- ``pairwise_preference`` (the Bradley–Terry reward model): a batch is ``x`` ``(B, 2, T)``, the
  stacked (first, second) token rows of B pairs, and ``y`` ``(B,)``, 1 where the first is preferred
  (0: the second). One forward scores all 2B rows; the loss is the task's ``loss_fn``
  (:func:`~liandan.llm.rl.reward_model.bradley_terry_loss`), the tally the pairwise accuracy. The
  trainer owns the step.
- ``grpo``: a batch is ``x`` ``(B, P)`` prompts (one length) and ``y`` ``(B, A)`` their expected
  answers (right-padded with -1). The task owns the step (:meth:`GRPO.train_step`): it samples a
  group per prompt, scores it, and takes ``inner_steps`` updates through the trainer's own
  optimizer step (:meth:`~liandan.training.loop.Trainer._optimizer_step`: the non-finite guard,
  clipping, the scaler, the schedule). Its ``loss_fn`` is a :class:`GRPOObjective`, what the
  GRPO loss needs besides the batch. The maths is :mod:`liandan.llm.rl.grpo`.

Neither has a preset (tag ``from_run``): both train on data made from a finished run, by
``liandan reward-model`` and ``liandan grpo``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from liandan.registry import register_task
from liandan.training.tasks import MeanTally, Task

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


# --- the reward model ---------------------------------------------------------------------------


class PairTally:
    """Mean loss and the share of pairs ranked right (counted exactly, not averaged in floats)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.wins = torch.zeros((), dtype=torch.int64, device=self.device)
        self.n = 0

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double() * len(y)
        self.wins += out.sum().long()  # bool, or 0/1 floats from evaluation
        self.n += len(y)

    def compute(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"loss": float(self.loss_sum) / n, "pairwise_accuracy": int(self.wins) / n}


@register_task("pairwise_preference", tags=("from_run",))
class PairwisePreference(Task):
    """A scalar model trained on preference pairs; ``pairwise_accuracy``: the share of pairs it ranks right."""

    name = "pairwise_preference"
    default_loss = None
    higher_is_better = frozenset({"pairwise_accuracy"})
    headline_metric = "pairwise_accuracy"

    def metric_names(self) -> list[str]:
        return ["pairwise_accuracy"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        from liandan.llm.rl.reward_model import bradley_terry_loss

        scores = net(x.flatten(0, 1)).view(len(x), 2).float()  # (B, 2): both rows of each pair
        first = y.bool()
        chosen = torch.where(first, scores[:, 0], scores[:, 1])
        rejected = torch.where(first, scores[:, 1], scores[:, 0])
        loss = (self.loss_fn or bradley_terry_loss)(chosen, rejected)
        return loss, chosen > rejected  # (B,) bool: ranked right

    def tally(self, device: torch.device, light: bool = False) -> PairTally:
        return PairTally(device)

    def train_flops(self, model: nn.Module, sample: torch.Tensor) -> int:
        from liandan.training.flops import forward_flops

        return 3 * forward_flops(model, sample.flatten(0, 1))  # both rows of one pair


# --- GRPO -----------------------------------------------------------------------------------------


@dataclass
class GRPOObjective:
    """Everything the GRPO loss needs besides a batch of prompts (the ``grpo`` task's ``loss_fn``).

    ``reward``: a rule ``fn(completions, answers)`` or a reward model (:mod:`~liandan.llm.rl.rollout`'s
    :func:`~liandan.llm.rl.rollout.score`); ``ref``: the frozen reference policy (None when β = 0);
    ``slack``: tokens a completion may run past its answer; ``context``: the model's positions."""

    reward: Any
    tokenizer: Any
    ref: nn.Module | None
    group: int
    beta: float
    clip_eps: float
    temperature: float
    inner_steps: int
    loss_type: str
    slack: int
    context: int
    seed: int


@dataclass
class Rollout:
    """One batch's sampled group: sequences ``(B*G, P+n)``, completion mask, advantages, π_old and π_ref."""

    seq: torch.Tensor
    cut: int
    mask: torch.Tensor
    rewards: torch.Tensor
    adv: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None


class PromptBatches:
    """A GRPO run's prompt batches ``(prompts (B, P), answers (B, A) padded with -1)``, drawn up front
    from one seeded generator (so a resumed run sees the very batches the first one would have)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    @classmethod
    def draw(cls, problems, n: int, size: int, seed: int) -> PromptBatches:
        import numpy as np

        rng, out = np.random.default_rng(seed), []
        for _ in range(n):
            items = problems.draw(rng, size)
            width = max(len(a) for _, a in items)
            answers = torch.full((len(items), width), -1, dtype=torch.int64)
            for i, (_, a) in enumerate(items):
                answers[i, : len(a)] = torch.tensor(a)
            out.append((torch.tensor([p for p, _ in items]), answers))
        return cls(out)

    def __len__(self) -> int:
        return len(self.batches)

    def global_size(self, i: int) -> int:
        return len(self.batches[i][1])

    def shard(self, rank: int, world: int) -> None:  # noqa: ARG002 (one process samples every prompt)
        pass

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ARG002
        yield from self.batches[start:]


STATS = ["reward", "reward_std", "kl", "clip_frac", "completion_len"]


@register_task("grpo", tags=("from_run",))
class GRPO(Task):
    """Group Relative Policy Optimization (:mod:`liandan.llm.rl.grpo`) of a language model on prompts.

    The model stays in eval mode (no dropout: the sampling and the scoring policy must be the same
    for ρ = 1 at the first inner step). ``exact_match`` is logged by the run on its val problems."""

    name = "grpo"
    default_loss = None
    higher_is_better = frozenset({"reward", "exact_match"})
    headline_metric = "reward"

    def __init__(self, info, loss_fn: GRPOObjective, recipe) -> None:
        super().__init__(info, loss_fn, recipe)
        self.generator: torch.Generator | None = None
        self.last: dict[str, float] = {}  # the statistics of the latest step (the step row's)

    def metric_names(self) -> list[str]:
        return [*STATS, "exact_match"]

    def tally(self, device: torch.device, light: bool = False) -> MeanTally:
        return MeanTally(device, STATS)

    def train_flops(self, model: nn.Module, sample: torch.Tensor) -> int:  # noqa: ARG002
        return 0  # sampling dominates and its length varies: unknown

    def setup(self, trainer: Trainer) -> None:
        self.generator = torch.Generator(trainer.device).manual_seed(self.loss_fn.seed)

    def rollout(self, model: nn.Module, prompts: torch.Tensor, answers: torch.Tensor) -> Rollout:
        """Sample a group per prompt, score it against the answers, and take π_old and π_ref."""
        from liandan.data.tokenize import EOS, PAD
        from liandan.generation.text import sample_tokens
        from liandan.llm.rl.grpo import group_advantages, token_logprobs
        from liandan.llm.rl.rollout import completion_mask, score

        s = self.loss_fn
        if self.generator is None:  # forward() outside a trainer
            self.generator = torch.Generator(prompts.device).manual_seed(s.seed)
        expected = [[int(t) for t in row if t >= 0] for row in answers.tolist()]
        expected = [a for a in expected for _ in range(s.group)]  # B*G, group-major like the rows
        cut = prompts.shape[1]
        # a little room to run on, within the model's positions (the scoring pass reads it whole)
        limit = min(max(len(a) for a in expected) + 2 + s.slack, s.context + 1 - cut)
        rep = prompts.repeat_interleave(s.group, 0)  # (B*G, P)
        seq = sample_tokens(model, rep, limit, temperature=s.temperature, eos=EOS, generator=self.generator,
                            pad=PAD)  # (B*G, P+n)
        mask = completion_mask(seq[:, cut:], EOS)  # (B*G, n)
        rewards = score(seq[:, cut:], expected, s.reward, s.tokenizer, rep).to(seq.device)  # (B*G,)
        with torch.no_grad():
            old = token_logprobs(model, seq, cut, s.temperature) if s.inner_steps > 1 else None
            ref = token_logprobs(s.ref, seq, cut, s.temperature) if s.ref is not None else None  # (B*G, n)
        return Rollout(seq, cut, mask, rewards, group_advantages(rewards, s.group), old, ref)

    def loss(self, net: nn.Module, r: Rollout) -> tuple[torch.Tensor, dict[str, float]]:
        from liandan.llm.rl.grpo import grpo_loss, token_logprobs

        s = self.loss_fn
        logp = token_logprobs(net, r.seq, r.cut, s.temperature)  # (B*G, n)
        loss, stats = grpo_loss(logp, logp.detach() if r.old_logp is None else r.old_logp, r.ref_logp, r.adv,
                                r.mask, s.clip_eps, s.beta, s.loss_type)
        stats.update(reward=float(r.rewards.mean()), reward_std=float(r.rewards.view(-1, s.group).std(1).mean()),
                     completion_len=float(r.mask.sum(1).mean()))
        return loss, stats

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The loss of one fresh rollout without an update (ρ = 1)."""
        was = net.training
        net.eval()
        try:
            return self.loss(net, self.rollout(net, x, y))
        finally:
            net.train(was)

    def train_step(self, trainer: Trainer, group: list[tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[bool, torch.Tensor, torch.Tensor]:
        """Roll out every micro-batch of the accumulation group, then ``inner_steps`` optimizer
        steps on it, each the share-weighted gradient of the group's micro-batches."""
        net = trainer.net
        net.eval()
        rolls = [self.rollout(trainer.model, x, y) for x, y in group]  # the plain model: its key/value cache
        total = sum(len(y) for _, y in group)
        applied, grad_norm, loss_sum, stats = False, torch.zeros(()), torch.zeros(()), []
        for _ in range(self.loss_fn.inner_steps):
            loss_sum, stats = torch.zeros((), device=trainer.device), []
            for r, (_, y) in zip(rolls, group, strict=True):
                share = len(y) / total
                with trainer._autocast():
                    loss, st = self.loss(net, r)
                scaled = loss if share == 1.0 else loss * share
                (trainer.scaler.scale(scaled) if trainer.scaler else scaled).backward()
                loss_sum = loss_sum + loss.detach() * share
                stats.append({**st, "loss": loss.detach()})
            applied, grad_norm = trainer._optimizer_step(loss_sum)
            if trainer.status != "running":  # diverged
                break
        for st, (_, y) in zip(stats, group, strict=True):
            trainer.train_acc.update(st, y, st["loss"])
        self.last = {k: sum(st[k] * len(y) for st, (_, y) in zip(stats, group, strict=True)) / total
                     for k in STATS}
        return applied, grad_norm, loss_sum

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()} if self.generator is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None and self.generator is not None:
            self.generator.set_state(state["generator"])
