"""Data-parallel training on PyTorch's own engine (torch.distributed, launched by torchrun).

``liandan train RECIPE --nproc N`` re-launches itself through ``torch.distributed.run`` with
the same arguments; each worker finds RANK/WORLD_SIZE in its environment, joins the process
group (gloo on CPU, NCCL on CUDA), trains its shard of every global batch, and only rank 0
writes the run directory. The recipe does not change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from liandan.errors import LiandanError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env() -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_type: str) -> DistEnv:
    """Join the process group named by torchrun's environment (no-op for one process)."""
    e = env()
    if e.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device_type == "cuda":
            torch.cuda.set_device(e.local_rank)
    return e


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_true(flag: bool, device: torch.device) -> bool:
    """A decision every rank must agree on (e.g. skip a non-finite step)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def broadcast(obj):
    """Rank 0's value of a picklable object on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap(model: torch.nn.Module, strategy: str, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel (gradients all-reduced) or FullyShardedDataParallel."""
    if not dist.is_initialized():
        return model
    if strategy == "fsdp":
        if device.type != "cuda":
            raise LiandanError("train.strategy=fsdp needs CUDA GPUs (PyTorch's FSDP has no CPU path); use ddp")
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP(model, device_id=device if device.type == "cuda" else None, use_orig_params=True)
    ids = [device.index or 0] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def launch(argv: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0, master: str | None = None) -> int:
    """Run ``python -m liandan ARGV`` under torchrun; returns its exit code."""
    if nproc < 1 or nnodes < 1:
        raise LiandanError("--nproc and --nnodes must be at least 1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
           f"--node_rank={node_rank}"]
    if master:
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit():
            raise LiandanError(f"--master must be ADDR:PORT, got {master!r}")
        cmd += [f"--master_addr={host}", f"--master_port={port}"]
    elif nnodes == 1:
        cmd += ["--standalone"]
    cmd += ["-m", "liandan", *argv]
    return subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
