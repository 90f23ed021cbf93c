"""What a model does, shown on a few inputs: the report's "Examples" figure.

- ``caption`` runs: test images with the greedy caption (green when it equals the true one);
- ``contrastive`` runs: test images with the zero-shot class from the text prompts;
- ``classify`` runs on images: test images with the predicted class;
- ``gan`` / ``diffusion`` runs: a seeded grid of samples (diffusion with 50 DDIM steps: seconds);
- ``lm`` runs: a table of test prompts, expected and greedy completions (``rows``, no images).

The result holds the images as pixels in [0, 1] ``(N, C, H, W)`` and per image a label
``(text, right)`` (``right``: the prediction equals the truth; a wrong one names the truth),
or None for samples.
"""

from __future__ import annotations

from typing import Any

import torch

N_EXAMPLES = 8
N_SAMPLES = 16
DIFFUSION_STEPS = 50


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """Raw inputs to displayable [0, 1] pixels (per-image min-max when outside that range)."""
    x = x.float()
    if x.min() >= 0 and x.max() <= 1:
        return x
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def examples(run, data, split: str) -> dict[str, Any] | None:
    """A few inputs and what the run's model makes of them; None when the task has no picture."""
    from liandan.evaluation.runio import raw_split

    info = run.info
    task = info.task
    if task in ("gan", "diffusion"):
        from liandan.generation.images import draw_images

        steps = DIFFUSION_STEPS if task == "diffusion" else None
        imgs = draw_images(run.model, N_SAMPLES, seed=0, steps=steps)
        return {"title": f"{N_SAMPLES} samples (seed 0)", "images": imgs, "labels": [None] * len(imgs)}
    if task == "lm" and info.tokenizer:
        from liandan.generation.text import exact_match

        res = exact_match(run.dir, split, max_samples=64)
        return {"title": f"greedy completions of {split} prompts", "rows": res["examples"]}
    if task not in ("caption", "contrastive", "classify") or len(info.input_shape) != 3:
        return None
    x_raw, y = raw_split(data, split, N_EXAMPLES, run.recipe.seed)
    x = torch.stack([info.normalize_x(im) for im in x_raw])
    if task == "caption":
        from liandan.data.captions import decode
        from liandan.data.tokenize import load_tokenizer
        from liandan.training.tasks.vision_language import generate_captions

        tok = load_tokenizer(run.dir / info.tokenizer)
        said = generate_captions(run.model, x, tok, max_new=info.max_len - 1)
        truth = decode(tok, y[:, 1:])
        labels = [(s, True) if s == t else (f"{s}\n(true: {t})", False) for s, t in zip(said, truth, strict=True)]
        title = "greedy captions of test images"
    else:
        names = info.class_names or [str(i) for i in range(info.num_classes or 0)]
        if task == "contrastive":
            from liandan.training.tasks.vision_language import caption_class, zero_shot_logits

            pred = zero_shot_logits(run.model, x, torch.as_tensor(info.extras["prompt_ids"])).argmax(-1)
            true = caption_class(y, torch.as_tensor(info.extras["class_token_ids"]))
            title = "zero-shot classes of test images (from text prompts)"
        else:
            from liandan.evaluation.runio import logits_of

            pred, true = logits_of(run.model, info, x_raw).argmax(-1), y
            title = "predicted classes of test images"
        labels = [(names[p], True) if p == t else (f"{names[p]}\n(true: {names[t] if t >= 0 else '?'})", False)
                  for p, t in zip(pred.tolist(), true.tolist(), strict=True)]
    return {"title": title, "images": _pixels(x_raw), "labels": labels}
