"""The public training API: ``train``, ``resume``, ``load_run`` (evaluation: ``liandan.evaluate``).

``liandan train`` and ``liandan resume`` are thin wrappers over these functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from liandan.data.pipeline import DataModule
from liandan.errors import LiandanError
from liandan.recipe import Recipe, apply_overrides, load_recipe
from liandan.registry import RUN_HOOKS
from liandan.runs import HF, METRICS, RECIPE, TOKENIZER, RunDir
from liandan.training import checkpoint as ck
from liandan.training import distributed as dist
from liandan.training.callbacks import Callback
from liandan.training.callbacks.defaults import build_callback, recipe_callbacks
from liandan.training.flops import peak_flops, utilisation
from liandan.training.loop import Trainer, evaluate, write_summary
from liandan.training.run import Run, load_run, prepare, save_final, seed_everything
from liandan.training.setup import default_threads, pick_device, set_memory_format

__all__ = ["Run", "fit", "load_run", "prepare", "resume", "seed_everything", "train"]


def _echo(quiet: bool):
    return (lambda *a, **k: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def train(recipe: str | Path | dict | Recipe, overrides: list[str] | dict | None = None, out: str | Path | None = None,
          callbacks: list[Callback] | None = None, quiet: bool = False, model: nn.Module | None = None,
          trust: bool = False) -> Run:
    """Train ``recipe`` (a file, preset name, dict or Recipe) and return the finished :class:`Run`.

    ``model``: a user's ``nn.Module`` instance to train as it is. The recipe's model section is
    then optional and ignored (its init, weights and freeze too); recipe.yaml records the module's
    class path with the constructor arguments found on it (:func:`~liandan.training.setup.user_model_section`),
    so ``load_run`` rebuilds it when it can, and otherwise loads the weights only into a module
    passed back: ``load_run(dir, model=MyNet(...))``. ``trust``: allow the recipe's model section
    to import user code (``model.trust``; CLI ``--trust``)."""
    user_rebuilds = True
    if model is not None:
        from liandan.recipe import load_dict, validate
        from liandan.registry import MODELS
        from liandan.training.setup import user_model_section

        raw = apply_overrides(recipe.to_dict() if isinstance(recipe, Recipe) else load_dict(recipe), overrides)
        raw["model"], user_rebuilds = user_model_section(model)
        MODELS.add_class(raw["model"]["name"], type(model))  # found in this process without an import
        recipe = validate(raw)
    else:
        recipe = load_recipe(recipe, {**_as_dict(overrides), "model.trust": True} if trust else overrides)
    denv = dist.init(pick_device(recipe.train.device).type)
    data, model, loss_name, loss_fn, device = prepare(recipe, model)
    if callable(describe := getattr(model, "describe", None)):  # a pre-trained model: what loaded, what is new
        _echo(quiet or not denv.is_main)(describe())
    if not user_rebuilds:
        _echo(quiet or not denv.is_main)(f"model {recipe.model.name}: the recipe cannot rebuild this module; "
                                         "load the run with load_run(dir, model=...)")
    run_dir = None
    if denv.is_main:  # only rank 0 writes the run directory; the others learn its path
        rd = RunDir.create(recipe.name, out)
        rd.start(recipe, f"liandan train {rd / RECIPE}", data.info.to_dict())
        if (tokenizer := getattr(data.source, "tokenizer", None)) is not None:  # generate/evaluate reload it
            tokenizer.save(rd.file(data.info.tokenizer or TOKENIZER, "tokenizer"))
        run_dir = rd.path
    run_dir = Path(dist.broadcast(str(run_dir)))
    seed_everything(recipe.seed)
    return fit(recipe, data, model, loss_fn, device, run_dir, None, callbacks, quiet)


def _as_dict(overrides: list[str] | dict | None) -> dict:
    from liandan.recipe import _split_override

    if isinstance(overrides, dict):
        return dict(overrides)
    return dict(_split_override(o) for o in overrides or [])


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None, quiet: bool = False,
           epochs: int | None = None) -> Run:
    """Continue ``run_dir`` from its newest complete checkpoint (bit-exact on CPU in fp32).

    A run that already completed its epochs is returned as it is, with one line saying so (as
    Lightning's ``fit`` from a checkpoint past ``max_epochs`` and HF's ``resume_from_checkpoint``
    past ``max_steps`` return without training); give ``epochs`` above its count to train on."""
    rd = RunDir(run_dir)
    if not rd.has(RECIPE):
        raise LiandanError(f"{run_dir} is not a run directory (no {RECIPE})")
    recipe = rd.recipe({"train.epochs": epochs} if epochs else None)
    done = rd.summary()
    if done.get("status") == "completed" and done.get("epochs", 0) >= recipe.train.epochs:
        _echo(quiet)(f"{rd.path} already completed ({done.get('epochs')} epochs, {done.get('steps')} steps); "
                     "nothing to resume")
        return Run.open(rd.path)
    denv = dist.init(pick_device(recipe.train.device).type)
    if denv.is_main:
        ck.clean_temp(rd.checkpoints)
    dist.barrier()
    path = ck.newest_checkpoint(rd.checkpoints)
    data, model, loss_name, loss_fn, device = prepare(recipe)
    if path is None:  # killed before its first checkpoint: start over in place
        seed_everything(recipe.seed)
        if denv.is_main:
            rd.remove(METRICS)
    return fit(recipe, data, model, loss_fn, device, rd.path, path, callbacks, quiet)


def fit(recipe: Recipe, data: DataModule, model: nn.Module, loss_fn, device, run_dir: Path,
        resume_path: Path | None, callbacks, quiet: bool) -> Run:
    """Train a model that is already built (``train`` and ``resume`` build theirs; compression
    retrains its pruned one) in ``run_dir``, resuming from ``resume_path`` when given."""
    denv = dist.env()
    echo = _echo(quiet or not denv.is_main)
    data.train.shard(denv.rank, denv.world)
    model = set_memory_format(model, recipe.train.channels_last, data.info, device)
    threads_before = torch.get_num_threads()
    threads = recipe.train.threads or default_threads(model)
    torch.set_num_threads(threads)
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True)
    # The recipe's named callbacks, the caller's, the doctor's; the trainer adds its defaults around them.
    cbs = [*recipe_callbacks(recipe), *(callbacks or [])]
    if recipe.doctor.enabled and denv.is_main and "doctor" not in {c.name for c in recipe.train.callbacks}:
        cbs.append(build_callback("doctor", {}, recipe))  # the doctor pillar's, from the CALLBACKS registry
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
    rd = RunDir(run_dir)
    weights = "last"
    es = recipe.train.early_stopping
    best = rd.checkpoints / "best.safetensors"
    if es and es.restore_best and best.exists() and status in ("completed", "stopped_early"):
        ck.load_weights(model, best)
        weights = "best"
    final = {}
    finished = status in ("completed", "stopped_early")
    if finished:
        for split in ("train", "val", "test"):
            if getattr(data, split) is not None and split in recipe.train.final_eval:
                final[split] = evaluate(model, data.eval_batches(split), loss_fn, data.info, device, task=trainer.task)
        if denv.is_main:
            save_final(rd, model, adapter=recipe.adapter is not None)
            if hasattr(model, "save_pretrained") and (plain := _plain(model, recipe)) is not None:
                plain.save_pretrained(rd / HF)  # Hugging Face models: RUN/hf/ for PEFT, TRL, ONNX
                if hasattr(tokenizer := getattr(data.source, "tokenizer", None), "to_hf"):
                    tokenizer.to_hf().save_pretrained(str(rd / HF))
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    st = trainer.state
    extra = {"weights": "final" if finished else weights, "device": str(device), "threads": threads,
             "params": n_params, "trainable_params": n_trainable, "world_size": denv.world,
             "effective_batch_size": recipe.data.batch_size * recipe.train.accumulate * denv.world,
             "lr_scaling": "none: the recipe's lr is used as is for the effective batch size",
             **utilisation(flops, st.samples, st.wall_s, peak_flops(device, threads) if flops else None)}
    summary = write_summary(trainer, final, extra) if denv.is_main else {"status": status, "final": final, **extra}
    dist.shutdown()
    torch.set_num_threads(threads_before)  # after the final evaluation, which ran on the run's threads
    if denv.is_main:  # the pillars' post-run work (the report), registered as RUN_HOOKS
        for hook in RUN_HOOKS.entries():
            try:
                hook.fn(run_dir, recipe, summary, echo)
            except Exception as e:  # noqa: BLE001 (a report must never fail a finished run)
                echo(f"{hook.name} skipped: {type(e).__name__}: {e}")
    key = trainer.task.headline_metric
    if key in final.get("test", {}):  # tasks without accuracy/r2 (gan, diffusion, lm) report their loss
        echo(f"{status}: test {key} {final['test'][key]:.4f}  ({run_dir})")
    elif status != "completed":
        echo(f"{status}: {trainer.stop_reason}  ({run_dir})")
    if denv.is_main:  # post-run work (the doctor's auto-repair): the run's files are final by now
        for cb in trainer.callbacks:
            if cb.implements("on_run_end"):
                cb.on_run_end(trainer, summary)
    return Run(run_dir, recipe, summary, data.info, model, data)


def _plain(model: nn.Module, recipe: Recipe) -> nn.Module | None:
    """The model as its architecture's own class: adapters merged into a copy (RUN/hf/ loads
    anywhere); None for prompt and prefix adapters, whose virtual tokens no plain model holds
    (their run keeps them in adapter.safetensors)."""
    if recipe.adapter is None:
        return model
    from liandan.adapters import merged_copy, model_adapters

    return None if model_adapters(model) else merged_copy(model)
