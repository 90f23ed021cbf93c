"""Builders that turn recipe sections into objects: model, loss, device, threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from liandan.data.pipeline import DataInfo
from liandan.errors import LiandanError
from liandan.losses import LossFn, default_loss
from liandan.recipe import LossConfig, ModelConfig


def build_model(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    """The recipe's model: :func:`liandan.api_models.create_model` with the options the data
    implies, then the recipe's weight init and reparametrisation. A classifier's ``num_classes``
    below the data's classes is refused (labels past the head would index out of range)."""
    from liandan.api_models import create_model
    from liandan.models._init import init_weights
    from liandan.registry import MODELS
    from liandan.training.tasks import task_class

    if task_class(info.task).is_classification:
        n = MODELS.get(cfg.name).validate(cfg.options, where="model").get("num_classes")
        if n is not None and n < info.num_classes:
            raise LiandanError(f"model.num_classes={n} but the data has {info.num_classes} classes "
                               f"(labels up to {info.num_classes - 1}); drop the option to infer it")
    model = create_model(cfg.name, info, **cfg.options)
    init_weights(model, cfg.init, std=cfg.init_std, value=cfg.init_value)
    if cfg.reparam != "none":
        from liandan.models._wrappers import apply_weight_norm

        apply_weight_norm(model, cfg.reparam)
    return model


def build_loss(cfg: LossConfig, task_name: str) -> tuple[str, LossFn]:
    from liandan.registry import LOSSES

    name = cfg.name or default_loss(task_name)
    if name is None:
        return "", None
    entry = LOSSES.get(name)
    serves = entry.extra.get("tasks", ("classify", "regress"))  # the tasks a loss declares it serves
    if task_name not in serves and not _output_kinds(task_name) & set(serves):
        raise LiandanError(f"loss {name!r} is for {'/'.join(serves)} tasks but the data is a {task_name} task")
    return name, entry.fn(**entry.validate(cfg.options, where="loss"))


def _output_kinds(task_name: str) -> set[str]:
    """The built-in tasks whose output contract a task shares (class logits against integer labels:
    classify's; standardised values: regress's), so a loss serving those serves it too (text_classify)."""
    from liandan.registry import TASKS

    cls = TASKS.get(task_name).fn
    return {k for k, on in (("classify", cls.is_classification), ("regress", cls.is_regression)) if on}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise LiandanError(f"train.device: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LiandanError("train.device: cuda requested but no CUDA GPU is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LiandanError("train.device: mps requested but not available")
    return dev


@contextlib.contextmanager
def torch_threads(n: int | None = None, model: nn.Module | None = None) -> Iterator[int]:
    """Run the block on ``n`` intra-op threads (or the trainer's choice for ``model``, see
    :func:`default_threads`) and restore the process's previous count afterwards, error or not.
    The one place liandan changes torch's thread count outside a training run."""
    before = torch.get_num_threads()
    n = n or (default_threads(model) if model is not None else before)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def default_threads(model: nn.Module) -> int:
    """Small models run faster on one thread: the per-op threading overhead outweighs the
    parallel work (bench/threads.py measures the crossover on this machine)."""
    n = sum(p.numel() for p in model.parameters())
    return 1 if n < 2_000_000 else torch.get_num_threads()


def set_memory_format(model: nn.Module, channels_last: bool | None, info: DataInfo, device: torch.device) -> nn.Module:
    """NHWC (channels-last) weights for a convolutional image model when asked, or by default on a
    CPU: oneDNN's NHWC convolution kernels skip the layout reorders of NCHW (LeNet-5 trains about
    a third faster on one thread; bench/trainer_overhead.py). Inputs may stay NCHW: the first
    convolution converts them."""
    if channels_last is None:
        channels_last = device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last and len(info.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


_PLAIN = (int, float, str, bool, type(None))


def user_model_section(model: nn.Module) -> tuple[dict, bool]:
    """The recipe's model section for a user's module instance, and whether it rebuilds the module.

    The class path ``package.module:ClassName`` with ``trust: true`` (the user handed the code in)
    and the constructor arguments found on the instance: its ``hparams`` mapping if it has one,
    else attributes named as the constructor's parameters (plain values only). It rebuilds when the
    class imports by that path (not ``__main__``, not local to a function), every required argument
    was found, and a copy built from them (on the meta device: no memory, no RNG) has the instance's
    parameter and buffer shapes; otherwise the run's weights load only through
    ``load_run(dir, model=...)``."""
    import inspect

    cls = type(model)
    path = f"{cls.__module__}:{cls.__qualname__}"
    section: dict = {"name": path, "trust": True}
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return section, False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = {n: p for n, p in params.items() if p.kind in kinds}
    hp = getattr(model, "hparams", None)
    source = dict(hp) if isinstance(hp, dict) else {n: getattr(model, n) for n in params if hasattr(model, n)}
    plain = lambda v: isinstance(v, _PLAIN) or (isinstance(v, list | tuple) and all(map(plain, v)))  # noqa: E731
    for n, v in source.items():
        if n in params and n not in ModelConfig.model_fields and plain(v):
            section[n] = list(v) if isinstance(v, tuple) else v
    kwargs = {k: v for k, v in section.items() if k not in ("name", "trust")}
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__ or any(
            p.default is p.empty and n not in kwargs for n, p in params.items()):
        return section, False
    try:
        with torch.device("meta"):
            copy = cls(**kwargs)
    except Exception:  # noqa: BLE001 (any failure: not rebuildable from the recipe)
        return section, False
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    return section, shapes(copy) == shapes(model)
