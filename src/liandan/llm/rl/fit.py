"""Running an alignment method through the one :class:`~liandan.training.loop.Trainer`.

The reward model and GRPO build their data from a finished run and hand it, with their task
(:mod:`liandan.llm.rl.tasks`), to the trainer: no second optimizer loop. Their trainer recipe is the
base run's (device, precision, threads, the doctor) with the method's optimizer (AdamW, no weight
decay, constant rate), gradient clipping at norm 1 and a row per step; ``overrides`` (``a.b=c``,
as ``liandan train --set``) change it, e.g. ``train.precision=bf16``, ``train.accumulate=2`` or
``train.checkpoint_every=50``.

A run stopped early (Ctrl-C / SIGTERM: status ``interrupted``, a checkpoint where it stopped)
continues with ``resume=True``, the same arguments and ``out`` its directory: the trainer's exact
resume (weights, optimizer, RNG, data position, the task's state, metrics.csv).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError


def echo_fn(quiet: bool):
    return (lambda *a, **k: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def trainer_recipe(recipe, task: str, lr: float, epochs: int, overrides: list[str] | dict | None):
    """The recipe the trainer runs: ``recipe`` (the output run's) with the method's optimisation."""
    from liandan.recipe import load_recipe

    d = recipe.to_dict()
    d["task"] = task
    d["loss"] = {}
    d["optim"] = {"name": "adamw", "lr": lr, "weight_decay": 0.0}
    d["schedule"] = {"name": "constant", "warmup_steps": 0}
    d["train"].update(epochs=epochs, max_steps=None, grad_clip=1.0, grad_clip_value=None, accumulate=1,
                      early_stopping=None, checkpoint_every=0, log_every=1, tensorboard=False, compile=False,
                      callbacks=[])
    d["doctor"]["auto_fix"] = False  # a repair retrains with `liandan train`, which cannot make this data
    return load_recipe(d, overrides)


def open_run_dir(base: Path, recipe, header: str, out: str | Path | None, options: dict[str, Any],
                 resume: bool) -> tuple[Path, Path | None]:
    """The output directory and the checkpoint to resume from (None: start from scratch).

    ``resume``: ``out`` is a run of this method stopped early with the same options."""
    from liandan.llm.rl.runio import start_run_dir
    from liandan.training import checkpoint as ck
    from liandan.training.rundir import read_json, write_json

    options = json.loads(json.dumps(options))
    if not resume:
        out_dir = start_run_dir(base, recipe, header, out)
        write_json(out_dir / "summary.json", {"name": recipe.name, "status": "running", "options": options})
        return out_dir, None
    out_dir = Path(out) if out is not None else None
    if out_dir is None or not (out_dir / "summary.json").is_file():
        raise LiandanError(f"resume: out must be the run directory to continue, got {out}")
    summary = read_json(out_dir / "summary.json")
    if summary.get("status") == "completed":
        raise LiandanError(f"resume: {out_dir} is already completed")
    if summary.get("options") != options:
        was = summary.get("options") or {}
        diff = sorted(k for k in {*was, *options} if was.get(k) != options.get(k))
        raise LiandanError(f"resume: {out_dir} was started with other options ({', '.join(diff)}); pass the same")
    ck.clean_temp(out_dir / "checkpoints")
    path = ck.newest_checkpoint(out_dir / "checkpoints")
    if path is None:  # stopped before its first checkpoint: start over in place
        (out_dir / "metrics.csv").unlink(missing_ok=True)
    write_json(out_dir / "summary.json", {**summary, "status": "running"})
    return out_dir, path


def run_trainer(recipe, data, model: nn.Module, loss_fn, out_dir: Path, device: torch.device,
                callbacks: list, resume_path: Path | None, echo, quiet: bool):
    """Fit ``model`` on ``data`` under ``recipe`` with the doctor when the recipe enables it; the trainer."""
    from liandan.training.callbacks.defaults import recipe_callbacks
    from liandan.training.loop import Trainer
    from liandan.training.setup import torch_threads

    cbs = [*recipe_callbacks(recipe), *callbacks]
    if recipe.doctor.enabled:
        from liandan.doctor.live import doctor_callbacks

        cbs += doctor_callbacks(recipe)
    with torch_threads(recipe.train.threads, model):
        trainer = Trainer(recipe, data, model, loss_fn, out_dir, device, cbs, echo=echo, quiet=quiet)
        if resume_path is not None:
            trainer.resume_from(resume_path)
            echo(f"resuming {out_dir} at step {trainer.state.step}")
        trainer.fit()
    return trainer


def run_facts(trainer) -> dict[str, Any]:
    """What summary.json says about the trainer's run besides the method's own keys."""
    st = trainer.state
    facts = {"status": trainer.status, "steps": st.step, "wall_s": round(st.wall_s, 3), "bad_steps": st.total_bad_steps,
             "device": str(trainer.device)}
    if trainer.stop_reason:
        facts["reason"] = trainer.stop_reason
    return facts


def write_report(recipe, out_dir: Path, echo) -> None:
    """report.html when the recipe asks for one (a report never fails a finished run)."""
    if not recipe.report:
        return
    try:
        from liandan.report import write_report as report

        report(out_dir)
    except Exception as e:  # noqa: BLE001
        echo(f"report skipped: {type(e).__name__}: {e}")
