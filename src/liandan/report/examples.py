"""What a model does, shown on a few inputs: the report's "Examples" figure.

The run's task draws it (:meth:`~liandan.training.tasks.Task.render_examples`): a classifier of
images labels test images with its predicted class, a captioner with its greedy caption, a
CLIP-style run with its zero-shot class, a generative run draws a seeded grid of samples, a
language model fills a table of test prompts with expected and greedy completions (``rows``, no
images). This module hands the task the few inputs and the pillars' drawing tools it needs
(:class:`Examples`), and makes the images displayable.

The result holds the images as pixels in [0, 1] ``(N, C, H, W)`` and per image a label
``(text, right)`` (``right``: the prediction equals the truth; a wrong one names the truth),
or None for samples.
"""

from __future__ import annotations

from typing import Any

import torch

N_EXAMPLES = 8
N_SAMPLES = 16


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """Raw inputs to displayable [0, 1] pixels (per-image min-max when outside that range)."""
    x = x.float()
    if x.min() >= 0 and x.max() <= 1:
        return x
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


class Examples:
    """The :class:`~liandan.training.tasks.ExampleSource` of a run's split."""

    def __init__(self, run, data, split: str) -> None:
        self.run, self.data, self.split = run, data, split

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        from liandan.evaluation.runio import raw_split

        return raw_split(self.data, self.split, N_EXAMPLES, self.run.recipe.seed)

    def samples(self, steps: int | None = None) -> torch.Tensor:
        from liandan.generation.images import draw_images

        return draw_images(self.run.model, N_SAMPLES, seed=0, steps=steps)

    def completions(self) -> list[dict[str, str]]:
        from liandan.generation.text import exact_match

        return exact_match(self.run.dir, self.split, max_samples=64)["examples"]


def examples(run, data, split: str) -> dict[str, Any] | None:
    """A few inputs and what the run's model makes of them; None when the task has no picture."""
    from liandan.training.tasks import build_task

    ex = build_task(run.info, None, run.recipe).render_examples(run, Examples(run, data, split))
    if ex is not None and "images" in ex:
        ex["images"] = _pixels(ex["images"])
    return ex
