"""``shapes_captions``: the synthetic shapes of :mod:`liandan.data.shapes`, each with a caption
that names its size, colour and shape ("a small red triangle"), for image-text tasks:
``contrastive`` (CLIP) and ``caption`` (BLIP).

Captions are word-level token ids from liandan's own tokenizer (:mod:`liandan.data.tokenize`:
``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2), ``<bos> a SIZE COLOUR SHAPE <eos>``, so ``y`` is an
``(N, 6)`` int64 tensor and batches stay ``(image, caption)`` pairs. The vocabulary is tiny
(22 words and 5 specials), which keeps text towers small and every zero-shot prompt expressible.

Facts for the tasks (``DataInfo.extras``): ``class_token_ids`` — the id of each shape word, so
a caption's class can be read from its ids; ``prompt_ids`` — per shape, the prompts of a
zero-shot classifier, ``(K, P, T)``: every "a SIZE COLOUR SHAPE" (prompt ensembling, Radford et
al. 2021 §3.1.4: average the text embeddings of several prompts per class).

There are 10 × 8 × 3 = 240 distinct captions, so a batch of 64 holds duplicates; the
contrastive task treats every image-caption pair with the same caption as a positive.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from liandan.data.base import TOKENS, Source, served
from liandan.data.shapes import COLOURS, SHAPES, render
from liandan.data.tokenize import BOS, EOS, NUM_SPECIAL, PAD, VocabTokenizer
from liandan.registry import register_data

SIZES = ("small", "medium", "large")
TASKS = ("caption", "contrastive")


def caption_text(shape: str, colour: str, size: str) -> str:
    return f"a {size} {colour} {shape}"


def tokenizer() -> VocabTokenizer:
    """The fixed word vocabulary of every caption (and prompt) this source can write."""
    words = {"a", *SIZES, *COLOURS, *SHAPES}
    return VocabTokenizer("word", words)


def encode(tok: VocabTokenizer, texts: list[str], length: int) -> torch.Tensor:
    """``<bos> words <eos>`` rows, right-padded to ``length``: (N, length) int64."""
    out = torch.full((len(texts), length), PAD, dtype=torch.int64)
    for i, t in enumerate(texts):
        ids = [BOS, *tok.encode(t), EOS][:length]
        out[i, : len(ids)] = torch.as_tensor(ids)
    return out


def decode(tok: VocabTokenizer, ids: torch.Tensor) -> list[str]:
    """(N, T) ids -> text up to each row's first ``<eos>`` (specials dropped)."""
    texts = []
    for row in ids.tolist():
        row = row[: row.index(EOS)] if EOS in row else row
        texts.append(tok.decode(row))
    return texts


def size_word(radius: np.ndarray) -> np.ndarray:
    """Radius in [0.35, 0.75] of the half-image -> small / medium / large (the shapes source's bins)."""
    return np.where(radius < 0.48, "small", np.where(radius < 0.62, "medium", "large"))


@register_data("shapes_captions", tags=("image", "text", "synthetic"))
def shapes_captions(n: int = 3000, size: int = 32, noise: float = 0.05, task: str = "caption",
                    seed: int = 0) -> Source:
    """Synthetic 32×32 shapes with captions ("a small red triangle") for contrastive or caption tasks.

    Args:
        n: number of image-caption pairs
        size: image side in pixels
        noise: std of the Gaussian pixel noise (pixels in [0, 1])
        task: contrastive (CLIP-style matching) or caption (BLIP-style captioning)
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    served("shapes_captions", task, TASKS)
    imgs, labels, colours, radii = render(n, size, seed, noise)
    sizes = size_word(radii)
    tok = tokenizer()
    texts = [caption_text(SHAPES[k], c, s) for k, c, s in zip(labels, colours, sizes, strict=True)]
    length = 2 + max(len(t.split()) for t in texts)  # <bos> + words + <eos>
    y = encode(tok, texts, length)  # (N, T)
    prompts = [[caption_text(shape, c, s) for s, c in itertools.product(SIZES, COLOURS)] for shape in SHAPES]
    prompt_ids = torch.stack([encode(tok, p, length) for p in prompts])  # (K, P, T)
    facts = {"vocab_size": tok.vocab_size, "max_len": length, "pad_id": PAD, "num_special": NUM_SPECIAL,
             "class_token_ids": [tok.index[s] for s in SHAPES], "prompt_ids": prompt_ids.tolist()}
    return Source(y=y, task=task, targets=TOKENS, x=torch.from_numpy(imgs), num_classes=len(SHAPES),
                  class_names=list(SHAPES), tokenizer=tok, facts=facts,
                  meta={"shape": labels, "colour": colours, "size": list(sizes)})
