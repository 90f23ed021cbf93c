"""The public training API: ``train``, ``resume``, ``load_run`` (evaluation: ``liandan.evaluate``).

``liandan train`` and ``liandan resume`` are thin wrappers over these functions.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from liandan.data.pipeline import DataInfo, DataModule, build_data
from liandan.errors import LiandanError
from liandan.recipe import Recipe, load_recipe
from liandan.train import checkpoint as ck
from liandan.train import distributed as dist
from liandan.train.callbacks import Callback
from liandan.train.flops import peak_flops, utilisation
from liandan.train.loop import Trainer, evaluate, write_summary
from liandan.train.rundir import new_run_dir, read_json, write_json
from liandan.train.setup import build_loss, build_model, default_threads, pick_device, set_memory_format
from liandan.train.tasks import Task, build_task


@dataclass
class Run:
    """A run directory with its recipe, summary, data facts and (lazily) its trained model."""

    dir: Path
    recipe: Recipe
    summary: dict[str, Any]
    info: DataInfo
    model: nn.Module | None = None
    data: DataModule | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _echo(quiet: bool):
    return (lambda *a, **k: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def prepare(recipe: Recipe) -> tuple[DataModule, nn.Module, str, Any, torch.device]:
    """Data, model, loss and device for ``recipe``, checked with one forward pass before training."""
    seed_everything(recipe.seed)
    data = build_data(recipe.data, recipe.seed, recipe.task)
    seed_everything(recipe.seed)  # model init must not depend on how much RNG the data used
    model = build_model(recipe.model, data.info)
    loss_name, loss_fn = build_loss(recipe.loss, data.info.task)
    device = pick_device(recipe.train.device)
    model.to(device)
    _dry_run(model, build_task(data.info, loss_fn, recipe), data, device)
    return data, model, loss_name, loss_fn, device


def _dry_run(model: nn.Module, task: Task, data: DataModule, device: torch.device) -> None:
    """Fail before any training when the model cannot take the data or the loss the output."""
    b = data.eval_batches("train")
    xb, yb = next(iter(b.epoch(0)))
    xb, yb = xb[:2].to(device), yb[:2].to(device)
    was = model.training
    model.eval()  # eval mode: no batch-norm statistics move, no dropout RNG is drawn
    try:
        with torch.no_grad():
            _check_forward(model, task, data, xb, yb)
    finally:
        model.train(was)


def _check_forward(model: nn.Module, task: Task, data: DataModule, xb: torch.Tensor, yb: torch.Tensor) -> None:
    first = lambda e: str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__  # noqa: E731
    if task.loss_fn is None:  # the task calls the model itself (lm, gan, diffusion, ...)
        try:
            task.forward(model, xb, yb)
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            raise LiandanError(f"task {data.info.task!r} cannot run model on a batch from "
                               f"{data.info.source!r}: {first(e)}") from None
        return
    try:
        out = model(xb)
    except (RuntimeError, ValueError, IndexError) as e:
        raise LiandanError(f"model cannot take inputs of shape {tuple(xb.shape[1:])} from "
                           f"{data.info.source!r}: {first(e)}") from None
    if data.info.task == "classify" and out.dim() == 2 and out.shape[1] < data.info.num_classes:
        raise LiandanError(f"model outputs {out.shape[1]} values but the data has {data.info.num_classes} classes")
    try:
        task.loss_fn(out, yb)
    except (RuntimeError, ValueError, IndexError) as e:
        raise LiandanError(f"loss cannot compare the model output {tuple(out.shape)} with targets "
                           f"{tuple(yb.shape)}: {first(e)}") from None


def train(recipe: str | Path | dict | Recipe, overrides: list[str] | dict | None = None, out: str | Path | None = None,
          callbacks: list[Callback] | None = None, quiet: bool = False) -> Run:
    """Train ``recipe`` (a file, preset name, dict or Recipe) and return the finished :class:`Run`."""
    recipe = load_recipe(recipe, overrides)
    denv = dist.init(pick_device(recipe.train.device).type)
    data, model, loss_name, loss_fn, device = prepare(recipe)
    run_dir = None
    if denv.is_main:  # only rank 0 writes the run directory; the others learn its path
        run_dir = new_run_dir(recipe.name, out)
        (run_dir / "recipe.yaml").write_text(recipe.to_yaml(f"liandan train {run_dir / 'recipe.yaml'}"))
        write_json(run_dir / "data.json", data.info.to_dict())
        if (tokenizer := getattr(data.source, "tokenizer", None)) is not None:  # generate/evaluate reload it
            tokenizer.save(run_dir / (data.info.tokenizer or "tokenizer.json"))
        write_json(run_dir / "summary.json", {"name": recipe.name, "status": "running"})
    run_dir = Path(dist.broadcast(str(run_dir)))
    seed_everything(recipe.seed)
    return _fit(recipe, data, model, loss_fn, device, run_dir, None, callbacks, quiet)


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None, quiet: bool = False,
           epochs: int | None = None) -> Run:
    """Continue ``run_dir`` from its newest complete checkpoint (bit-exact on CPU in fp32)."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise LiandanError(f"{run_dir} is not a run directory (no recipe.yaml)")
    recipe = load_recipe(run_dir / "recipe.yaml", {"train.epochs": epochs} if epochs else None)
    denv = dist.init(pick_device(recipe.train.device).type)
    if denv.is_main:
        ck.clean_temp(run_dir / "checkpoints")
    dist.barrier()
    path = ck.newest_checkpoint(run_dir / "checkpoints")
    data, model, loss_name, loss_fn, device = prepare(recipe)
    if path is None:  # killed before its first checkpoint: start over in place
        seed_everything(recipe.seed)
        if denv.is_main:
            (run_dir / "metrics.csv").unlink(missing_ok=True)
    return _fit(recipe, data, model, loss_fn, device, run_dir, path, callbacks, quiet)


def _fit(recipe: Recipe, data: DataModule, model: nn.Module, loss_fn, device, run_dir: Path,
         resume_path: Path | None, callbacks, quiet: bool) -> Run:
    denv = dist.env()
    echo = _echo(quiet or not denv.is_main)
    data.train.shard(denv.rank, denv.world)
    model = set_memory_format(model, recipe.train.channels_last, data.info, device)
    threads_before = torch.get_num_threads()
    threads = recipe.train.threads or default_threads(model)
    torch.set_num_threads(threads)
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True)
    cbs = list(callbacks or [])
    if recipe.doctor.enabled and denv.is_main:
        cbs += _doctor_callbacks(recipe)
    sample = next(iter(data.eval_batches("train").epoch(0)))[0][:1].to(device)
    net = dist.wrap(model, recipe.train.strategy, device) if denv.enabled else model
    if recipe.train.compile:
        net = torch.compile(net)
    trainer = Trainer(recipe, data, model, loss_fn, run_dir, device, cbs, echo, net=net, quiet=quiet)
    flops = trainer.task.train_flops(model, sample)
    if resume_path is not None:
        trainer.resume_from(resume_path)
        echo(f"resuming {run_dir} at epoch {trainer.state.epoch + 1}, step {trainer.state.step}")
    try:
        status = trainer.fit()
    except BaseException:
        if denv.is_main:
            write_summary(trainer, {}, {"device": str(device)})
        dist.shutdown()
        torch.set_num_threads(threads_before)
        raise
    weights = "last"
    es = recipe.train.early_stopping
    best = run_dir / "checkpoints" / "best.safetensors"
    if es and es.restore_best and best.exists() and status in ("completed", "stopped_early"):
        ck.load_weights(model, best)
        weights = "best"
    final = {}
    if status in ("completed", "stopped_early"):
        for split in ("train", "val", "test"):
            if getattr(data, split) is not None:
                final[split] = evaluate(model, data.eval_batches(split), loss_fn, data.info, device, task=trainer.task)
        if denv.is_main:
            ck.save_weights(model, run_dir / "checkpoints" / "final.safetensors")
            if hasattr(model, "save_pretrained"):  # Hugging Face models: RUN/hf/ for PEFT, TRL, ONNX
                model.save_pretrained(run_dir / "hf")
                if hasattr(tokenizer := getattr(data.source, "tokenizer", None), "to_hf"):
                    tokenizer.to_hf().save_pretrained(str(run_dir / "hf"))
    n_params = sum(p.numel() for p in model.parameters())
    st = trainer.state
    extra = {"weights": "final" if final else weights, "device": str(device), "threads": threads,
             "params": n_params, "world_size": denv.world,
             "effective_batch_size": recipe.data.batch_size * recipe.train.accumulate * denv.world,
             "lr_scaling": "none: the recipe's lr is used as is for the effective batch size",
             **utilisation(flops, st.samples, st.wall_s, peak_flops(device, threads) if flops else None)}
    summary = write_summary(trainer, final, extra) if denv.is_main else {"status": status, "final": final, **extra}
    dist.shutdown()
    torch.set_num_threads(threads_before)  # after the final evaluation, which ran on the run's threads
    if denv.is_main and recipe.report:
        try:
            from liandan.report import write_report

            write_report(run_dir)
        except Exception as e:  # noqa: BLE001 (a report must never fail a finished run)
            echo(f"report skipped: {type(e).__name__}: {e}")
    key = "accuracy" if data.info.task == "classify" else "r2" if data.info.task == "regress" else "loss"
    if key in final.get("test", {}):  # tasks without accuracy/r2 (gan, diffusion, lm) report their loss
        echo(f"{status}: test {key} {final['test'][key]:.4f}  ({run_dir})")
    elif status != "completed":
        echo(f"{status}: {trainer.stop_reason}  ({run_dir})")
    return Run(run_dir, recipe, summary, data.info, model, data)


def _doctor_callbacks(recipe: Recipe) -> list[Callback]:
    try:
        from liandan.doctor.live import doctor_callbacks
    except ImportError:
        return []
    return doctor_callbacks(recipe)


def load_run(run_dir: str | Path, weights: str | None = None) -> Run:
    """Load a finished run: recipe, summary, data facts and the model with its trained weights."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / "data.json").is_file():
        raise LiandanError(f"{run_dir} is not a run directory (no recipe.yaml / data.json)")
    recipe = load_recipe(run_dir / "recipe.yaml")
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    info = DataInfo.from_dict(read_json(run_dir / "data.json"))
    seed_everything(recipe.seed)
    model = build_model(recipe.model, info)
    name = weights or summary.get("weights", "last")
    path = run_dir / "checkpoints" / f"{name}.safetensors"
    if not path.exists():
        raise LiandanError(f"{run_dir}: no {name} weights (status {summary.get('status', 'unknown')})")
    ck.load_weights(model, path)
    # evaluate with the memory format it trained with: the same kernels, the same last bits
    model = set_memory_format(model, recipe.train.channels_last, info, torch.device("cpu")).eval()
    return Run(run_dir, recipe, summary, info, model)
