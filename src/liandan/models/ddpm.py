"""DDPM (Ho, Jain & Abbeel 2020): a small U-Net that predicts the noise in x_t, with its noise schedule.

Forward process (Ho et al. eq. 4): x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, ε ~ N(0, I), ᾱ_t = ∏_{s≤t} (1 − β_s).
Training (their Algorithm 1, the "simple" loss): minimise ‖ε − ε_θ(x_t, t)‖² over uniform t.
Sampling (Algorithm 2, ancestral): from x_T ~ N(0, I) step down with the posterior
q(x_{t−1} | x_t, x̂_0), where x̂_0 = (x_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t is clipped to [−1, 1] as in the
authors' code; its mean is μ̃ = (√ᾱ_{t−1} β_t x̂_0 + √α_t (1−ᾱ_{t−1}) x_t) / (1−ᾱ_t) and its
variance β̃_t = β_t (1−ᾱ_{t−1}) / (1−ᾱ_t).
Fewer steps: DDIM (Song, Meng & Ermon 2021, eq. 12) on a subsequence of the timesteps, with
η = 0 deterministic given x_T.

Schedules: ``linear`` β from 1e-4 to 0.02 (Ho et al.), ``cosine`` ᾱ_t = f(t)/f(0),
f(t) = cos²(((t/T + s)/(1 + s)) · π/2), s = 0.008, β_t clipped at 0.999 (Nichol & Dhariwal 2021),
which destroys information more slowly and suits small images.

The model also keeps an exponential moving average of its weights (``ema_decay``): the
``diffusion`` task updates it after every optimizer step and ``sample`` uses it, which gives
visibly cleaner samples at no training cost (Ho et al. §4 use decay 0.9999 over 800k steps).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from liandan.registry import register_model


def beta_schedule(kind: str, timesteps: int) -> torch.Tensor:
    """β_1..β_T as float64 (T,)."""
    if kind == "linear":  # Ho et al. 2020, scaled so other T keep the same overall noise
        scale = 1000 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    if kind == "cosine":  # Nichol & Dhariwal 2021, eq. 17
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; use linear or cosine")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017), (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the time embedding, twice; a residual connection around it."""

    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))  # (B, cout, H, W)
        h = h + self.t(emb)[:, :, None, None]  # where in the diffusion chain we are
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """ε_θ(x_t, t[, y]): a U-Net (Ronneberger et al. 2015) with one residual block per level."""

    def __init__(self, channels: int, width: int, mults: tuple[int, ...], classes: int) -> None:
        super().__init__()
        tdim = 4 * width
        self.width = width
        self.temb = nn.Sequential(nn.Linear(width, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.label = nn.Embedding(classes, tdim) if classes else None
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        chans = [width * m for m in mults]
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        c = width
        for i, co in enumerate(chans):
            self.down.append(ResBlock(c, co, tdim))
            last = i == len(chans) - 1
            self.pool.append(nn.Identity() if last else nn.Conv2d(co, co, 3, stride=2, padding=1))
            c = co
        self.mid = ResBlock(c, c, tdim)
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i, co in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(c + co, co, tdim))  # concatenated skip connection
            self.unpool.append(nn.Identity() if i == 0 else nn.Sequential(nn.Upsample(scale_factor=2.0),
                                                                           nn.Conv2d(co, co, 3, padding=1)))
            c = co
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start as "predict no noise": a stable first step
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.temb(timestep_embedding(t, self.width))  # (B, tdim)
        if self.label is not None and y is not None:
            emb = emb + self.label(y)
        h = self.inp(x)  # (B, width, H, W)
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, emb)
        for block, unpool in zip(self.up, self.unpool, strict=True):
            h = unpool(block(torch.cat([h, skips.pop()], 1), emb))
        return self.out(h)  # (B, C, H, W): the predicted ε


class DDPM(nn.Module):
    """Noise predictor + schedule; ``forward(x_t, t, y)`` is ε_θ, ``sample`` runs the reverse chain."""

    def __init__(self, in_channels: int = 1, size: int = 8, width: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                 timesteps: int = 1000, schedule: str = "linear", classes: int = 0, ema_decay: float = 0.999) -> None:
        super().__init__()
        if size % 2 ** (len(mults) - 1):
            raise ValueError(f"ddpm: image side {size} must be divisible by 2^{len(mults) - 1} for {len(mults)} levels")
        self.net = UNet(in_channels, width, tuple(mults), classes)
        # A frozen copy updated as θ_ema ← d·θ_ema + (1−d)·θ; saved with the weights.
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if ema_decay > 0 else None
        self.ema_decay, self.classes = ema_decay, classes
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.int64))
        self.image_shape, self.timesteps, self.schedule = (in_channels, size, size), timesteps, schedule
        betas = beta_schedule(schedule, timesteps)  # float64 for the products, float32 to use
        abar = torch.cumprod(1 - betas, 0)
        # derived from the options, so not saved (persistent=False): a run rebuilds them exactly
        for k, v in {"betas": betas, "alphas_cumprod": abar,
                     "alphas_cumprod_prev": torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])}.items():
            self.register_buffer(k, v.float(), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        if t is None:  # a bare call (summary, FLOP count) predicts the noise at t = 0
            t = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return self.net(x, t, y)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, (B, C, H, W)."""
        abar = self.alphas_cumprod[t][:, None, None, None]
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    @torch.no_grad()
    def update_ema(self) -> None:
        """θ_ema ← d·θ_ema + (1−d)·θ, with d warmed up as min(d, (1+n)/(10+n)) so early steps count."""
        if self.ema is None:
            return
        n = int(self.ema_updates)
        d = min(self.ema_decay, (1 + n) / (10 + n))
        ema, cur = list(self.ema.state_dict().values()), list(self.net.state_dict().values())
        floats = [(e, c) for e, c in zip(ema, cur, strict=True) if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [c for _, c in floats], 1 - d)
        self.ema_updates += 1

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None,
               eta: float = 0.0, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1].

        ``steps`` None (or ``timesteps``): DDPM ancestral sampling over every t. Fewer: DDIM on
        evenly spaced timesteps, ``eta`` 0 deterministic, 1 ancestral-like. Noise is drawn on the
        CPU from ``generator`` so a seed gives the same images on any device. Class-conditional
        models cycle through the classes unless ``labels`` are given.
        """
        net = self.ema if self.ema is not None and int(self.ema_updates) > 0 else self.net
        dev = self.betas.device
        if self.classes and labels is None:
            labels = torch.arange(n) % self.classes
        y = labels.to(dev) if labels is not None and self.classes else None

        def randn() -> torch.Tensor:
            return torch.randn(n, *self.image_shape, generator=generator).to(dev)

        x = randn()  # x_T
        T = self.timesteps
        seq = list(range(T)) if not steps or steps >= T else torch.linspace(0, T - 1, steps).round().long().tolist()
        ddim = len(seq) < T
        for i in reversed(range(len(seq))):
            t = seq[i]
            tt = torch.full((n,), t, dtype=torch.long, device=dev)
            eps = net(x, tt, y)
            abar = self.alphas_cumprod[t]
            x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)  # x̂_0
            if ddim:
                prev = self.alphas_cumprod[seq[i - 1]] if i > 0 else torch.ones((), device=dev)
                eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # ε consistent with the clipped x̂_0
                sigma = eta * ((1 - prev) / (1 - abar) * (1 - abar / prev)).sqrt()
                x = prev.sqrt() * x0 + (1 - prev - sigma**2).clamp(min=0).sqrt() * eps
                if i > 0 and eta > 0:
                    x = x + sigma * randn()
            else:
                beta, prev = self.betas[t], self.alphas_cumprod_prev[t]
                mean = (prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - prev) * x) / (1 - abar)
                x = mean + (beta * (1 - prev) / (1 - abar)).sqrt() * randn() if t > 0 else mean
        return x.clamp(-1, 1)  # the last step's mean is x̂_0, up to rounding


@register_model("ddpm", input_kind="generative", paper="Ho et al. 2020 (DDPM); Nichol & Dhariwal 2021 (cosine)")
def ddpm(in_channels: int = 1, input_shape: tuple[int, ...] = (1, 8, 8), width: int = 32,
         mults: tuple[int, ...] = (1, 2, 2), timesteps: int = 1000, schedule: Literal["linear", "cosine"] = "linear",
         classes: int = 0, ema_decay: float = 0.999) -> DDPM:
    """DDPM noise-predicting U-Net with linear or cosine betas; train with task: diffusion.

    Args:
        input_shape: square (C, H, H) images, H divisible by 2^(len(mults) − 1); inferred from the data
        width: base channel count of the U-Net (the time embedding is 4× as wide)
        mults: channel multiplier of each U-Net resolution level; the levels are a ×2 downsampling apart
        timesteps: diffusion steps T (1000 in Ho et al. 2020)
        schedule: noise schedule: linear β from 1e-4 to 0.02 (Ho et al. 2020) or cosine ᾱ (Nichol & Dhariwal
            2021: destroys information more slowly, suits small images)
        classes: classes of a class-conditional model (a label embedding added to the time embedding); 0:
            unconditional
        ema_decay: decay of the exponential moving average of the weights that sampling uses; 0: no average
            (Ho et al. use 0.9999 over 800k steps)
    """
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"ddpm needs square images (C, H, H), got input shape {tuple(input_shape)}")
    return DDPM(in_channels, input_shape[1], width, tuple(mults), timesteps, schedule, classes, ema_decay)
