"""Registry-driven tests of the model zoo: every registered image model (including ones added
later) is built, run forward and backward, trained a few steps, and checked against its
reference parameter count and MACs when its registration lists them.

Entries whose input is not an image declare ``input_kind`` (e.g. ``"tokens"``) in their
registration and are skipped here; they get their own tests.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from liandan.registry import MODELS, Entry

IMAGE = [e for e in MODELS.entries() if e.extra.get("input_kind", "image") == "image"]
REF = [e for e in IMAGE if "ref_params" in e.extra]
SMALL = (3, 32, 32)


def build(entry: Entry, sample: tuple[int, ...], num_classes: int = 10, **opts: object) -> nn.Module:
    """Build like the trainer does: pass the data-inferred options the builder declares."""
    declared = entry.options()
    inferred = {"num_classes": num_classes, "in_channels": sample[0], "input_shape": tuple(sample)}
    kw = {k: v for k, v in inferred.items() if k in declared}
    kw.update({k: v for k, v in opts.items() if k in declared})
    return entry.fn(**kw)


def ids(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


@pytest.mark.parametrize("entry", IMAGE, ids=ids(IMAGE))
def test_forward_backward_and_sgd_lowers_loss(entry: Entry) -> None:
    torch.manual_seed(0)
    sample = tuple(entry.extra.get("small_input_shape", SMALL))
    model = build(entry, sample).train()
    x, y = torch.randn(2, *sample), torch.tensor([1, 7])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for step in range(4):
        torch.manual_seed(1)  # same dropout / stochastic-depth masks every step: a fair comparison
        out = model(x)
        assert out.shape == (2, 10), f"{entry.name}: output {tuple(out.shape)}"
        loss = F.cross_entropy(out, y)
        losses.append(loss.item())
        if step == 3:
            break
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, f"{entry.name}: no gradient reaches {missing[:3]}"
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        # Clipping makes the step size independent of each architecture's gradient scale
        # (plain SGD at lr 0.01 overshoots on ResNet-50 with batch-2 BatchNorm statistics).
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert losses[-1] < losses[0], f"{entry.name}: loss did not go down on a fixed batch: {losses}"


@pytest.mark.parametrize("entry", [e for e in IMAGE if "small_input" in e.options()],
                         ids=ids([e for e in IMAGE if "small_input" in e.options()]))
def test_small_input_is_auto_for_small_images(entry: Entry) -> None:
    def arch(sample: tuple[int, ...], small: bool | None) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):
            m = build(entry, sample, small_input=small)
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    # The zoo switches below 64 pixels; LeNet (a 32×32 network) below 28: 16×16 is small for both.
    assert arch((3, 16, 16), None) == arch((3, 16, 16), True)
    assert arch((3, 224, 224), None) == arch((3, 224, 224), False)
    # and 8×8 (sklearn digits) still runs end to end
    model = build(entry, (1, 8, 8)).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("entry", REF, ids=ids(REF))
def test_reference_parameters_and_macs(entry: Entry) -> None:
    """Parity with torchvision/timm at 1000 classes on the reference input (meta device: fast)."""
    sample = tuple(entry.extra["ref_input"])
    with torch.device("meta"):
        classes = entry.extra.get("ref_num_classes", 1000)
        model = build(entry, sample, num_classes=classes, small_input=False).eval()
        x = torch.zeros(1, *sample)
    assert sum(p.numel() for p in model.parameters()) == entry.extra["ref_params"]
    if "ref_gmacs" in entry.extra:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        gmacs = counter.get_total_flops() / 2 / 1e9
        assert gmacs == pytest.approx(entry.extra["ref_gmacs"], rel=0.02)
    if "ref_params_aux" in entry.extra:
        with torch.device("meta"):
            aux = build(entry, sample, num_classes=classes, small_input=False, aux_logits=True)
        assert sum(p.numel() for p in aux.parameters()) == entry.extra["ref_params_aux"]


def test_resnet34_macs_within_one_percent() -> None:
    from liandan.inspection import summary

    s = summary("resnet34", device="meta")
    assert s.input_shape == [1, 3, 224, 224]
    assert s.params == 21_797_672
    assert s.macs / 1e9 == pytest.approx(3.664, rel=0.01)


def test_every_vision_model_documents_itself() -> None:
    for e in IMAGE:
        assert e.description, f"{e.name}: first docstring line is the `liandan list models` text"
    for e in REF:
        assert e.extra.get("paper"), f"{e.name}: registration should cite the paper"


def test_googlenet_aux_heads_only_in_training() -> None:
    m = MODELS.get("googlenet").fn(num_classes=10, input_shape=SMALL, aux_logits=True)
    x = torch.randn(2, *SMALL)
    out = m.train()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert m.aux_outputs is not None and [a.shape for a in m.aux_outputs] == [(2, 10), (2, 10)]
    loss = F.cross_entropy(out, torch.tensor([0, 1])) + 0.3 * sum(
        F.cross_entropy(a, torch.tensor([0, 1])) for a in m.aux_outputs)
    loss.backward()
    assert m.aux1.fc2.weight.grad is not None
    import copy

    assert copy.deepcopy(m).aux_outputs is None  # the side channel does not break deepcopy
    m.eval()(x)
    assert m.aux_outputs is None


@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "group", "none"])
def test_norm_option(norm: str) -> None:
    m = MODELS.get("resnet18").fn(num_classes=10, input_shape=SMALL, norm=norm)
    kinds = {type(x).__name__ for x in m.modules()}
    expected = {"batch": "BatchNorm2d", "layer": "GroupNorm", "instance": "InstanceNorm2d",
                "group": "GroupNorm"}
    if norm == "none":
        assert not kinds & {"BatchNorm2d", "GroupNorm", "InstanceNorm2d"}
        assert m.conv1.bias is not None  # without a norm the conv needs its own bias
    else:
        assert expected[norm] in kinds and m.conv1.bias is None
    assert m(torch.randn(2, *SMALL)).shape == (2, 10)


def test_vgg16_bn_is_vgg16_with_batch_norm() -> None:
    with torch.device("meta"):
        a = MODELS.get("vgg16_bn").fn()
        b = MODELS.get("vgg16").fn(norm="batch")
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_in_channels_and_bad_input_shape() -> None:
    from liandan.errors import LiandanError

    m = MODELS.get("mobilenet_v2").fn(num_classes=5, in_channels=1, input_shape=(1, 28, 28))
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    with pytest.raises(LiandanError, match="image inputs"):
        MODELS.get("resnet18").fn(input_shape=(64,))


def test_vision_models_switch_to_small_stem_below_64_pixels() -> None:
    for name in ("resnet18", "densenet121", "mobilenet_v2", "alexnet"):
        e = MODELS.get(name)
        with torch.device("meta"):
            a, b = build(e, (3, 63, 63)), build(e, (3, 64, 64))
        first = lambda m: next(x for x in m.modules() if isinstance(x, nn.Conv2d))  # noqa: E731
        assert first(a).stride == (1, 1) and first(b).stride != (1, 1), name
