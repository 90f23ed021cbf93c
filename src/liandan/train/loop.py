"""The training loop: forward → loss → backward → (clip) → step, with validation, logging,
checkpoints, exact resume, a non-finite guard, mixed precision and early stopping.

The loop body is written to cost what a hand-written loop costs: no per-step ``.item()``
besides the one finiteness check (free on CPU, where nothing is asynchronous), metric sums
stay on the device until a log step, and in-memory batches are tensor slices.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.data.pipeline import DataModule
from liandan.errors import LiandanError
from liandan.losses import weight_penalty
from liandan.optim import build_optimizer, build_schedule, current_lr
from liandan.recipe import Recipe
from liandan.train import checkpoint as ck
from liandan.train import distributed as dist
from liandan.train.callbacks import Callback
from liandan.train.progress import Progress
from liandan.train.rundir import MetricsLog, write_json
from liandan.train.tasks import Task, build_task


@dataclass
class TrainState:
    """Counters restored on resume (everything else is derived from the recipe and the seed)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken
    batch: int = 0  # next batch index within ``epoch``
    best_value: float | None = None
    best_step: int = -1
    best_epoch: int = -1
    stale_epochs: int = 0  # early-stopping counter
    bad_steps: int = 0  # consecutive non-finite steps
    total_bad_steps: int = 0
    csv_rows: int = 0
    wall_s: float = 0.0
    samples: int = 0


class Trainer:
    def __init__(self, recipe: Recipe, data: DataModule, model: nn.Module, loss_fn, run_dir: Path,
                 device: torch.device, callbacks: list[Callback] | None = None, echo=print,
                 net: nn.Module | None = None, quiet: bool = False, checkpoints: bool = True) -> None:
        self.recipe, self.data, self.model, self.loss_fn = recipe, data, model, loss_fn
        # ``net`` is what the training step calls (the model, or its DDP/FSDP/compiled wrapper);
        # ``model`` is the plain module that is evaluated, probed and saved.
        self.net = net if net is not None else model
        self.dist = dist.env()
        self.is_main = self.dist.is_main
        self.quiet = quiet
        self.checkpoints = checkpoints  # False: a short probe run (lr-find, overfit check) writes none
        self.dir, self.device, self.callbacks, self.echo = run_dir, device, list(callbacks or []), echo
        self.info = data.info
        tc = recipe.train
        self.cfg = tc
        self.state = TrainState()
        self.steps_per_epoch = -(-len(data.train) // tc.accumulate)
        total = self.steps_per_epoch * tc.epochs
        self.total_steps = min(total, tc.max_steps) if tc.max_steps else total
        self.optimizer = build_optimizer(model, recipe.optim.name, recipe.optim.lr, recipe.optim.weight_decay,
                                         recipe.optim.options, recipe.optim.decay_bias_and_norm)
        self.schedule = build_schedule(self.optimizer, recipe.schedule.name, self.total_steps,
                                       recipe.schedule.warmup_steps, recipe.schedule.options)
        self.scaler = torch.amp.GradScaler("cuda") if tc.precision == "fp16" else None
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
        self.task = build_task(self.info, loss_fn, recipe)
        self.metrics = self.task.metric_names()
        self.monitor, self.monitor_mode = self._monitor()
        self.log = MetricsLog(run_dir / "metrics.csv", self.metrics) if self.is_main else _NullLog()
        self.tb = None
        self.status = "running"
        self.stop_reason = ""
        self._stop_signal: str | None = None
        self._penalty = recipe.loss.l1 or recipe.loss.l2
        self.train_acc = self.task.tally(device, light=True)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # running loss of the current log interval (checkpointed so resumed logs match too)
        self._log_loss = torch.zeros((), device=device)
        self._log_n = 0
        self.writer = ck.CheckpointWriter()
        self.task.setup(self)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer this run steps: the trainer's and those its task declares (a GAN's D)."""
        return [self.optimizer, *self.task.optimizers()]

    # --- set-up ----------------------------------------------------------------------------------

    def _monitor(self) -> tuple[str, str]:
        es = self.cfg.early_stopping
        has_val = self.data.val is not None
        name = es.monitor if es else ("val.loss" if has_val else "train.loss")
        split, _, metric = name.partition(".")
        allowed = [f"{s}.{m}" for s in ("train", "val") for m in ["loss", *self.metrics]]
        if name not in allowed or (split == "val" and not has_val):
            raise LiandanError(
                f"train.early_stopping.monitor: {name!r} is not logged by this run; available: "
                f"{', '.join(a for a in allowed if has_val or a.startswith('train'))}"
            )
        mode = es.mode if es and es.mode != "auto" else ("max" if metric in self.task.higher_is_better else "min")
        return name, mode

    def resume_from(self, path: Path) -> None:
        st = ck.load_checkpoint(path, self.model)
        self.optimizer.load_state_dict(st["optimizer"])
        self.schedule.load_state_dict(st["schedule"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.state = TrainState(**st["counters"])
        acc = st.get("train_acc")
        if acc:
            for k, v in acc.items():
                setattr(self.train_acc, k, v.to(self.device) if torch.is_tensor(v) else v)
        if "log" in st:
            self._log_loss, self._log_n = st["log"]["loss"].to(self.device), st["log"]["n"]
        self.task.load_state_dict(st.get("task") or {})
        ck.set_rng_state(st["rng"])
        self.log.truncate(self.state.csv_rows)

    def _open_tb(self) -> None:
        if not self.cfg.tensorboard or not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is the [tb] extra
            return
        # purge_step drops events a killed run logged after its last checkpoint.
        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=self.state.step or None)

    # --- the loop ---------------------------------------------------------------------------------

    def fit(self) -> str:
        tc = self.cfg
        self._open_tb()
        for cb in self.callbacks:
            cb.on_fit_start(self)
        t_start = time.perf_counter() - self.state.wall_s
        handlers = self._install_signals()
        self.progress = Progress(self.total_steps, enabled=self.is_main and self.echo is not None and not self.quiet)
        self.progress.update(self.state.step, "")
        try:
            while self.state.epoch < tc.epochs and self.status == "running":
                self._train_epoch(t_start)
                if self.status != "running":
                    break
                self._end_epoch(t_start)
            if self.status == "running":
                self.status = "completed"
        except BaseException:
            self.status = "failed"
            raise
        finally:
            self.state.wall_s = time.perf_counter() - t_start
            self._restore_signals(handlers)
            self.progress.close()
            self.writer.wait()
            if self.tb is not None:
                self.tb.close()
            self.log.close()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.status

    def _train_epoch(self, t_start: float) -> None:
        tc, st, net = self.cfg, self.state, self.net
        net.train()
        acc_n = tc.accumulate
        train = self.data.train
        n_batches = len(train)
        world = self.dist.world
        task_forward, custom_step = self.task.forward, self.task.train_step
        group: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, (xb, yb) in enumerate(self.data.train.epoch(st.epoch, st.batch), st.batch):
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            for cb in self.callbacks:
                cb.on_batch_start(self, xb, yb)
            group.append((xb, yb))
            if len(group) < acc_n and i < n_batches - 1:
                continue
            first = i - len(group) + 1
            total = sum(train.global_size(j) for j in range(first, i + 1))
            if custom_step is not None:  # the task steps its own optimizers (e.g. a GAN's two)
                applied, grad_norm, loss_sum = custom_step(self, group)
            else:
                applied, grad_norm, loss_sum = self._step(group, total, world, task_forward)
                self.task.after_step(self, applied)
            group.clear()
            st.batch = i + 1
            st.step += 1
            st.samples += total
            if applied:
                self._log_loss += loss_sum
            self._log_n += 1
            for cb in self.callbacks:
                cb.on_step_end(self, loss_sum, grad_norm, applied)
            if st.step % tc.log_every == 0 or i == n_batches - 1:
                self._log_step(self._log_loss / max(self._log_n, 1), grad_norm, t_start)
                self._log_loss.zero_()
                self._log_n = 0
            if self.status != "running":
                return
            if tc.checkpoint_every and st.step % tc.checkpoint_every == 0 and st.bad_steps == 0:
                # no checkpoint inside a streak of skipped steps: the newest stays a good one
                self.checkpoint(t_start)
            if self._stop_signal:
                self.checkpoint(t_start)
                self.status, self.stop_reason = "interrupted", f"received {self._stop_signal}"
                return
            if tc.max_steps and st.step >= tc.max_steps:
                break

    def _step(self, group, total: int, world: int, task_forward) -> tuple[bool, torch.Tensor, torch.Tensor]:
        """Forward and backward over the accumulation group, then one optimizer step."""
        net = self.net
        loss_sum: torch.Tensor | float = 0.0
        for k, (x, y) in enumerate(group):
            # Weight each micro-batch by its share of the group's samples (over all ranks), so N
            # micro-batches of B give exactly the gradient of one batch of N·B with mean-reduced
            # losses; the factor ``world`` undoes DDP's averaging of the ranks' gradients.
            share = len(y) / total
            sync = k == len(group) - 1 or world == 1
            with self._autocast(), (contextlib.nullcontext() if sync else net.no_sync()):
                loss, out = task_forward(net, x, y)
                aux = getattr(self.model, "aux_loss", None)  # e.g. a mixture of experts' balancing loss
                if aux is not None:
                    loss = loss + aux
                if self._penalty:
                    loss = loss + weight_penalty(self.model, self.recipe.loss.l1, self.recipe.loss.l2)
                factor = share * world
                scaled = loss if factor == 1.0 else loss * factor  # one batch, one process: as is
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss = loss.detach()
            loss_sum = loss if share == 1.0 else loss_sum + loss * share
            self.train_acc.update(out.detach() if torch.is_tensor(out) else out, y, loss)
        applied, grad_norm = self._optimizer_step(loss_sum)
        return applied, grad_norm, loss_sum

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _optimizer_step(self, loss: torch.Tensor) -> tuple[bool, torch.Tensor]:
        tc, st = self.cfg, self.state
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        for cb in self.callbacks:
            cb.on_after_backward(self)
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_norm = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                     if grads else torch.zeros((), device=self.device))
        # The one host sync per step (free on CPU): a NaN/inf in either makes the sum non-finite.
        finite = math.isfinite(float(grad_norm + loss))
        if self.dist.enabled:  # every rank must take the same decision
            finite = dist.all_true(finite, self.device)
        if not finite and self.scaler is None:
            # Skip the update: weights and optimizer state stay exactly as they were.
            self.optimizer.zero_grad(set_to_none=True)
            st.bad_steps += 1
            st.total_bad_steps += 1
            if st.bad_steps >= tc.max_bad_steps:
                self.status = "diverged"
                self.stop_reason = (f"{st.bad_steps} consecutive steps with non-finite loss or gradients "
                                    f"(step {st.step + 1}); run `liandan doctor {self.dir}`")
            return False, grad_norm
        if tc.grad_clip is not None and grads:
            torch.nn.utils.clip_grads_with_norm_(self.params, tc.grad_clip, grad_norm, foreach=True)
        if tc.grad_clip_value is not None and grads:
            torch.nn.utils.clip_grad_value_(self.params, tc.grad_clip_value, foreach=True)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.after_step()
        st.bad_steps = 0
        return True, grad_norm

    def _log_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, t_start: float) -> None:
        st = self.state
        if self.dist.enabled:
            loss = dist.all_reduce_sum(loss.clone())  # local shares of the global mean add up
        if not self.is_main:
            return
        row = {"epoch": st.epoch, "step": st.step, "split": "step", "loss": float(loss),
               "lr": current_lr(self.optimizer), "grad_norm": float(grad_norm),
               "wall_s": round(time.perf_counter() - t_start, 3)}
        self.log.write(row)
        self.progress.update(st.step, f"epoch {st.epoch + 1} loss {row['loss']:.4f}")
        if self.tb is not None:
            for k in ("loss", "lr", "grad_norm"):
                self.tb.add_scalar(f"step/{k}", row[k], st.step)

    def _end_epoch(self, t_start: float) -> None:
        st, tc = self.state, self.cfg
        if self.dist.enabled:  # train metrics over every rank's shard
            acc = self.train_acc
            for v in vars(acc).values():
                if torch.is_tensor(v):
                    dist.all_reduce_sum(v)
            acc.n = int(dist.all_reduce_sum(torch.tensor(acc.n, device=self.device)))
        metrics = {"train": self.train_acc.compute()}
        self.train_acc.reset()
        if self.data.val is not None:
            metrics["val"] = evaluate(self.model, self.data.eval_batches("val"), self.loss_fn, self.info,
                                      self.device, self._autocast, self.task)
        wall = round(time.perf_counter() - t_start, 3)
        for split, m in metrics.items():
            self.log.write({"epoch": st.epoch, "step": st.step, "split": split, **m,
                            "lr": current_lr(self.optimizer), "wall_s": wall})
            if self.tb is not None:
                for k, v in m.items():
                    self.tb.add_scalar(f"{split}/{k}", v, st.step)
        self.schedule.after_epoch(metrics.get("val", metrics["train"])["loss"])
        split, _, key = self.monitor.partition(".")
        value = metrics[split].get(key)
        improved = value is not None and value == value and (
            st.best_value is None
            or (value < st.best_value - (tc.early_stopping.min_delta if tc.early_stopping else 0.0)
                if self.monitor_mode == "min"
                else value > st.best_value + (tc.early_stopping.min_delta if tc.early_stopping else 0.0)))
        if improved:  # best.safetensors is linked to this epoch's checkpoint below
            st.best_value, st.best_step, st.best_epoch, st.stale_epochs = float(value), st.step, st.epoch, 0
        else:
            st.stale_epochs += 1
        if self.is_main:
            self.progress.print(self._epoch_line(metrics), self.echo)
        for cb in self.callbacks:
            cb.on_epoch_end(self, metrics)
        st.epoch += 1
        st.batch = 0
        es = tc.early_stopping
        if es and st.stale_epochs > es.patience:
            self.status = "stopped_early"
            self.stop_reason = f"{self.monitor} did not improve for {st.stale_epochs} epochs"
        if tc.max_steps and st.step >= tc.max_steps and self.status == "running":
            self.status = "completed"
        self.checkpoint(t_start, best=improved)

    def _epoch_line(self, metrics: dict[str, dict[str, float]]) -> str:
        parts = [f"epoch {self.state.epoch + 1}/{self.cfg.epochs}"]
        train = metrics.get("train", {})
        for split, m in metrics.items():
            # the loss, the first metric, and those only evaluation computes (zero-shot, generated captions)
            keys = ["loss", *self.metrics[:1], *(k for k in self.metrics[1:] if k not in train)]
            parts.append(" ".join(f"{split}.{k}={m[k]:.4f}" for k in keys if k in m))
        return "  ".join(parts)

    def checkpoint(self, t_start: float, best: bool = False) -> Path | None:
        """Snapshot weights and training state now; write them on the checkpoint thread (the
        previous write is finished first). ``best``: these weights are also the best so far."""
        st = self.state
        st.wall_s = time.perf_counter() - t_start
        if not self.is_main or not self.checkpoints:
            return None
        st.csv_rows = self.log.rows
        acc = {k: v for k, v in vars(self.train_acc).items() if torch.is_tensor(v) or k == "n"}
        state = ck.snapshot({
            "counters": asdict(st),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": ck.rng_state(),
            "train_acc": acc,
            "log": {"loss": self._log_loss, "n": self._log_n},
            "task": self.task.state_dict(),
        })
        weights = ck.state_dict_cpu(self.model)
        ckpt_dir = self.dir / "checkpoints"
        links = (ckpt_dir / "last.safetensors", *((ckpt_dir / "best.safetensors",) if best else ()))
        step, keep = st.step, self.cfg.keep_checkpoints
        self.writer.submit(lambda: ck.save_checkpoint(ckpt_dir, step, weights, state, keep, links))
        if self.tb is not None:
            self.tb.flush()
        return ckpt_dir / f"{ck.STEP_PREFIX}{step:08d}"

    # --- signals: finish the step, checkpoint, exit with status interrupted -------------------------

    def _install_signals(self) -> dict:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def request_stop(signum, frame):  # noqa: ARG001
            if self._stop_signal:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name
            self.echo(f"{self._stop_signal}: finishing this step and writing a checkpoint (again to abort)")

        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, request_stop)
        return old

    def _restore_signals(self, old: dict) -> None:
        for s, h in old.items():
            signal.signal(s, h)


@torch.no_grad()
def evaluate(model: nn.Module, batches, loss_fn, info, device: torch.device, autocast=None,
             task: Task | None = None) -> dict[str, float]:
    """Loss and metrics of ``model`` over ``batches`` in eval mode (the model's mode is restored)."""
    task = task or build_task(info, loss_fn, None)
    was_training = model.training
    model.eval()
    acc = task.tally(device)
    ctx = autocast or contextlib.nullcontext
    for xb, yb in batches.epoch(0):
        xb, yb = xb.to(device), yb.to(device)
        with ctx():
            loss, out = task.forward(model, xb, yb)
        acc.update(out.float() if torch.is_tensor(out) else out, yb, loss.float())
    model.train(was_training)
    return acc.compute()


def write_summary(trainer: Trainer, final: dict[str, dict[str, float]], extra: dict[str, Any]) -> dict[str, Any]:
    st = trainer.state
    summary = {
        "name": trainer.recipe.name,
        "status": trainer.status,
        "epochs": st.epoch,
        "steps": st.step,
        "wall_s": round(st.wall_s, 3),
        "samples_per_s": round(st.samples / st.wall_s, 1) if st.wall_s > 0 else None,
        "best": {"monitor": trainer.monitor, "value": st.best_value, "epoch": st.best_epoch, "step": st.best_step},
        "final": final,
        "bad_steps": st.total_bad_steps,
        **extra,
    }
    if trainer.stop_reason:
        summary["reason"] = trainer.stop_reason
    write_json(trainer.dir / "summary.json", summary)
    return summary


class _NullLog:
    """metrics.csv stand-in on ranks other than 0 (only rank 0 writes the run directory)."""

    rows = 0

    def write(self, row: dict) -> None:
        pass

    def truncate(self, rows: int) -> None:
        pass

    def close(self) -> None:
        pass
