"""Synthetic sequence problems, features ``(N, T, F)``: forecasting a noisy sum of sines, and
the adding problem.

The pipeline standardises ``(N, T, F)`` features per feature ``F`` (statistics over samples and
time steps of the training split), so a series keeps its shape over time.
"""

from __future__ import annotations

import math

import numpy as np

from liandan.data.base import Source, regression
from liandan.errors import LiandanError
from liandan.registry import register_data

ADDING_MIN_LENGTH = 50


@register_data("sine", tags=("sequence", "synthetic"))
def sine(
    n: int = 2000,
    length: int = 50,
    horizon: int = 1,
    step: float = 0.1,
    noise: float = 0.05,
    freqs: list[float] = [1.0, 2.3, 3.7],  # noqa: B006 (read-only default, shown in help)
    amplitudes: list[float] = [1.0, 0.6, 0.3],  # noqa: B006
    seed: int = 0,
) -> Source:
    """Forecast a noisy sum of sines: a window of ``length`` values -> the next ``horizon`` values.

    Sample ``i`` observes ``s_i(t) = Σ_k a_k sin(ω_k t + φ_ik) + ε`` at ``t = 0, step, 2·step, …``
    with its own random phases ``φ_ik`` and Gaussian noise ``ε ~ N(0, noise²)``, so a model must
    infer the phases from the window and extrapolate. Targets are the (noisy) observations
    ``t = length·step, …, (length + horizon − 1)·step``: the best possible MSE is ``noise²``.

    Args:
        n: number of windows, each with its own random phases
        length: observed time steps per window (the input)
        horizon: future values to predict (the target)
        step: time between two observations, in the units of 1/ω
        noise: std of the Gaussian observation noise; the best possible MSE is noise²
        freqs: angular frequencies ω_k of the summed sines
        amplitudes: amplitude a_k of each sine, one per frequency
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    if length < 1 or horizon < 1 or n < 3 or step <= 0:
        raise LiandanError("data.sine: length, horizon must be ≥ 1, n ≥ 3 and step > 0")
    if len(freqs) != len(amplitudes) or not freqs:
        raise LiandanError(f"data.sine: {len(freqs)} freqs but {len(amplitudes)} amplitudes")
    rng = np.random.default_rng(seed)
    t = np.arange(length + horizon) * step  # (T + H,)
    w, a = np.asarray(freqs), np.asarray(amplitudes)
    phase = rng.uniform(0.0, 2 * math.pi, (n, len(w)))  # (N, K)
    clean = (a * np.sin(t[None, :, None] * w + phase[:, None, :])).sum(-1)  # (N, T + H)
    series = (clean + rng.normal(0.0, noise, clean.shape)).astype(np.float32)
    x = series[:, :length, None]  # (N, T, 1)
    y = series[:, length:]  # (N, H)
    return regression(x, y, feature_names=["value"])


@register_data("adding", tags=("sequence", "synthetic"))
def adding(n: int = 10000, length: int = 50, seed: int = 0) -> Source:
    """Adding problem (Hochreiter & Schmidhuber 1997): the sum of the two marked values of a long sequence.

    Each step has two channels: a value ``~ U(0, 1)`` and a marker that is 1 at exactly two steps,
    one in the first half and one in the second (the variant of Le et al. 2015 and Arjovsky et
    al. 2016). The target is the sum of the two marked values, in [0, 2]; predicting its mean 1.0
    scores MSE 1/6 ≈ 0.167, and the paper counts a prediction as correct within 0.04 (≈ 7.8 %
    of targets by chance). The first marker must be remembered for over ``length / 2`` steps.

    Args:
        n: number of sequences
        length: time steps per sequence (≥ 50); the first marker must be remembered for about length / 2
        seed: random seed of the generated data (the same seed gives the same samples)
    """
    if length < ADDING_MIN_LENGTH:
        raise LiandanError(f"data.adding: length={length} is too short to test long-range memory; "
                           f"use length ≥ {ADDING_MIN_LENGTH}")
    if n < 3:
        raise LiandanError("data.adding: n must be ≥ 3")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (n, length))  # (N, T)
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    marker = np.zeros((n, length))
    rows = np.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = np.stack([values, marker], -1).astype(np.float32)  # (N, T, 2)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]  # (N, 1)
    return regression(x, y, feature_names=["value", "marker"])
