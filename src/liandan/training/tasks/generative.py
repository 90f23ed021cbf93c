"""``gan`` and ``diffusion``: tasks that learn to generate the training images (labels unused,
except by a class-conditional diffusion model).

Both models work on images in [-1, 1] (the DCGAN generator ends in Tanh; DDPM's x_0 is scaled
so the noise N(0, I) dominates it at t = T). Batches arrive as the data pipeline made them,
standardised when ``data.normalize`` is on, so :func:`to_model_space` undoes that and maps the
pixels [0, 1] to [-1, 1]; :func:`to_pixels` is its inverse for samples.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from liandan.errors import LiandanError
from liandan.registry import register_task
from liandan.training.tasks import ExampleSource, LossTally, MeanTally, Optimization, Task, recipe_optimizer

if TYPE_CHECKING:
    from liandan.data.pipeline import DataInfo
    from liandan.training.loop import Trainer
    from liandan.training.run import Run


def to_model_space(info: DataInfo, x: torch.Tensor) -> torch.Tensor:
    """Batch as the pipeline delivers it → images in [-1, 1] (pixels assumed in [0, 1])."""
    if info.x_mean is not None:
        mean = torch.tensor(info.x_mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(info.x_std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        x = x * std + mean
    return x * 2 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Model-space images [-1, 1] → pixels [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def _unwrap(net: nn.Module) -> nn.Module:
    """The plain model under a DDP / compile wrapper (for its schedule buffers and halves)."""
    net = getattr(net, "_orig_mod", net)
    return getattr(net, "module", net)


class _Generative(Task):
    """Tasks that learn to draw the training images: ``liandan sample`` draws from them."""

    default_loss = None
    predict_instead = "liandan sample {run}"
    sample_steps: int | None = None  # sampling steps of the report's samples (None: the model's own)

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A seeded grid of samples."""
        imgs = ex.samples(self.sample_steps)
        return {"title": f"{len(imgs)} samples (seed 0)", "images": imgs, "labels": [None] * len(imgs)}


def _check_model(net: nn.Module, task: str, needs: str) -> nn.Module:
    model = _unwrap(net)
    if not hasattr(model, needs):
        raise LiandanError(f"task {task} needs a model with {needs!r} (e.g. "
                           f"{'dcgan' if task == 'gan' else 'ddpm'}), got {type(model).__name__}")
    return model


@register_task("gan")
class GAN(_Generative):
    """Adversarial training (Goodfellow et al. 2014) with the non-saturating generator loss.

    Per step, on the real batch x and fresh z ~ N(0, I):
      D: minimise −log D(x) − log(1 − D(G(z)))   (binary cross-entropy, real → 1, fake → 0)
      G: minimise −log D(G(z))                   (the non-saturating loss of their §3: strong
                                                  gradients early, when D rejects every sample)
    Each network has its own optimizer built from the recipe's ``optim`` section (DCGAN: Adam,
    lr 2e-4, β1 0.5) and its own schedule, declared by :meth:`configure_optimizers`: the
    generator's is the trainer's (``lr`` in the logs), the discriminator's is checkpointed by
    :meth:`state_dict`. ``loss`` is d_loss + g_loss;
    ``d_real`` / ``d_fake`` are the mean D(x) and D(G(z)) (both near 0.5 at equilibrium).
    """

    name = "gan"
    METRICS = ["d_loss", "g_loss", "d_real", "d_fake"]

    def metric_names(self) -> list[str]:
        return list(self.METRICS)

    def tally(self, device: torch.device, light: bool = False) -> MeanTally:
        return MeanTally(device, self.METRICS)

    def configure_optimizers(self, trainer: Trainer) -> Optimization:
        """The generator's optimizer is the trainer's; the discriminator's is this task's."""
        model = _check_model(trainer.model, "gan", "discriminator")
        g = recipe_optimizer(model.generator, trainer.recipe, trainer.total_steps)
        d = recipe_optimizer(model.discriminator, trainer.recipe, trainer.total_steps)
        self.opt_d, self.schedule_d, self.params_d = d.optimizer, d.schedule, d.params
        return g

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt_d]

    @staticmethod
    def _losses(model: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        d_real, d_fake = model.discriminator(real), model.discriminator(fake.detach())  # (B,) logits
        d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        return {"d_loss": d_loss, "d_real": torch.sigmoid(d_real).mean(), "d_fake": torch.sigmoid(d_fake).mean()}

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Both losses on one batch without an update (validation, the trainer's dry run)."""
        model = _check_model(net, "gan", "discriminator")
        real = to_model_space(self.info, x)
        fake = model.generator(model.noise(len(x), x.device))
        out = self._losses(model, real, fake)
        g = model.discriminator(fake)
        out["g_loss"] = F.binary_cross_entropy_with_logits(g, torch.ones_like(g))
        return out["d_loss"] + out["g_loss"], out

    def train_flops(self, model: nn.Module, sample: torch.Tensor) -> int:
        """Per real sample and step: G's forward once (the fakes serve both steps); the D step runs
        D forward and backward on the real and the fake image (2 × 3 D); the G step runs D forward
        and its backward to the input only (D is frozen: 2 D) and G's backward (2 G). 8 D + 3 G."""
        from liandan.training.flops import forward_flops

        m = _unwrap(model)
        f_d = forward_flops(m.discriminator, sample)
        f_g = forward_flops(m.generator, torch.zeros(1, m.nz, device=sample.device))  # zeros: training's RNG untouched
        return 8 * f_d + 3 * f_g if f_d and f_g else 0

    def _step(self, trainer: Trainer, opt: torch.optim.Optimizer, params: list,
              loss: torch.Tensor) -> torch.Tensor | None:
        """backward, the finiteness guard, clipping, step; the gradient norm, or None if skipped."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if not math.isfinite(float(norm + loss.detach())):
            opt.zero_grad(set_to_none=True)
            return None
        if trainer.cfg.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(params, trainer.cfg.grad_clip, norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return norm

    def train_step(self, trainer: Trainer, group: list[tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[bool, torch.Tensor, torch.Tensor]:
        """One D step then one G step; an accumulation group is joined into one batch (the
        gradient of a GAN step is not a sum over independent micro-batches: G's step must see the
        D just updated)."""
        model = _unwrap(trainer.net)
        x = torch.cat([b[0] for b in group]) if len(group) > 1 else group[0][0]
        y = torch.cat([b[1] for b in group]) if len(group) > 1 else group[0][1]
        real = to_model_space(self.info, x)
        fake = model.generator(model.noise(len(x), x.device))  # (B, C, H, W)
        out = self._losses(model, real, fake)
        norm_d = self._step(trainer, self.opt_d, self.params_d, out["d_loss"])
        # G step against the updated D; D's weights are frozen so no gradient is spent on them.
        model.discriminator.requires_grad_(False)
        try:
            g = model.discriminator(fake)
            out["g_loss"] = F.binary_cross_entropy_with_logits(g, torch.ones_like(g))
            norm_g = self._step(trainer, trainer.optimizer, trainer.params, out["g_loss"])
        finally:
            model.discriminator.requires_grad_(True)
        loss = (out["d_loss"] + out["g_loss"]).detach()
        st = trainer.state
        if norm_d is None or norm_g is None:
            st.bad_steps += 1
            st.total_bad_steps += 1
            if st.bad_steps >= trainer.cfg.max_bad_steps:
                trainer.status = "diverged"
                trainer.stop_reason = f"{st.bad_steps} consecutive GAN steps with non-finite losses or gradients"
            return False, torch.full((), math.nan), loss
        trainer.schedule.after_step()
        self.schedule_d.after_step()
        st.bad_steps = 0
        trainer.train_acc.update({k: v.detach() for k, v in out.items()}, y, loss)
        return True, torch.linalg.vector_norm(torch.stack([norm_d, norm_g])), loss

    def state_dict(self) -> dict[str, Any]:
        return {"opt_d": self.opt_d.state_dict(), "schedule_d": self.schedule_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.opt_d.load_state_dict(state["opt_d"])
            self.schedule_d.load_state_dict(state["schedule_d"])


@register_task("diffusion")
class Diffusion(_Generative):
    """Denoising diffusion (Ho et al. 2020): predict the noise ε added to x_0 at a random step t.

    Algorithm 1: t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,
    loss = ‖ε − ε_θ(x_t, t)‖² (mean over pixels).

    Class-conditional models (``model.classes`` > 0) also see the labels. After every applied
    optimizer step the model's EMA weights move towards the new weights.
    """

    name = "diffusion"
    sample_steps = 50  # DDIM steps for the report's grid: seconds, where the full chain takes minutes

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        model = _check_model(net, "diffusion", "q_sample")
        x0 = to_model_space(self.info, x)  # (B, C, H, W) in [-1, 1]
        t = torch.randint(0, model.timesteps, (len(x),), device=x.device)
        noise = torch.randn_like(x0)
        labels = y if model.classes and y.dtype == torch.long else None
        eps = net(model.q_sample(x0, t, noise), t, labels)
        loss = F.mse_loss(eps, noise)
        return loss, eps

    def tally(self, device: torch.device, light: bool = False) -> LossTally:
        return LossTally(device)

    def after_step(self, trainer: Trainer, applied: bool) -> None:
        """The EMA weights follow every applied step (the trainer's own: accumulation, clipping, non-finite guard)."""
        if applied:
            _unwrap(trainer.net).update_ema()
