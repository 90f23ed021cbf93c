"""``shapes``: synthetic RGB images of 10 shape classes — a CIFAR-like task that trains on CPU.

Each image has a random background colour, a shape of random colour, size and position, and
pixel noise, so a model must learn the shape rather than a colour or location shortcut.
"""

from __future__ import annotations

import numpy as np

from liandan.data.base import Source, classification
from liandan.registry import register_data

SHAPES = ["circle", "ring", "square", "frame", "triangle", "diamond", "plus", "cross", "hbar", "vbar"]
COLOURS = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.1, 0.85), "cyan": (0.1, 0.85, 0.9), "orange": (1.0, 0.55, 0.05), "white": (0.97, 0.97, 0.97),
}


def _mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape mask on coordinates (u, v) centred on the shape and scaled so radius = 1."""
    au, av = np.abs(u), np.abs(v)
    r = np.sqrt(u**2 + v**2)
    match kind:
        case "circle":
            return r <= 1
        case "ring":
            return (r <= 1) & (r >= 0.55)
        case "square":
            return (au <= 0.8) & (av <= 0.8)
        case "frame":
            return (au <= 0.9) & (av <= 0.9) & ~((au <= 0.5) & (av <= 0.5))
        case "triangle":
            return (v <= 0.8) & (v >= -0.9 + 2 * au * 0.9)
        case "diamond":
            return au + av <= 1
        case "plus":
            return ((au <= 0.3) & (av <= 1)) | ((av <= 0.3) & (au <= 1))
        case "cross":
            d1, d2 = np.abs(u - v) / np.sqrt(2), np.abs(u + v) / np.sqrt(2)
            return ((d1 <= 0.22) | (d2 <= 0.22)) & (au <= 0.85) & (av <= 0.85)
        case "hbar":
            return (au <= 1) & (av <= 0.35)
        case "vbar":
            return (au <= 0.35) & (av <= 1)
    raise ValueError(kind)


def render(n: int, size: int = 32, seed: int = 0, noise: float = 0.05, grayscale: bool = False):
    """Render ``n`` images; returns (images (N, C, size, size) in [0, 1], labels, colour names, sizes)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    rng.shuffle(labels)
    names = list(COLOURS)
    coords = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    imgs = np.empty((n, 3, size, size), np.float32)
    colour_names, radii = [], np.empty(n, np.float32)
    for i in range(n):
        radius = rng.uniform(0.35, 0.75)
        cx, cy = rng.uniform(-1 + radius, 1 - radius, 2)
        fg_name = names[rng.integers(len(names))]
        fg = np.array(COLOURS[fg_name])
        bg = rng.uniform(0.0, 0.35, 3)  # dark backgrounds keep every colour visible
        m = _mask(SHAPES[labels[i]], (xx - cx) / radius, (cy - yy) / radius)
        imgs[i] = np.where(m[None], fg[:, None, None], bg[:, None, None])
        colour_names.append(fg_name)
        radii[i] = radius
    imgs += rng.normal(0, noise, imgs.shape).astype(np.float32)
    np.clip(imgs, 0, 1, out=imgs)
    if grayscale:
        imgs = imgs.mean(1, keepdims=True)
    return imgs, labels, colour_names, radii


@register_data("shapes", tags=("image", "synthetic"))
def shapes(n: int = 6000, size: int = 32, noise: float = 0.05, grayscale: bool = False, seed: int = 0) -> Source:
    """Synthetic 32×32 RGB images of 10 shapes with random colour, size, position and noise.

    Args:
        n: number of images
        size: image side in pixels
        noise: std of the Gaussian pixel noise (pixels in [0, 1])
        grayscale: average the colour channels into one
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    imgs, labels, colours, radii = render(n, size, seed, noise, grayscale)
    sizes = np.where(radii < 0.48, "small", np.where(radii < 0.62, "medium", "large"))
    return classification(imgs, labels, list(SHAPES), meta={"colour": colours, "size": list(sizes)})
