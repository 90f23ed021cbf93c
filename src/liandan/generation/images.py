"""Image generation, ``liandan.sample``: draw images from a trained generative run (gan, diffusion) into a PNG grid.

The PNG is written with ``zlib`` alone (PNG spec: signature, IHDR, one zlib-compressed IDAT of
filter-0 scanlines, IEND, each chunk with its CRC-32), so sampling needs no imaging package.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import torch

from liandan.errors import LiandanError


def draw_images(model: torch.nn.Module, n: int, seed: int = 0, steps: int | None = None) -> torch.Tensor:
    """``n`` samples (n, C, H, W) as pixels in [0, 1] from a generative model, seeded."""
    from liandan.training.tasks.generative import to_pixels

    if not hasattr(model, "sample"):
        raise LiandanError(f"model {type(model).__name__} cannot generate; sampling needs a run trained with "
                           "task: gan or diffusion (e.g. preset digits-dcgan or digits-ddpm)")
    if n < 1:
        raise LiandanError(f"number of samples must be at least 1, got {n}")
    from liandan.training.setup import torch_threads

    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()  # batch-norm running statistics, no dropout: the same seed gives the same images
    # as in training: small models run faster on one thread (a diffusion chain is ~1000 small forwards)
    try:
        with torch_threads(model=model), torch.no_grad():
            x = model.sample(n, gen, steps=steps) if steps else model.sample(n, gen)
    finally:
        model.train(was)
    return to_pixels(x.float().cpu())


def grid(images: torch.Tensor, ncol: int | None = None, pad: int = 1, scale: int = 1) -> torch.Tensor:
    """Tile (N, C, H, W) pixels into one (C, H', W') image, ``pad`` pixels of black between tiles,
    every pixel repeated ``scale`` × ``scale`` (8×8 digits are unreadable at their own size)."""
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    if scale > 1:
        images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        h, w = h * scale, w * scale
    out = torch.zeros(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    return out


def write_png(path: str | Path, image: torch.Tensor) -> Path:
    """Write (C, H, W) pixels in [0, 1] (C = 1 grey, 3 RGB) as an 8-bit PNG."""
    c, h, w = image.shape
    if c not in (1, 3):
        raise LiandanError(f"PNG needs 1 or 3 channels, got {c}")
    px = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()  # (H, W, C)
    raw = b"".join(b"\x00" + px[r].tobytes() for r in range(h))  # filter type 0 per scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def sample(run_dir: str | Path, n: int = 64, out: str | Path = "grid.png", seed: int = 0,
           steps: int | None = None, scale: int | None = None) -> dict[str, Any]:
    """Draw ``n`` samples from the run in ``run_dir`` and write them to ``out`` as a PNG grid.

    ``steps``: fewer denoising steps for a diffusion model (DDIM). Returns what was written:
    ``{"out", "n", "seed", "shape", "wall_s", "mean_pixel"}``.
    """
    from liandan.training.run import load_run

    run = load_run(run_dir)
    t0 = time.perf_counter()
    x = draw_images(run.model, n, seed, steps)  # (n, C, H, W)
    wall = time.perf_counter() - t0
    h = x.shape[-1]
    path = write_png(out, grid(x, scale=scale or max(1, 32 // h)))
    return {"out": str(path), "n": n, "seed": seed, "shape": list(x.shape[1:]), "wall_s": round(wall, 3),
            "mean_pixel": round(float(x.mean()), 4)}
