"""Alignment for language-model runs: rule and learned rewards, and GRPO.

- :mod:`~liandan.llm.rl.reward`: rule rewards for prompted problems (``exact``, ``format``,
  ``exact+format``).
- :mod:`~liandan.llm.rl.reward_model`: a Bradley–Terry reward model (Ouyang et al. 2022) on a
  run's transformer, ``liandan reward-model RUN``.
- :mod:`~liandan.llm.rl.grpo`: Group Relative Policy Optimization (Shao et al. 2024), ``liandan
  grpo RUN``; it writes an ordinary run directory.

The functions ``grpo`` and ``reward_model`` are bound here by name after their modules load, so
``liandan.llm.rl.grpo(...)`` is the function (the modules stay importable by their full path).
Neither module imports transformers at import time.
"""

from liandan.llm.rl.grpo import group_advantages, grpo, grpo_loss
from liandan.llm.rl.reward import REWARDS, exact_reward, format_reward
from liandan.llm.rl.reward_model import RewardModel, bradley_terry_loss, load_reward_model, reward_model

__all__ = ["REWARDS", "RewardModel", "bradley_terry_loss", "exact_reward", "format_reward", "group_advantages",
           "grpo", "grpo_loss", "load_reward_model", "reward_model"]
