"""Batching throughput: liandan's index-slicing batches vs torch's DataLoader (default settings:
TensorDataset, per-sample indexing and collate) over in-memory tensors, alternated.

    python bench/loader_throughput.py [--n 200000] [--features 64] [--batch 64] [--repeats 5]

Last line: ``ratio liandan/dataloader = X`` (samples per second; higher is better).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from liandan.data.loaders import TensorBatches


def _epoch_rate(batches, n: int) -> float:
    t0 = time.perf_counter()
    seen = 0
    for xb, _ in batches:
        seen += len(xb)
    assert seen == n
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.n, args.features)
    y = torch.randint(0, 10, (args.n,))
    ours = TensorBatches(x, y, args.batch, shuffle=True, seed=0)
    theirs = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True)
    rates: dict[str, list[float]] = {"liandan": [], "dataloader": []}
    for r in range(args.repeats):
        order = ("liandan", "dataloader") if r % 2 == 0 else ("dataloader", "liandan")
        for name in order:
            batches = ours.epoch(r) if name == "liandan" else theirs
            rates[name].append(_epoch_rate(batches, args.n))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{'loader':<11} {'median samples/s':>17} {'max':>12}")
    for k, v in rates.items():
        print(f"{k:<11} {med[k]:17,.0f} {max(v):12,.0f}")
    print(f"ratio liandan/dataloader = {med['liandan'] / med['dataloader']:.1f}")


if __name__ == "__main__":
    main()
