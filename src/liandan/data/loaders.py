"""Batching. In-memory tensors are batched by index slicing (no per-sample collate, which is
what makes torch's default DataLoader slow on small tensors); file-backed datasets go through
torch's DataLoader.

The data order is a pure function of (seed, epoch): epoch ``e`` shuffles with a generator
seeded from both, and each batch's augmentation draws from a generator seeded from
(seed, epoch, batch). A run resumed mid-epoch therefore sees exactly the batches the
uninterrupted run saw, without replaying the skipped ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Batch = tuple[torch.Tensor, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def epoch_generator(seed: int, epoch: int, batch: int = -1) -> torch.Generator:
    # Large odd multipliers keep (seed, epoch, batch) triples from colliding.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 10_007 + batch + 1) % (2**63))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    return torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)


def global_batches(n: int, batch_size: int, world: int, drop_last: bool) -> int:
    """Number of (global) batches per epoch; a last batch too small to give every rank a
    sample is dropped in distributed runs."""
    gb = batch_size * world
    full, rest = divmod(n, gb)
    if drop_last or (world > 1 and rest < world):
        return max(full, 1) if n >= gb else (1 if n >= world else 0)
    return full + (1 if rest else 0)


class _Sharded:
    """Shared logic: a global batch of ``batch_size × world`` samples per step, cut into
    ``world`` nearly equal parts; rank ``r`` gets part ``r`` (distributed data parallel)."""

    batch_size: int
    rank: int = 0
    world: int = 1
    drop_last: bool = False

    def shard(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return global_batches(self.num_samples, self.batch_size, self.world, self.drop_last)

    def global_size(self, i: int) -> int:
        """Samples in global batch ``i`` summed over ranks (to weight accumulated losses)."""
        gb = self.batch_size * self.world
        return min(gb, self.num_samples - i * gb)

    def _local(self, order: torch.Tensor, i: int) -> torch.Tensor:
        gb = self.batch_size * self.world
        idx = order[i * gb : (i + 1) * gb]
        return idx if self.world == 1 else idx.tensor_split(self.world)[self.rank]


class TensorBatches(_Sharded):
    """Batches of in-memory ``(x, y)`` tensors by slicing a per-epoch permutation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, augment: Augment | None = None, drop_last: bool = False) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.augment, self.drop_last = shuffle, seed, augment, drop_last

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """Batches of ``epoch`` from batch index ``start`` on."""
        n, b = len(self.y), self.batch_size
        if not self.shuffle and self.augment is None and self.world == 1:  # views: no copy at all
            for i in range(start, len(self)):
                yield self.x[i * b : (i + 1) * b], self.y[i * b : (i + 1) * b]
            return
        order = epoch_order(n, self.seed, epoch, self.shuffle)
        x, y, augment = self.x, self.y, self.augment
        # index_select, not x[idx]: advanced indexing costs 3-4x more per batch on small batches
        for i in range(start, len(self)):
            idx = order[i * b : (i + 1) * b] if self.world == 1 else self._local(order, i)
            xb = x.index_select(0, idx)
            if augment is not None:
                xb = augment(xb, epoch_generator(self.seed, epoch, i))
            yield xb, y.index_select(0, idx)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


class _EpochBatchSampler(Sampler[list[int]]):
    """Index lists of one epoch's (local) batches, from batch ``start`` on."""

    def __init__(self, owner: LoaderBatches) -> None:
        self.owner, self.epoch, self.start = owner, 0, 0

    def __iter__(self) -> Iterator[list[int]]:
        o = self.owner
        order = epoch_order(o.num_samples, o.seed, self.epoch, o.shuffle)
        for i in range(self.start, len(o)):
            yield o._local(order, i).tolist()

    def __len__(self) -> int:
        return len(self.owner) - self.start


class LoaderBatches(_Sharded):
    """File-backed batches through torch's DataLoader, with the same (seed, epoch) order."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 augment: Augment | None = None, num_workers: int = 0, drop_last: bool = False) -> None:
        self.dataset, self.batch_size, self.augment, self.seed = dataset, batch_size, augment, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.sampler = _EpochBatchSampler(self)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.start = epoch, start
        for i, (xb, yb) in enumerate(self.loader, start):
            if self.augment is not None:
                xb = self.augment(xb, epoch_generator(self.seed, epoch, i))
            yield xb, yb

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


# --- augmentation (train split only) ---------------------------------------------------------


def parse_augment(specs: list[str], image: bool) -> Augment | None:
    """``["hflip", "crop:4", "noise:0.05"]`` -> one function applied to a batch."""
    from liandan.errors import LiandanError

    steps: list[Augment] = []
    for spec in specs:
        name, _, arg = spec.partition(":")
        try:
            val = float(arg) if arg else None
        except ValueError:
            raise LiandanError(f"data.augment: {spec!r}: argument must be a number") from None
        if name in ("hflip", "vflip", "crop") and not image:
            raise LiandanError(f"data.augment: {name!r} needs image data (N, C, H, W)")
        if name == "hflip":
            steps.append(lambda x, g: _flip(x, g, -1))
        elif name == "vflip":
            steps.append(lambda x, g: _flip(x, g, -2))
        elif name == "crop":
            steps.append(lambda x, g, p=int(val or 4): _random_crop(x, g, p))
        elif name == "noise":
            steps.append(lambda x, g, s=val or 0.05: x + s * torch.randn(x.shape, generator=g))
        else:
            raise LiandanError(f"data.augment: unknown {name!r}; available: hflip, vflip, crop:PAD, noise:STD")
    if not steps:
        return None

    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for s in steps:
            x = s(x, g)
        return x

    return apply


def _flip(x: torch.Tensor, g: torch.Generator, dim: int) -> torch.Tensor:
    mask = torch.rand(len(x), generator=g) < 0.5
    return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), x.flip(dim), x)


def _random_crop(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back at a random offset per sample (one gather, no loop)."""
    b, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    return xp[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
