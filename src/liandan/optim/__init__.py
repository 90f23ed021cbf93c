"""Optimizers (registered; AdaBelief implemented here), LR schedules and the LR finder."""

from liandan.optim.optimizers import build_optimizer, param_groups
from liandan.optim.schedules import Schedule, build_schedule, current_lr

__all__ = ["Schedule", "build_optimizer", "build_schedule", "current_lr", "param_groups"]
