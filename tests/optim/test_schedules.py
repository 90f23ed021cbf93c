"""Schedules equal torch's own schedulers; warmup ramps linearly; every schedule is sane."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as S

from liandan.optim import build_schedule
from liandan.registry import SCHEDULES


def _opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_runs_and_stays_positive(name: str) -> None:
    opt = _opt()
    sched = build_schedule(opt, name, total_steps=50, warmup_steps=5, options={})
    lrs = []
    for _ in range(50):
        opt.step()
        sched.after_step()
        lrs.append(opt.param_groups[0]["lr"])
    sched.after_epoch(1.0)
    assert all(0 <= v <= 0.1 + 1e-12 for v in lrs)
    assert lrs[0] < lrs[1] < lrs[3]  # warmup ramps up linearly


@pytest.mark.parametrize(
    "name, options, reference",
    [
        ("step", {"step_size": 7, "gamma": 0.5}, lambda o: S.StepLR(o, 7, 0.5)),
        ("cosine", {}, lambda o: S.CosineAnnealingLR(o, 40)),
        ("linear", {"end_factor": 0.1}, lambda o: S.LinearLR(o, 1.0, 0.1, 40)),
        ("onecycle", {}, lambda o: S.OneCycleLR(o, 0.1, total_steps=40, cycle_momentum=False)),
    ],
)
def test_schedule_matches_torch(name, options, reference) -> None:
    a, b = _opt(), _opt()
    ours, ref = build_schedule(a, name, 40, 0, options), reference(b)
    for _ in range(39):
        assert abs(a.param_groups[0]["lr"] - b.param_groups[0]["lr"]) < 1e-9
        a.step()
        b.step()
        ours.after_step()
        ref.step()


def test_plateau_reduces_after_patience_and_state_round_trips() -> None:
    opt = _opt()
    s = build_schedule(opt, "reduce_on_plateau", 100, 0, {"patience": 1, "factor": 0.5})
    for v in (1.0, 1.0, 1.0):
        s.after_epoch(v)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    opt2 = _opt()
    s2 = build_schedule(opt2, "reduce_on_plateau", 100, 0, {"patience": 1, "factor": 0.5})
    s2.load_state_dict(s.state_dict())
    assert s2.plateau.num_bad_epochs == s.plateau.num_bad_epochs
