"""Rule-based rewards for completions of prompted problems (arith), and how completions become text.

A reward function takes the sampled completions and the expected answers, both as text that ends
in the literal ``<eos>`` when the sequence was finished, and returns one float per completion::

    fn(completions: list[str], answers: list[str]) -> list[float]

- ``exact``: 1 when the completion is the expected answer, ``<eos>`` included, else 0 (a right
  answer that runs on is wrong). With chain of thought (arith ``steps: true``, the run's data
  names ``final_after: "|"``) only what follows the last ``|`` is judged, and the ``|`` must be
  there: the working may differ. Greedy decoding's mean ``exact`` reward is
  :func:`liandan.generation.text.exact_match`'s exact match.
- ``format``: 1 for a well-formed completion: ``-?digits<eos>``, or with working
  ``working|-?digits<eos>`` (the format reward of DeepSeek-AI 2025, "DeepSeek-R1", §2.2.2).
- ``exact+format``: their sum (R1's accuracy reward plus its format reward).

Rule rewards cannot be gamed the way a learned reward model can (Gao et al. 2023, "Scaling laws
for reward model overoptimization"); :mod:`liandan.llm.rl.reward_model` is the learned one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

RewardFn = Callable[[list[str], list[str]], list[float]]
EOS_TEXT = "<eos>"


def to_text(ids: Sequence[int], tok) -> str:
    """Token ids as text, special tokens as their names (``<eos>``) so that a sampled ``<bos>`` or
    ``<pad>`` is not silently dropped by the tokenizer's decode (which skips specials)."""
    from liandan.data.tokenize import NUM_SPECIAL, SPECIALS

    out, run = [], []
    for i in ids:
        if i < NUM_SPECIAL:
            out.append(tok.decode(run) if run else "")
            out.append(SPECIALS[i])
            run = []
        else:
            run.append(int(i))
    out.append(tok.decode(run) if run else "")
    return "".join(out)


def until_eos(ids: Sequence[int], eos: int) -> list[int]:
    """The completion's tokens up to and including its first ``eos`` (all of them without one)."""
    ids = [int(i) for i in ids]
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def _judged(text: str, final_after: str | None) -> str:
    """What the exact reward compares: after the last ``final_after`` marker when there is one."""
    if final_after and final_after in text:
        return text[text.rindex(final_after) + len(final_after):]
    return text


def exact_reward(completions: list[str], answers: list[str], final_after: str | None = None) -> list[float]:
    """1.0 where the (final) answer matches exactly, ``<eos>`` included; else 0.0."""
    out = []
    for c, a in zip(completions, answers, strict=True):
        ok = c.endswith(EOS_TEXT) and _judged(c, final_after) == _judged(a, final_after)
        out.append(float(ok and (not final_after or final_after in c)))
    return out


def format_reward(completions: list[str], answers: list[str], final_after: str | None = None) -> list[float]:
    """1.0 for ``-?digits<eos>`` (with ``final_after``: ``working<marker>-?digits<eos>``), else 0.0."""
    del answers  # the format does not depend on the problem
    tail = r"-?[0-9]+" + re.escape(EOS_TEXT)
    pattern = re.compile((rf"[^{re.escape(final_after)}<>]+{re.escape(final_after)}" if final_after else "") + tail)
    return [float(pattern.fullmatch(c) is not None) for c in completions]


def exact_format_reward(completions: list[str], answers: list[str], final_after: str | None = None) -> list[float]:
    """``exact + format`` (0, 1 or 2)."""
    e = exact_reward(completions, answers, final_after)
    f = format_reward(completions, answers, final_after)
    return [x + y for x, y in zip(e, f, strict=True)]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "exact": exact_reward,
    "format": format_reward,
    "exact+format": exact_format_reward,
}


def resolve_reward(reward: str | RewardFn, final_after: str | None = None) -> RewardFn:
    """A reward name (``exact``, ``format``, ``exact+format``) bound to the run's ``final_after``
    marker, or a user's callable ``fn(completions, answers) -> list[float]`` as it is."""
    from liandan.errors import LiandanError

    if callable(reward):
        return reward
    if reward not in REWARDS:
        raise LiandanError(f"reward: unknown reward {reward!r}; available: {', '.join(REWARDS)}, "
                           "or a reward-model directory (liandan reward-model)")
    fn = REWARDS[reward]
    return lambda completions, answers: fn(completions, answers, final_after)
