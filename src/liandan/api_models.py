"""``liandan.create_model``: the one way a registered model is built by name, as ``timm.create_model``.

Training (:func:`liandan.training.setup.build_model`, which adds the recipe's init and
reparametrisation), ``liandan summary`` / ``graph`` (:mod:`liandan.inspection`) and users all
build through :func:`create_model`, so the options the data implies are filled in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from liandan.errors import LiandanError

if TYPE_CHECKING:
    from liandan.data.pipeline import DataInfo


def data_options(data_info: DataInfo | Mapping[str, Any] | None) -> dict[str, Any]:
    """The model options a data set implies (``registry.INFERRED``): from a ``DataInfo``
    ``num_classes``, ``in_channels``, ``input_shape`` and ``task`` (plus ``vocab_size`` and
    ``max_len`` for token data); a mapping is taken as those facts, ``in_channels`` following
    from ``input_shape`` (one sample, no batch) when it is not given."""
    if data_info is None:
        return {}
    if isinstance(data_info, Mapping):
        facts = dict(data_info)
        shape = facts.get("input_shape")
        if shape is not None:
            facts["input_shape"] = shape = tuple(shape)
            if shape and "in_channels" not in facts:
                facts["in_channels"] = shape[0]
        return facts
    info = data_info
    facts = {"num_classes": info.num_classes, "in_channels": info.input_shape[0],
             "input_shape": tuple(info.input_shape), "task": info.task}
    if info.vocab_size:  # token data: the vocabulary and context length come from the tokenizer/source
        facts.update(vocab_size=info.vocab_size, max_len=info.max_len)
    return facts


def create_model(name: str, data_info: DataInfo | Mapping[str, Any] | None = None, /, **options: Any) -> nn.Module:
    """Build registered model ``name`` with ``options`` (validated against its signature).

    With ``data_info`` (a ``DataInfo``, or a mapping such as ``{"input_shape": (3, 32, 32)}``),
    the options it implies (:func:`data_options`) are filled in where the builder declares them
    and ``options`` leave them out (training also refuses a classifier head smaller than the
    data's classes: :func:`liandan.training.setup.build_model`).
    ``liandan.create_model("resnet18", num_classes=5)`` needs no data. A ``package.module:ClassName``
    name is user code, built once trusted (``liandan.registry.MODELS.allow(name)``; recipes:
    ``model.trust``)."""
    from liandan.registry import MODELS

    entry = MODELS.get(name)
    opts = entry.validate(options, where="model")
    params = entry.options()
    facts = data_options(data_info)
    for k, v in facts.items():
        if k in params and k not in opts:
            opts[k] = v
    missing = [k for k, p in params.items() if p.default is p.empty and k not in opts]
    if missing and ":" in name:  # user code: its constructor's own arguments
        raise LiandanError(f"model {name!r} needs constructor argument {missing[0]!r}: give it in the model section "
                           f"(a run trained on a module instance loads with load_run(dir, model=...))")
    if missing:  # e.g. num_classes, which training infers from the data
        raise LiandanError(f"model {name!r} needs option {missing[0]!r}: pass it, e.g. --set {missing[0]}=10")
    if data_info is None or isinstance(data_info, Mapping):
        return entry.fn(**opts)
    try:
        return entry.fn(**opts)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LiandanError(f"model {name!r} cannot take inputs of shape {tuple(data_info.input_shape)} "
                           f"from {data_info.source!r}: {msg}") from None


def list_models(pattern: str = "*", tag: str | None = None) -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (``"resnet*"``), as
    ``timm.list_models`` does; ``tag`` keeps those registered with that tag."""
    import fnmatch

    from liandan.registry import MODELS

    return [e.name for e in MODELS.entries()
            if fnmatch.fnmatch(e.name, pattern) and (tag is None or tag in e.tags)]
