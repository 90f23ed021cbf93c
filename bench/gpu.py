"""GPU throughput (run on a CUDA machine): resnet18 at 32×32 and a small GPT, each trained by a
raw loop with bf16 autocast, channels_last (CNN) and torch.compile on and off; prints samples/s,
achieved TFLOP/s and MFU against the device's dense bf16 peak.

    python bench/gpu.py [--steps 50]

Last line: ``best_mfu = X``. On a machine without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch import nn

import liandan
from liandan.training.flops import forward_flops, peak_flops


class TinyGPT(nn.Module):
    """A small decoder-only transformer (GPT-2 layout, causal mask) for the benchmark."""

    def __init__(self, vocab: int = 8192, d: int = 512, layers: int = 8, heads: int = 8, ctx: int = 256) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings, as GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
        return self.head(self.blocks(h, mask=mask, is_causal=True))


def run(name: str, model: nn.Module, make_batch, loss_fn, steps: int, compile_: bool, channels_last: bool) -> dict:
    dev = torch.device("cuda")
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = make_batch(dev)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    flops = forward_flops(model, x[:1]) * 3 * len(x)
    net = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16)
    for i in range(steps + 10):
        if i == 10:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with ctx:
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    achieved = flops / dt
    peak = peak_flops(dev, 1)
    return {"case": name, "compile": compile_, "samples_per_s": len(x) / dt, "tflops": achieved / 1e12,
            "mfu": achieved / peak if peak else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine")
        print("best_mfu = nan")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    ce = nn.functional.cross_entropy
    for compile_ in (False, True):
        cnn = liandan.create_model("resnet18", num_classes=10, input_shape=(3, 32, 32))
        rows.append(run("resnet18 32×32 b256", cnn, lambda d: (torch.randn(256, 3, 32, 32, device=d),
                                                              torch.randint(0, 10, (256,), device=d)),
                        ce, args.steps, compile_, channels_last=True))
        gpt = TinyGPT()
        rows.append(run("gpt d512 L8 T256 b32", gpt, lambda d: (torch.randint(0, 8192, (32, 256), device=d),
                                                               torch.randint(0, 8192, (32, 256), device=d)),
                        lambda out, y: ce(out.flatten(0, 1), y.flatten()), args.steps, compile_, False))
    print(f"{'case':<22} {'compile':>7} {'samples/s':>10} {'TFLOP/s':>8} {'MFU':>6}")
    for r in rows:
        print(f"{r['case']:<22} {r['compile']!s:>7} {r['samples_per_s']:10.0f} {r['tflops']:8.1f} {r['mfu']:6.3f}")
    with contextlib.suppress(ValueError):
        print(f"best_mfu = {max(r['mfu'] for r in rows):.3f}")


if __name__ == "__main__":
    main()
