"""Compression on this CPU: size, test accuracy and latency of each method on a digits MLP,
at the preset's width (64→128→64→10, 17k parameters) and wide (64→W→W→10, ~1M at W=1024).

    python bench/compress.py [--width 1024] [--epochs 10]

Latency: median of repeated forward calls on one torch thread, ratio = fp32 / compressed
(above 1: faster). Dynamic int8 pays only where the matrix products dominate (the wide model);
on the tiny one, quantising activations costs more than the int8 product saves. Unstructured
zeros do not speed dense kernels; removing hidden units does.

Last line: ``int8_speedup_b1_wide = R`` (batch-1 latency ratio fp32/int8 on the wide model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import liandan
from liandan.compress import distill, prune, quantize

QUIET = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


def row(label: str, doc: dict) -> str:
    t, lat = doc["test"], doc.get("latency", {})
    b1, b64 = lat.get("batch1", {}).get("ratio", float("nan")), lat.get("batch64", {}).get("ratio", float("nan"))
    return (f"{label:<34}{doc['params']['after']:>10,}{doc['size_bytes']['after']:>12,}"
            f"{doc['size_bytes']['ratio']:>7.2f}x{t['before']['accuracy']:>9.4f}{t['after']['accuracy']:>9.4f}"
            f"{b1:>8.2f}x{b64:>8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    speedup = float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{'method':<34}{'params':>10}{'bytes':>12}{'size':>8}{'acc fp32':>9}{'acc':>9}"
              f"{'b1 lat':>9}{'b64 lat':>9}")
        for tag, hidden in (("mlp", "[128,64]"), ("wide", f"[{args.width},{args.width}]")):
            teacher = root / tag
            liandan.train("digits-mlp", overrides=[*QUIET, f"train.epochs={args.epochs}", "optim.lr=2e-3",
                                                   f"model.hidden={hidden}"], out=teacher, quiet=True)
            q = quantize(teacher, out=root / f"{tag}-int8")
            print(row(f"{tag}: dynamic int8", q))
            if tag == "wide":
                speedup = q["latency"]["batch1"]["ratio"]
            for amount, structured, ft in ((0.5, False, 0), (0.9, False, 0), (0.9, False, 2),
                                           (0.5, True, 0), (0.5, True, 2), (0.75, True, 2)):
                d = prune(teacher, amount=amount, structured=structured, finetune_epochs=ft,
                          out=root / f"{tag}-p{amount}-{structured}-{ft}")
                kind = "units" if structured else "weights"
                print(row(f"{tag}: prune {amount:.0%} {kind}" + (f" +{ft} ep" if ft else ""), d))
            kd = distill(teacher, "digits-mlp", out=root / f"{tag}-kd", overrides=[
                *QUIET, "model.hidden=[32]", "model.dropout=0", f"train.epochs={args.epochs}", "optim.lr=1e-2"])
            print(row(f"{tag}: distill -> mlp [32] (T=4)", kd))
    print(f"int8_speedup_b1_wide = {speedup:.2f}")


if __name__ == "__main__":
    main()
