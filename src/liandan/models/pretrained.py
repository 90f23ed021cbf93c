"""Transfer learning for the vision zoo: torchvision/timm weights in, a frozen backbone out.

Not a model family (it registers nothing; :mod:`liandan.models` imports it like any module, which
is harmless). Three public functions:

- :func:`load_pretrained` puts a state dict saved under torchvision's (or timm's) key names into a
  zoo model. The zoo mirrors torchvision's modules, so most names are already equal; the explicit
  per-family renames below cover the rest. Every unknown key, missing key and shape mismatch is
  collected and raised as ONE :class:`LiandanError`. When the class count differs, the head is
  not loaded: the model keeps (or gets) a new head initialised as the zoo initialises it.
- :func:`freeze` stops gradients to ``"backbone"`` (everything but the head), to nothing
  (``"none"``) or to the parameters matching glob patterns, and returns how many parameters
  still train; :func:`unfreeze` undoes it.
- :func:`read_state_dict` reads ``.safetensors`` or ``.pth``/``.pt``/``.bin``/``.ckpt`` files, the
  latter with ``torch.load(weights_only=True)`` only: a file holding pickled objects is refused,
  never unpickled.

Key layouts (``tests/models/fixtures/torchvision_*.json`` hold torchvision's exact lists):

- ResNet-18/34/50: torchvision's names and timm's are the zoo's (``conv1``, ``bn1``,
  ``layerN.M.{conv,bn}K``, ``layerN.M.downsample.{0,1}``, ``fc``): no renaming.
- VGG-11/16/16-BN: torchvision's ``features.N`` / ``classifier.{0,3,6}``: no renaming. (timm's VGG
  has a convolutional ``pre_logits`` and ``head.fc``: not supported.)
- MobileNetV2: torchvision calls each inverted residual's sequence ``conv`` and leaves its
  projection as a bare ``Conv2d`` + ``BatchNorm2d``; the zoo calls it ``block`` and groups the
  projection into one conv-norm unit. ``features.i.conv.j.*`` → ``features.i.block.j.*``, and
  the projection's ``conv.{L}`` / ``conv.{L+1}`` → ``block.{L}.0`` / ``block.{L}.1``.
"""

from __future__ import annotations

import fnmatch
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from liandan.errors import LiandanError
from liandan.models._vision import init_vision
from liandan.models.mobilenet import InvertedResidual, MobileNetV1, MobileNetV2, MobileNetV3
from liandan.models.resnet import ResNet
from liandan.models.vgg import VGG

__all__ = ["PretrainedReport", "freeze", "head_name", "load_pretrained", "read_state_dict", "trainable", "unfreeze"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SHOWN = 3  # entries of each kind an error names before "… N more"

# ---------------------------------------------------------------- families


def _same(key: str, model: nn.Module) -> str:
    return key


_MNV2_BLOCK = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(.+)")


def _mobilenet_v2(key: str, model: nn.Module) -> str:
    """torchvision's ``features.i.conv.j.*`` → the zoo's ``features.i.block.*`` (see the module doc)."""
    m = _MNV2_BLOCK.fullmatch(key)
    if m is None:
        return key  # the stem, the last conv, the classifier (and zoo-named keys) are already equal
    i, j, rest = int(m[1]), int(m[2]), m[3]
    features = model.features
    if not (i < len(features) and isinstance(features[i], InvertedResidual)):
        return key  # not a block here: reported as an unknown key
    last = len(features[i].block) - 1  # the projection: one conv-norm unit in the zoo, two modules there
    if j < last:
        return f"features.{i}.block.{j}.{rest}"
    if j in (last, last + 1):
        return f"features.{i}.block.{last}.{j - last}.{rest}"
    return key


@dataclass(frozen=True)
class _Family:
    cls: type[nn.Module]  # the zoo class the arch builds
    rename: Callable[[str, nn.Module], str]  # source key → zoo key
    linear_std: float | None  # how the zoo initialises a new head (init_vision; None: PyTorch's default)


_RESNET = _Family(ResNet, _same, None)
_VGG = _Family(VGG, _same, 0.01)
ARCHS: dict[str, _Family] = {
    "resnet18": _RESNET, "resnet34": _RESNET, "resnet50": _RESNET,
    "vgg11": _VGG, "vgg16": _VGG, "vgg16_bn": _VGG,
    "mobilenet_v2": _Family(MobileNetV2, _mobilenet_v2, 0.01),
}

# The classifier's last Linear per zoo class; other models: their last Linear.
_HEADS: dict[type[nn.Module], str] = {
    ResNet: "fc", VGG: "classifier.6", MobileNetV1: "fc", MobileNetV2: "classifier.1", MobileNetV3: "classifier.3",
}


def head_name(model: nn.Module) -> str:
    """The module name of ``model``'s classification head (a ``Linear``): ``fc`` for ResNet, the
    classifier's last Linear for VGG (``classifier.6``) and MobileNet (``classifier.1`` for V2)."""
    name = _HEADS.get(type(model))
    if name is None:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise LiandanError(f"cannot find a classification head (no Linear layer) in {type(model).__name__}")
        name = linears[-1]
    if not isinstance(model.get_submodule(name), nn.Linear):
        raise LiandanError(f"the head {name!r} of {type(model).__name__} is not a Linear layer")
    return name


# ---------------------------------------------------------------- reading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from ``.safetensors`` or a ``torch.save``'d state dict (``weights_only=True``).

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
    a DDP ``module.`` prefix is removed. A pickle holding anything but tensors and plain containers
    is refused without being unpickled."""
    from liandan.paths import check_path, checked_file, open_checked

    path = Path(path)
    check_path(path, "weights")
    if not path.is_file():
        raise LiandanError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            with checked_file(path, "weights") as name:
                obj: object = load_file(name)
        elif path.suffix in PICKLE_SUFFIXES:
            with open_checked(path, "rb", "weights") as f:
                obj = torch.load(f, map_location="cpu", weights_only=True)
        else:
            raise LiandanError(f"weights {path}: expected .safetensors or {'/'.join(PICKLE_SUFFIXES)}")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+?) was not", str(e))
        what = f"a pickled {found[1]}" if found else "pickled objects besides tensors"
        raise LiandanError(
            f"refusing to load {path}: it holds {what}, and liandan reads .pth files with "
            "torch.load(weights_only=True) only (unpickling can run code); save a plain state_dict or .safetensors"
        ) from None
    except LiandanError:
        raise
    except Exception as e:  # corrupt or truncated files raise library-specific errors
        raise LiandanError(f"cannot read weights {path}: {type(e).__name__}: {e}") from None
    return _tensors(obj, str(path))


def _tensors(obj: object, what: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for wrap in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(wrap), Mapping):
                obj = obj[wrap]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise LiandanError(f"weights {what}: expected a state dict (names → tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise LiandanError(f"weights {what}: not a state dict; {len(bad)} entries are not tensors ({bad[:SHOWN]})")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):  # saved from a DistributedDataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# ---------------------------------------------------------------- loading


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did (``summary()``: one line for logs; ``asdict`` for JSON)."""

    arch: str
    source: str
    head: str  # the head's module name in the zoo model
    num_classes: int  # the head's outputs after loading
    loaded: int  # tensors copied into the model
    renamed: int  # of those, how many had a different name in the source
    head_replaced: bool  # a new head module was built (num_classes differed from the model's head)
    head_loaded: bool  # the head's weights came from the source (False: it is newly initialised)
    skipped: list[str] = field(default_factory=list)  # source keys not used (the head, classes differ)
    unknown: list[str] = field(default_factory=list)  # only with strict=False
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what loaded, what was skipped, whether the head is new."""
        parts = [f"{self.arch}: loaded {self.loaded} tensors from {self.source} ({self.renamed} renamed)"]
        if not self.head_loaded:
            why = f" (skipped {', '.join(self.skipped)}: another class count)" if self.skipped else ""
            parts.append(f"new {self.num_classes}-class head {self.head}{why}")
        for kind in ("unknown", "missing", "mismatched"):
            if getattr(self, kind):
                parts.append(_listing(kind, getattr(self, kind)))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """The report as plain JSON-able data."""
        return asdict(self)


def _listing(kind: str, items: Sequence[str]) -> str:
    more = f", … {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{len(items)} {kind} ({', '.join(items[:SHOWN])}{more})"


def load_pretrained(model: nn.Module, state_dict_or_file: Mapping[str, torch.Tensor] | str | Path, arch: str,
                    num_classes: int | None = None, strict: bool = True) -> PretrainedReport:
    """Load torchvision/timm-named weights into the zoo model ``model`` (built as ``arch``), in place.

    Args:
        model: a zoo model built by ``arch``'s builder (ImageNet stem: ``small_input=False``, batch norm).
        state_dict_or_file: a state dict, or a ``.safetensors`` / ``.pth`` file holding one.
        arch: the zoo's name: resnet18, resnet34, resnet50, vgg11, vgg16, vgg16_bn or mobilenet_v2.
        num_classes: the classes to predict; None: the model's head as built. When it differs from the
            model's head, the head is replaced by a new Linear initialised as the zoo does; when it differs
            from the weights' head, their head is skipped (named in the report).
        strict: True: unknown keys, missing keys and shape mismatches raise one LiandanError listing
            them all; False: whatever fits is loaded and the rest is listed in the report.

    Returns:
        a :class:`PretrainedReport`. Missing ``num_batches_tracked`` buffers (older torchvision files)
        are not errors: they keep the model's value.
    """
    family = ARCHS.get(arch)
    if family is None:
        raise LiandanError(f"no torchvision/timm key mapping for {arch!r}; supported: {', '.join(ARCHS)}")
    if not isinstance(model, family.cls):
        raise LiandanError(f"model is a {type(model).__name__}, not the {family.cls.__name__} that {arch!r} builds")
    if isinstance(state_dict_or_file, (str, Path)):
        source, sd = str(state_dict_or_file), read_state_dict(state_dict_or_file)
    else:
        source, sd = "<state dict>", _tensors(state_dict_or_file, "<state dict>")

    head = head_name(model)
    old_head = model.get_submodule(head)
    if num_classes is not None and num_classes < 1:
        raise LiandanError(f"num_classes must be at least 1, got {num_classes}")
    classes = old_head.out_features if num_classes is None else num_classes
    target = {k: v.shape for k, v in model.state_dict().items()}  # as it will be, with the new head
    head_keys = {k for k in (f"{head}.weight", f"{head}.bias") if k in target}
    target[f"{head}.weight"] = torch.Size((classes, old_head.in_features))
    if f"{head}.bias" in target:
        target[f"{head}.bias"] = torch.Size((classes,))

    names = {key: family.rename(key, model) for key in sd}
    # The source's head is skipped (not an error) when only its class count differs: same input width.
    src_head = next((sd[k] for k, n in names.items() if n == f"{head}.weight"), None)
    other_classes = src_head is not None and src_head.shape[1:] == target[f"{head}.weight"][1:]
    mapped: dict[str, torch.Tensor] = {}
    unknown, mismatched, skipped, seen = [], [], [], set()
    for key, value in sd.items():
        name = names[key]
        if name not in target or name in seen:
            unknown.append(key)
        elif value.shape != target[name]:
            if name in head_keys and other_classes:
                skipped.append(key)
            else:
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target[name])}")
        else:
            mapped[name] = value
        seen.add(name)
    missing = [k for k in target if k not in seen and not k.endswith("num_batches_tracked") and k not in head_keys]

    if strict and (unknown or missing or mismatched):
        found = "; ".join(_listing(kind, items) for kind, items in (
            ("unknown keys", unknown), ("missing keys", missing), ("shape mismatches", mismatched)) if items)
        hint = (" (ImageNet weights need the model as torchvision builds it: small_input: false, in_channels: 3,"
                " the default norm and width)" if mismatched or missing else "")
        raise LiandanError(f"weights {source} do not fit {arch}: {found}{hint}")

    replaced = _ensure_head(model, head, classes, family.linear_std)
    with torch.no_grad():
        model.load_state_dict(mapped, strict=False)
    return PretrainedReport(
        arch=arch, source=source, head=head, num_classes=model.get_submodule(head).out_features,
        loaded=len(mapped), renamed=sum(names[k] != k for k in sd if names[k] in mapped),
        head_replaced=replaced, head_loaded=head_keys <= set(mapped), skipped=skipped,
        unknown=unknown, missing=missing, mismatched=mismatched,
    )


def _ensure_head(model: nn.Module, head: str, num_classes: int, linear_std: float | None) -> bool:
    """Replace the head by a new ``num_classes``-way Linear when it has another width; True if replaced."""
    old = model.get_submodule(head)
    if num_classes == old.out_features:
        return False
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    init_vision(new, linear_std=linear_std)  # as the zoo's builder would have
    parent, _, attr = head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return True


# ---------------------------------------------------------------- freezing


def _keep_eval(module: nn.Module, args: object) -> None:
    """Forward pre-hook: a frozen norm layer normalises with its stored statistics and never updates them."""
    module.training = False


def freeze(model: nn.Module, spec: str | Sequence[str], *, freeze_norm_stats: bool = True) -> int:
    """Stop training part of ``model``; returns the number of parameters (elements) that still train.

    Args:
        spec: ``"backbone"``: everything but the head (:func:`head_name`: ResNet ``fc``, VGG's last
            classifier Linear, MobileNet's classifier Linear); ``"none"``: everything trains; a list of
            glob patterns over parameter names (``"layer1.*"``; a module name such as ``"features.0"``
            covers its parameters): those are frozen, the rest trains. A pattern matching nothing is an error.
        freeze_norm_stats: batch-norm layers whose parameters are all frozen also stop updating their
            running statistics (they run as in eval mode even under ``model.train()``), as Keras does.

    The optimizer may hold every parameter: frozen ones get no gradient and are skipped, so a later
    :func:`unfreeze` needs no new optimizer.
    """
    _release_norms(model)
    names = [n for n, _ in model.named_parameters()]
    if spec == "none":
        frozen: set[str] = set()
    elif spec == "backbone":
        head = head_name(model)
        frozen = {n for n in names if not n.startswith(head + ".")}
    elif isinstance(spec, Sequence) and not isinstance(spec, str) and all(isinstance(p, str) for p in spec):
        frozen = set()
        for pattern in spec:
            hits = {n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, pattern + ".*")}
            if not hits:
                raise LiandanError(f"freeze pattern {pattern!r} matches no parameter (names look like "
                                   f"{', '.join(names[:SHOWN])}, …)")
            frozen |= hits
    else:
        raise LiandanError(f"freeze: expected 'backbone', 'none' or a list of name patterns, got {spec!r}")
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    if freeze_norm_stats and frozen:
        for m in model.modules():
            params = list(m.parameters(recurse=False))
            if isinstance(m, _BatchNorm) and params and not any(p.requires_grad for p in params):
                m.register_forward_pre_hook(_keep_eval)
    return trainable(model)


def unfreeze(model: nn.Module) -> int:
    """Make every parameter (and every norm layer's statistics) train again; returns the parameter count."""
    _release_norms(model)
    for p in model.parameters():
        p.requires_grad_(True)
    return trainable(model)


def trainable(model: nn.Module) -> int:
    """How many parameters (elements) of ``model`` require gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _release_norms(model: nn.Module) -> None:
    for m in model.modules():
        hooks = m._forward_pre_hooks
        for hid in [h for h, fn in hooks.items() if fn is _keep_eval]:
            del hooks[hid]
            m.training = model.training
