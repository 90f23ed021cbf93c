"""Registry-driven tests of the sequence and mixture-of-experts models (the zoo tests cover images).

Every model registered with ``input_kind`` ``"sequence"`` or ``"any"`` is built as the trainer
builds it, run forward and backward as a classifier and as a regressor, trained a few steps on a
fixed batch, and round-tripped through its state_dict (and safetensors).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from liandan.models.moe import MoE
from liandan.registry import MODELS, Entry

SEQ = [e for e in MODELS.entries() if e.extra.get("input_kind") in ("sequence", "any")]
SAMPLE = (12, 3)  # (T, F)


def build(entry: Entry, sample: tuple[int, ...] = SAMPLE, num_classes: int = 4, **opts: object) -> nn.Module:
    declared = entry.options()
    inferred = {"num_classes": num_classes, "in_channels": sample[0], "input_shape": tuple(sample)}
    kw = {k: v for k, v in inferred.items() if k in declared}
    kw.update(opts)
    return entry.fn(**kw)


def test_the_family_is_registered() -> None:
    names = {e.name for e in SEQ}
    assert {"rnn", "lstm", "gru", "peephole_lstm", "transformer", "moe_mlp"} <= names
    for e in [*SEQ, MODELS.get("vit")]:
        assert e.description and e.extra.get("paper"), e.name


@pytest.mark.parametrize("entry", SEQ, ids=[e.name for e in SEQ])
@pytest.mark.parametrize("task", ["classify", "regress"])
def test_forward_backward_and_steps_lower_the_loss(entry: Entry, task: str) -> None:
    torch.manual_seed(0)
    k = 4 if task == "classify" else 2
    model = build(entry, num_classes=k).train()
    x = torch.randn(16, *SAMPLE)
    y = torch.randint(0, k, (16,)) if task == "classify" else torch.randn(16, k)
    loss_fn = F.cross_entropy if task == "classify" else F.mse_loss
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        torch.manual_seed(1)  # same dropout masks every step
        out = model(x)
        assert out.shape == (16, k), f"{entry.name}: output {tuple(out.shape)}"
        loss = loss_fn(out, y)
        aux = getattr(model, "aux_loss", None)
        losses.append(loss.item())
        opt.zero_grad()
        (loss + aux if aux is not None else loss).backward()
        if step == 0:
            experts = {id(p) for m in model.modules() if isinstance(m, MoE) for p in m.experts.parameters()}
            # an expert that no token chose this batch has no gradient; everything else must
            missing = [n for n, p in model.named_parameters() if p.grad is None and id(p) not in experts]
            assert not missing, f"{entry.name}: no gradient reaches {missing[:3]}"
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    assert losses[-1] < losses[0], f"{entry.name}: loss did not go down on a fixed batch: {losses}"


@pytest.mark.parametrize("entry", SEQ, ids=[e.name for e in SEQ])
def test_state_dict_round_trip(entry: Entry, tmp_path) -> None:
    torch.manual_seed(0)
    a = build(entry)
    a(torch.randn(4, *SAMPLE)).sum().backward()  # a training forward leaves side channels (MoE aux loss)
    copy.deepcopy(a)  # ... which must not break deepcopy
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(path))
    torch.manual_seed(1)
    b = build(entry)
    b.load_state_dict(load_file(str(path)))
    x = torch.randn(5, *SAMPLE)
    torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "peephole_lstm"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(2, False), (2, True)])
def test_recurrent_layers_and_directions(name: str, layers: int, bidirectional: bool) -> None:
    m = build(MODELS.get(name), layers=layers, bidirectional=bidirectional, dropout=0.2)
    assert m.head.in_features == 64 * (2 if bidirectional else 1)
    out = m(torch.randn(3, *SAMPLE))
    assert out.shape == (3, 4)


def test_recurrent_reads_the_final_state_of_both_directions() -> None:
    torch.manual_seed(0)
    m = build(MODELS.get("lstm"), bidirectional=True, hidden=8).eval()
    x = torch.randn(2, *SAMPLE)
    out, _ = m.rnn(x)  # (B, T, 2H)
    feat = torch.cat([out[:, -1, :8], out[:, 0, 8:]], 1)  # forward's last step, backward's step 0
    torch.testing.assert_close(m(x), m.head(feat))


@pytest.mark.parametrize("shape", [(12,), (1, 8, 8), (3, 4, 5)])
def test_sequence_models_read_series_and_images_row_by_row(shape: tuple[int, ...]) -> None:
    for name in ("lstm", "peephole_lstm", "transformer"):
        m = build(MODELS.get(name), sample=shape)
        assert m(torch.randn(2, *shape)).shape == (2, 4), (name, shape)


@pytest.mark.parametrize("opts", [{"pool": "mean"}, {"moe_experts": 4, "moe_top_k": 2}])
def test_transformer_options(opts: dict) -> None:
    m = build(MODELS.get("transformer"), **opts)
    assert m(torch.randn(2, *SAMPLE)).shape == (2, 4)
    if "moe_experts" in opts:
        assert m.aux_loss is not None and m.expert_counts.shape == (2, 4)
    else:
        assert m.aux_loss is None and m.cls_token is None


@pytest.mark.parametrize("entry", [*SEQ, MODELS.get("vit")], ids=[*(e.name for e in SEQ), "vit"])
def test_bf16_autocast(entry: Entry) -> None:
    """train.precision=bf16 on CPU: recurrences stay fp32 (oneDNN has no bf16 LSTM), MoE mixes dtypes."""
    sample = (1, 8, 8) if entry.name == "vit" else SAMPLE
    model = build(entry, sample=sample, moe_experts=2) if "moe_experts" in entry.options() else build(entry, sample)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, *sample))
        aux = getattr(model, "aux_loss", None)
    (out.float().square().mean() + (aux if aux is not None else 0)).backward()
    assert out.shape == (4, 4) and torch.isfinite(out.float()).all()
