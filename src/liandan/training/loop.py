"""The training loop: forward → loss → backward → (clip) → step, with validation each epoch,
exact resume, a non-finite guard, gradient accumulation and mixed precision.

Everything else a run does is a callback (:mod:`liandan.training.callbacks`): metrics.csv,
TensorBoard, best tracking and early stopping, the progress bar, checkpoints and signals. The
trainer builds that default set from the recipe; users add or replace callbacks.

The loop body is written to cost what a hand-written loop costs: no per-step ``.item()``
besides the one finiteness check (free on CPU, where nothing is asynchronous), metric sums
stay on the device until a log step, in-memory batches are tensor slices, and a hook is called
only on the callbacks that implement it (indexed once per fit).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.data.pipeline import DataModule
from liandan.errors import LiandanError
from liandan.losses import weight_penalty
from liandan.optim import current_lr
from liandan.recipe import Recipe
from liandan.training import distributed as dist
from liandan.training.callbacks.base import Callback, index_hooks
from liandan.training.callbacks.defaults import default_callbacks
from liandan.training.rundir import STATUSES, Clock, write_json
from liandan.training.state import TrainState, checkpoint_state, restore
from liandan.training.tasks import Task, build_task


class Trainer:
    """One training run: the model, its optimizer(s), the task, the state and the callbacks.

    ``callbacks`` are the user's; the trainer adds its defaults around them (see
    :func:`~liandan.training.callbacks.defaults.default_callbacks`).
    """

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
        self.dir, self.device, self.echo = run_dir, device, echo
        self.info = data.info
        tc = recipe.train
        self.cfg = tc
        self.state = TrainState()
        self.resumed = False
        self.steps_per_epoch = -(-len(data.train) // tc.accumulate)
        total = self.steps_per_epoch * tc.epochs
        self.total_steps = min(total, tc.max_steps) if tc.max_steps else total
        self.task = build_task(self.info, loss_fn, recipe)
        # the task declares what is optimized (a GAN: the generator here, the discriminator its own)
        opt = self.task.configure_optimizers(self)
        self.optimizer, self.schedule, self.params = opt.optimizer, opt.schedule, opt.params
        self.scaler = torch.amp.GradScaler("cuda") if tc.precision == "fp16" else None
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
        self.metrics = self.task.metric_names()
        es = tc.early_stopping
        self.monitor, self.monitor_mode = self.resolve_monitor(es.monitor if es else None, es.mode if es else "auto")
        self.status = "running"
        self.stop_reason = ""
        self._stop_request: tuple[str, str] | None = None
        # Set by ``interrupt`` (SIGINT/SIGTERM, the agents' cancel): finish the step, checkpoint,
        # status interrupted. The agents' StopOnCancel writes the attribute directly; keep it.
        self._stop_signal: str | None = None
        self._penalty = recipe.loss.l1 or recipe.loss.l2
        # an auxiliary loss (a mixture of experts' balancing loss) is a property of the model's class:
        # asked once here, not through nn.Module.__getattr__'s miss on every micro-batch
        self._has_aux = hasattr(type(model), "aux_loss")
        self.train_acc = self.task.tally(device, light=True)
        # running loss of the current log interval (checkpointed so resumed logs match too)
        self._log_loss = torch.zeros((), device=device)
        self._log_n = 0
        self._norm_every_step = True  # set by fit() from the callbacks
        self._found_inf: torch.Tensor | None = None  # the non-finite guard's flag (see _all_finite)
        self.clock = Clock(0.0)
        self.task.setup(self)
        self.callbacks = default_callbacks(self, list(callbacks or []))
        self.hooks = index_hooks(self.callbacks)
        for fn in self.hooks["setup"]:
            fn(self)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer this run steps: the trainer's and those its task declares (a GAN's D)."""
        return [self.optimizer, *self.task.optimizers()]

    # --- stopping ----------------------------------------------------------------------------------

    def request_stop(self, status: str, reason: str = "") -> None:
        """Ask the loop to end the run with ``status`` (stopped_early, completed, diverged,
        interrupted). It ends after the current step or epoch: later hooks of this step or epoch
        still run and see ``should_stop``. The first request wins. ``interrupted`` also writes a
        checkpoint where the run stopped, so ``liandan resume`` continues it."""
        if status not in STATUSES or status in ("running", "failed"):
            raise ValueError(f"request_stop: status must be one of completed, stopped_early, diverged, "
                             f"interrupted; got {status!r}")
        if self._stop_request is None:
            self._stop_request = (status, reason)

    def interrupt(self, source: str) -> None:
        """Stop as SIGINT does: finish this step, checkpoint, status ``interrupted``, reason
        ``received <source>``. Safe from a signal handler or another thread's event."""
        if not self._stop_signal:
            self._stop_signal = source

    @property
    def interrupt_requested(self) -> bool:
        return bool(self._stop_signal)

    @property
    def should_stop(self) -> bool:
        """True once the run is ending: a stop or interrupt was requested or the status is final."""
        return self._stop_request is not None or bool(self._stop_signal) or self.status != "running"

    def _settle_stop(self, signals: bool) -> None:
        """Turn a pending request (and, mid-epoch, an interrupt) into the run's status."""
        if self.status != "running":
            return
        if self._stop_request is not None:
            self.status, self.stop_reason = self._stop_request
        elif signals and self._stop_signal:
            self.status, self.stop_reason = "interrupted", f"received {self._stop_signal}"

    # --- set-up ----------------------------------------------------------------------------------

    def resolve_monitor(self, name: str | None, mode: str = "auto",
                        where: str = "train.early_stopping.monitor") -> tuple[str, str]:
        """``(name, min|max)`` of a monitored metric, checked against what this run logs
        (default: val.loss, train.loss without a validation split)."""
        has_val = self.data.val is not None
        name = name or ("val.loss" if has_val else "train.loss")
        split, _, metric = name.partition(".")
        allowed = [f"{s}.{m}" for s in ("train", "val") for m in ["loss", *self.metrics]]
        if name not in allowed or (split == "val" and not has_val):
            raise LiandanError(
                f"{where}: {name!r} is not logged by this run; available: "
                f"{', '.join(a for a in allowed if has_val or a.startswith('train'))}"
            )
        return name, mode if mode != "auto" else ("max" if metric in self.task.higher_is_better else "min")

    def resume_from(self, path: Path) -> None:
        """Continue from checkpoint ``path`` (see :mod:`liandan.training.state`)."""
        restore(self, path)
        self.resumed = True

    def checkpoint_state(self) -> dict[str, Any]:
        """A CPU snapshot of everything exact resume needs besides the weights (ModelCheckpoint
        writes it); the ``on_save_checkpoint`` hooks see it first."""
        return checkpoint_state(self)

    # --- the loop ---------------------------------------------------------------------------------

    def fit(self) -> str:
        """Train until the epochs or ``max_steps`` are done or the run stops; the final status."""
        tc = self.cfg
        hooks = self.hooks = index_hooks(self.callbacks)  # again: callbacks may have been added since
        # The gradient norm costs a pass over the gradients and four small ops: computed on every
        # step only when clipping uses it or an on_step_end hook reads it, else on log steps.
        self._norm_every_step = tc.grad_clip is not None or any(
            getattr(fn.__self__, "reads_grad_norm", True) for fn in hooks["on_step_end"])
        self.clock = Clock(self.state.wall_s)
        self.echo(self.data.info.describe())  # what was inferred from the data: task, classes, rows per split
        try:
            for fn in hooks["on_fit_start"]:
                fn(self)
            self.clock = Clock(self.state.wall_s)  # the run's time: training, not the callbacks' set-up
            self._settle_stop(signals=False)
            while self.state.epoch < tc.epochs and self.status == "running":
                self._train_epoch()
                if self.status != "running":
                    break
                self._end_epoch()
            if self.status == "running":
                self.status = "completed"
            for fn in hooks["on_train_end"]:
                fn(self)
        except BaseException:
            self.status = "failed"
            raise
        finally:
            self.state.wall_s = self.clock()
            self._teardown()
        for fn in hooks["on_fit_end"]:
            fn(self)
        return self.status

    def _teardown(self) -> None:
        """Every teardown hook runs (files closed, signal handlers restored) even if one fails."""
        error: BaseException | None = None
        for fn in self.hooks["teardown"]:
            try:
                fn(self)
            except BaseException as e:  # noqa: BLE001 (re-raised below, after the others ran)
                error = error or e
        if error is not None:
            raise error

    def _train_epoch(self) -> None:
        tc, st, net = self.cfg, self.state, self.net
        net.train()
        acc_n = tc.accumulate
        train = self.data.train
        n_batches = len(train)
        world = self.dist.world
        task_forward, custom_step = self.task.forward, self.task.train_step
        on_batch_start, on_step_end = self.hooks["on_batch_start"], self.hooks["on_step_end"]
        group: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, (xb, yb) in enumerate(self.data.train.epoch(st.epoch, st.batch), st.batch):
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            for fn in on_batch_start:
                fn(self, xb, yb)
            group.append((xb, yb))
            if len(group) < acc_n and i < n_batches - 1:
                continue
            first = i - len(group) + 1
            total = train.global_size(i) if first == i else sum(train.global_size(j) for j in range(first, i + 1))
            log_now = (st.step + 1) % tc.log_every == 0 or i == n_batches - 1
            if custom_step is not None:  # the task steps its own optimizers (e.g. a GAN's two)
                applied, grad_norm, loss_sum = custom_step(self, group)
            else:
                applied, grad_norm, loss_sum = self._step(group, total, world, task_forward,
                                                          log_now or self._norm_every_step)
                self.task.after_step(self, applied)
            group.clear()
            st.batch = i + 1
            st.step += 1
            st.samples += total
            if applied:
                self._log_loss += loss_sum
            self._log_n += 1
            # The row first: a checkpoint taken in on_step_end counts it among its csv rows.
            if log_now:
                self._log_step(self._log_loss / max(self._log_n, 1), grad_norm)
                self._log_loss.zero_()
                self._log_n = 0
            for fn in on_step_end:
                fn(self, loss_sum, grad_norm, applied)
            if self.status != "running" or self._stop_request is not None or self._stop_signal:
                self._settle_stop(signals=True)
                return
            if tc.max_steps and st.step >= tc.max_steps:
                break

    def _step(self, group, total: int, world: int, task_forward,
              need_norm: bool = True) -> tuple[bool, torch.Tensor | None, torch.Tensor]:
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
                aux = self.model.aux_loss if self._has_aux else None  # e.g. a mixture of experts' balancing loss
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
        applied, grad_norm = self._optimizer_step(loss_sum, need_norm)
        return applied, grad_norm, loss_sum

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _optimizer_step(self, loss: torch.Tensor, need_norm: bool = True) -> tuple[bool, torch.Tensor | None]:
        """Clip, guard and step. ``grad_norm`` is None when ``need_norm`` is False (the caller
        reads no norm this step): the guard then checks the gradients in one fused pass."""
        tc, st = self.cfg, self.state
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        for fn in self.hooks["on_after_backward"]:
            fn(self)
        grads = [p.grad for p in self.params if p.grad is not None]
        if need_norm or not grads or self.device.type not in ("cpu", "cuda"):
            grad_norm = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                         if grads else torch.zeros((), device=self.device))
            # The one host sync per step (free on CPU): a NaN/inf in either makes the sum non-finite.
            finite = math.isfinite(float(grad_norm + loss))
        else:
            grad_norm, finite = None, self._all_finite(grads, loss)
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

    def _all_finite(self, grads: list[torch.Tensor], loss: torch.Tensor) -> bool:
        """Whether the loss and every gradient are finite: torch's AMP check, one fused kernel
        over all of them (it multiplies by 1.0, which changes no value), then one host sync."""
        if self._found_inf is None:
            self._found_inf = torch.zeros(1, device=self.device)
            self._unit = torch.ones(1, device=self.device)
        found = self._found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_([*grads, loss.detach().reshape(1)], found, self._unit)
        return not found.item()

    def _log_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        st = self.state
        if self.dist.enabled:
            loss = dist.all_reduce_sum(loss.clone())  # local shares of the global mean add up
        on_log = self.hooks["on_log"]
        if not self.is_main or not on_log:  # nobody reads the row: no host sync for it
            return
        row = {"epoch": st.epoch, "step": st.step, "split": "step", "loss": float(loss),
               "lr": current_lr(self.optimizer), "grad_norm": float(grad_norm), "wall_s": round(self.clock(), 3)}
        for fn in on_log:
            fn(self, row)

    def _end_epoch(self) -> None:
        st, tc = self.state, self.cfg
        metrics = self._epoch_metrics()
        if self.is_main and self.hooks["on_log"]:
            wall = round(self.clock(), 3)
            for split, m in metrics.items():  # lr as the epoch ran, before a plateau schedule moves it
                row = {"epoch": st.epoch, "step": st.step, "split": split, **m,
                       "lr": current_lr(self.optimizer), "wall_s": wall}
                for fn in self.hooks["on_log"]:
                    fn(self, row)
        self.schedule.after_epoch(metrics.get("val", metrics["train"])["loss"])
        for fn in self.hooks["on_epoch_end"]:  # best tracking and early stopping among them
            fn(self, metrics)
        st.epoch += 1
        st.batch = 0
        self._settle_stop(signals=False)  # a signal is handled after the next step, as it always was
        if tc.max_steps and st.step >= tc.max_steps and self.status == "running":
            self.status = "completed"
        for fn in self.hooks["on_epoch_complete"]:  # the epoch-end checkpoint among them
            fn(self)

    def _epoch_metrics(self) -> dict[str, dict[str, float]]:
        """This epoch's train metrics (over every rank's shard) and a pass over the val split."""
        if self.dist.enabled:
            acc = self.train_acc
            if hasattr(acc, "flush"):
                acc.flush()
            for v in vars(acc).values():
                if torch.is_tensor(v):
                    dist.all_reduce_sum(v)
            acc.n = int(dist.all_reduce_sum(torch.tensor(acc.n, device=self.device)))
        metrics = {"train": self.train_acc.compute()}
        self.train_acc.reset()
        if self.data.val is not None:
            metrics["val"] = evaluate(self.model, self.data.eval_batches("val"), self.loss_fn, self.info,
                                      self.device, self._autocast, self.task)
        return metrics


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
