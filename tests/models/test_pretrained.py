"""Transfer learning (:mod:`liandan.models.pretrained`): torchvision-keyed weights into the zoo,
head replacement, freezing, and the file loader's refusal to unpickle objects.

The fixtures under ``fixtures/`` are torchvision's state_dict layouts (key, shape, dtype, in
order) for resnet18, vgg16 and mobilenet_v2, written from torchvision's model definitions; timm's
resnet18 uses the same keys. No weights are downloaded: the tests fill the layouts with random
values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liandan.errors import LiandanError
from liandan.models.pretrained import freeze, head_name, load_pretrained, read_state_dict, trainable, unfreeze
from liandan.registry import MODELS

FIXTURES = Path(__file__).parent / "fixtures"
ARCHS = ["resnet18", "vgg16", "mobilenet_v2"]
# vgg16's ImageNet layout is 138M parameters: its costly checks run in the slow tier (make test)
HEAVY = [pytest.param(a, marks=pytest.mark.slow) if a == "vgg16" else a for a in ARCHS]
TV_HEAD = {"resnet18": "fc", "vgg16": "classifier.6", "mobilenet_v2": "classifier.1"}  # torchvision's names
INPUT = {"resnet18": 64, "vgg16": 32, "mobilenet_v2": 64}  # small images through the ImageNet stem: fast


def layout(arch: str) -> list[tuple[str, tuple[int, ...], str]]:
    doc = json.loads((FIXTURES / f"torchvision_{arch}.json").read_text())
    return [(k, tuple(s), d) for k, s, d in doc["keys"]]


def random_state_dict(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in torchvision's layout, scaled so activations stay finite through the net."""
    g = torch.Generator().manual_seed(seed)
    keys = layout(arch)
    norms = {k.rsplit(".", 1)[0] for k, _, _ in keys if k.endswith(".running_mean")}
    sd = {}
    for k, shape, dtype in keys:
        module, leaf = k.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            sd[k] = torch.randint(0, 1000, (), generator=g, dtype=getattr(torch, dtype))
        elif module in norms:
            base = {"weight": 1.0, "running_var": 1.0}.get(leaf, 0.0)
            noise = torch.rand if leaf == "running_var" else torch.randn  # variances stay positive
            sd[k] = base + 0.1 * noise(shape, generator=g)
        elif leaf == "bias":
            sd[k] = 0.01 * torch.randn(shape, generator=g)
        else:
            sd[k] = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:]))
    return sd


def build(arch: str, num_classes: int = 1000, **opts: object) -> nn.Module:
    opts.setdefault("input_shape", (3, 224, 224))  # the ImageNet stem, as pretrained weights need
    return MODELS.get(arch).fn(num_classes=num_classes, **opts)


def set_by_position(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """The reference: pair the zoo's state dict with the source's by order (no names), shapes checked."""
    own = model.state_dict()
    assert len(own) == len(sd)
    paired = {}
    for (name, mine), (key, value) in zip(own.items(), sd.items(), strict=True):
        assert mine.shape == value.shape, (name, key)
        paired[name] = value
    model.load_state_dict(paired)


@pytest.mark.parametrize("arch", ARCHS)
def test_fixture_is_the_zoo_layout_one_to_one(arch: str) -> None:
    keys = layout(arch)
    doc = json.loads((FIXTURES / f"torchvision_{arch}.json").read_text())
    params = sum(math.prod(s) for k, s, _ in keys if not k.endswith(("running_mean", "running_var", "batches_tracked")))
    assert params == doc["num_params"] == MODELS.get(arch).extra["ref_params"]
    with torch.device("meta"):
        zoo = build(arch).state_dict()
    assert [(s, d) for _, s, d in keys] == [(tuple(v.shape), str(v.dtype).removeprefix("torch.")) for v in zoo.values()]
    renamed = [k for k, z in zip([k for k, _, _ in keys], zoo, strict=True) if k != z]
    if arch == "mobilenet_v2":  # torchvision's blocks are `conv`, the zoo's `block`: every block key differs
        assert renamed and all(".conv." in k for k in renamed)
    else:
        assert renamed == []


@pytest.mark.parametrize("arch", HEAVY)
def test_torchvision_weights_give_the_same_logits(arch: str) -> None:
    sd = random_state_dict(arch)
    torch.manual_seed(1)
    loaded = build(arch)
    report = load_pretrained(loaded, sd, arch)
    assert report.loaded == len(sd) and report.head_loaded and not report.skipped
    assert report.renamed == (300 if arch == "mobilenet_v2" else 0)
    reference = build(arch)
    set_by_position(reference, sd)
    x = torch.randn(2, 3, INPUT[arch], INPUT[arch])
    with torch.no_grad():
        a, b = loaded.eval()(x), reference.eval()(x)
    assert a.shape == (2, 1000) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _torchvision_resnet18(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet-18 forward (eval mode) written over its own key names."""
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            training=False, eps=1e-5)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for layer in range(1, 5):
        for b in range(2):
            p, s = f"layer{layer}.{b}", 2 if layer > 1 and b == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            short = x
            if f"{p}.downsample.0.weight" in sd:
                short = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1")
            x = F.relu(out + short)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


def test_resnet18_logits_are_torchvisions() -> None:
    """Independent of the zoo's own code: the loaded model computes torchvision's function."""
    sd = random_state_dict("resnet18", seed=3)
    model = build("resnet18")
    load_pretrained(model, sd, "resnet18")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), _torchvision_resnet18(sd, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", HEAVY)
@pytest.mark.parametrize("built_with", [1000, 5])
def test_head_is_new_when_the_class_count_differs(arch: str, built_with: int) -> None:
    sd = random_state_dict(arch)
    model = build(arch, built_with)
    head = head_name(model)
    report = load_pretrained(model, sd, arch, num_classes=5)
    assert model.get_submodule(head).out_features == 5 and report.num_classes == 5
    assert report.skipped == [f"{TV_HEAD[arch]}.weight", f"{TV_HEAD[arch]}.bias"]
    assert not report.head_loaded and report.head_replaced == (built_with == 1000)
    assert "new 5-class head" in report.summary()
    own = model.state_dict()
    by_position = dict(zip(own, sd.values(), strict=True))
    for name, value in own.items():
        if not name.startswith(head + "."):
            assert torch.equal(value, by_position[name]), name  # the backbone is the source's
    new = model.get_submodule(head)
    if arch == "resnet18":  # the zoo keeps PyTorch's Linear default there: U(±1/√fan_in)
        assert new.weight.abs().max() <= 1 / math.sqrt(new.in_features)
    else:  # N(0, 0.01), zero bias, as init_vision
        assert new.weight.std().item() == pytest.approx(0.01, rel=0.2) and not new.bias.any()
    assert model.eval()(torch.randn(1, 3, INPUT[arch], INPUT[arch])).shape == (1, 5)


def test_weights_without_a_head_load_the_backbone() -> None:
    """A headless export (timm's ``num_classes=0``, a feature extractor) fits: the head stays new."""
    sd = random_state_dict("resnet18")
    del sd["fc.weight"], sd["fc.bias"]
    model = build("resnet18", 5)
    report = load_pretrained(model, sd, "resnet18")
    assert report.loaded == len(sd) and not report.head_loaded and not report.skipped
    assert report.summary() == "resnet18: loaded 120 tensors from <state dict> (0 renamed); new 5-class head fc"


@pytest.mark.parametrize("arch", ARCHS)
def test_freeze_backbone_trains_the_head_only(arch: str) -> None:
    torch.manual_seed(0)
    opts = {"input_shape": (3, 32, 32), "small_input": arch == "vgg16"}  # CIFAR VGG: a 512-wide classifier
    model = build(arch, 5, **opts)
    head = model.get_submodule(head_name(model))
    total = trainable(model)
    n = freeze(model, "backbone")
    assert n == head.weight.numel() + head.bias.numel() == trainable(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # every parameter: frozen ones get no gradient
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"{head_name(model)}.weight", f"{head_name(model)}.bias"}  # BN statistics included
    assert unfreeze(model) == total
    model.train()(x)  # the norm layers (vgg16 has none) update their statistics again
    stats = [k for k in before if k.endswith("running_mean")]
    assert arch == "vgg16" or any(not torch.equal(model.state_dict()[k], before[k]) for k in stats)


def test_freeze_patterns_none_and_bad_specs() -> None:
    model = build("resnet18", 5, input_shape=(3, 32, 32))
    total = trainable(model)
    stem = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("conv1.", "bn1.", "layer1.")))
    assert freeze(model, ["conv1.*", "bn1", "layer1"]) == total - stem
    assert not model.conv1.weight.requires_grad and model.layer2[0].conv1.weight.requires_grad
    assert freeze(model, "none") == total
    with pytest.raises(LiandanError, match="'layer9.*' matches no parameter"):
        freeze(model, ["layer9.*"])
    with pytest.raises(LiandanError, match="expected 'backbone', 'none' or a list"):
        freeze(model, "head")


def test_one_error_lists_unknown_missing_and_mismatched_keys() -> None:
    sd = random_state_dict("resnet18")
    sd["extra.weight"] = torch.zeros(3)
    del sd["layer1.0.conv1.weight"]
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    model = build("resnet18")
    before = model.conv1.weight.clone()
    with pytest.raises(LiandanError) as e:
        load_pretrained(model, sd, "resnet18", num_classes=5)
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 unknown keys (extra.weight)" in msg and "1 missing keys (layer1.0.conv1.weight)" in msg
    assert "1 shape mismatches (layer2.0.conv1.weight: file (128, 64, 5, 5) vs model (128, 64, 3, 3))" in msg
    assert torch.equal(model.conv1.weight, before) and model.fc.out_features == 1000  # nothing changed
    report = load_pretrained(model, sd, "resnet18", strict=False)
    assert report.unknown == ["extra.weight"] and report.missing == ["layer1.0.conv1.weight"]
    assert torch.equal(model.conv1.weight, sd["conv1.weight"])


def test_small_input_model_gets_a_hint_and_counts() -> None:
    model = build("mobilenet_v2", 1000, input_shape=(3, 32, 32))  # the stride-1 CIFAR stem: still fits
    load_pretrained(model, random_state_dict("mobilenet_v2"), "mobilenet_v2")
    model = build("vgg16", 10, input_shape=(3, 32, 32))  # CIFAR VGG: a 512-wide classifier
    zeros = {k: torch.zeros(s, dtype=getattr(torch, d)) for k, s, d in layout("vgg16")}
    listing = r"do not fit vgg16: 6 shape mismatches \(classifier.0.weight: .*, … 3 more\) \(.*small_input: false"
    with pytest.raises(LiandanError, match=listing):
        load_pretrained(model, zeros, "vgg16")
    with pytest.raises(LiandanError, match="no torchvision/timm key mapping for 'densenet121'"):
        load_pretrained(model, {}, "densenet121")
    with pytest.raises(LiandanError, match="not the ResNet that 'resnet18' builds"):
        load_pretrained(model, {}, "resnet18")


def test_pth_and_safetensors_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    sd = random_state_dict("resnet18")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ckpt.pth")
    save_file(sd, str(tmp_path / "w.safetensors"))
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    for name in ("ckpt.pth", "w.safetensors"):
        model = build("resnet18", 5)
        report = load_pretrained(model, tmp_path / name, "resnet18")
        assert report.source.endswith(name) and report.loaded == len(sd) - 2
        assert torch.equal(model.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])
    assert [c.get("weights_only") for c in calls] == [True]
    with pytest.raises(LiandanError, match="weights file not found"):
        read_state_dict(tmp_path / "absent.pth")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(LiandanError, match="expected .safetensors"):
        read_state_dict(tmp_path / "w.npz")


def _mark(path: str) -> None:  # what a malicious pickle would run on load
    Path(path).write_text("ran")


class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _mark, (self.path,)


def test_a_pickled_object_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(LiandanError, match=r"refusing to load .*evil.pth: it holds a pickled .*_mark"):
        load_pretrained(build("resnet18"), tmp_path / "evil.pth", "resnet18")
    assert not marker.exists()
    torch.save({"epoch": 1}, tmp_path / "meta.pt")
    with pytest.raises(LiandanError, match="not a state dict; 1 entries are not tensors"):
        read_state_dict(tmp_path / "meta.pt")
