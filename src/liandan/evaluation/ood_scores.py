"""OOD score functions; larger = more in-distribution (OpenOOD's convention).

* MSP — Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
  Examples in Neural Networks" (ICLR 2017): ``max_c softmax(f(x))_c``.
* ODIN — Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection
  in Neural Networks" (ICLR 2018): temperature-scaled MSP on an input nudged towards higher
  confidence, ``x̃ = x − ε·sign(−∇ₓ log S_ŷ(x; T))``; as OpenOOD's ``odin_postprocessor.py`` the
  sign is divided by the per-channel input std (ε is in raw input units). T = 1000, ε = 0.0014.
* Energy — Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection" (NeurIPS 2020):
  ``−E(x) = T·logsumexp(f(x)/T)``, T = 1.
* Mahalanobis — Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks" (NeurIPS 2018), the plain variant of
  OpenOOD's ``mds_postprocessor.py``: ``max_c −(z − μ_c)ᵀ Σ⁻¹ (z − μ_c)`` on the penultimate
  features z (the input of the last Linear layer), class means μ_c and one shared covariance Σ
  (the maximum-likelihood covariance of class-centred training features, as
  ``sklearn.covariance.EmpiricalCovariance``) — no input preprocessing, no layer ensemble.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liandan.data.pipeline import DataInfo

METHODS = ("msp", "energy", "odin", "mahalanobis")
ODIN_T, ODIN_EPS, ENERGY_T = 1000.0, 0.0014, 1.0


def msp(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), 1).amax(1)


def energy(logits: torch.Tensor, temperature: float = ENERGY_T) -> torch.Tensor:
    return temperature * torch.logsumexp(logits.double() / temperature, 1)


def odin(
    model: nn.Module,
    info: DataInfo,
    x_raw: torch.Tensor,
    temperature: float = ODIN_T,
    epsilon: float = ODIN_EPS,
    batch_size: int = 256,
) -> torch.Tensor:
    """ODIN scores of raw inputs (gradients w.r.t. the normalised input; model parameters untouched)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    std: torch.Tensor | float = 1.0  # no normalisation: raw and model units agree
    if info.x_std is not None:
        std = torch.tensor(info.x_std, dtype=torch.float32).view((1, -1) + (1,) * (x_raw.dim() - 2)).to(device)
    scores = []
    for i in range(0, len(x_raw), batch_size):
        x = info.normalize_x(x_raw[i : i + batch_size]).to(device).requires_grad_(True)
        out = model(x)
        loss = F.cross_entropy(out / temperature, out.detach().argmax(1))
        (grad,) = torch.autograd.grad(loss, x)
        step = torch.where(grad >= 0, 1.0, -1.0) / std  # OpenOOD: sign(∇) scaled to normalised units
        with torch.no_grad():
            out2 = model(x.detach() - epsilon * step)
        scores.append(torch.softmax(out2.double().cpu() / temperature, 1).amax(1))
    model.train(was)
    return torch.cat(scores) if scores else torch.empty(0, dtype=torch.float64)


class Mahalanobis:
    """Class means and a shared precision matrix of penultimate features (Lee et al. 2018)."""

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None  # (K, D)
        self.precision: torch.Tensor | None = None  # (D, D)

    def fit(self, feats: torch.Tensor, y: torch.Tensor, num_classes: int) -> Mahalanobis:
        feats = feats.double()
        means = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64)
        for c in range(num_classes):
            m = y == c
            if m.any():
                means[c] = feats[m].mean(0)
        centred = feats - means[y]
        cov = centred.T @ centred / len(feats)  # maximum likelihood, as EmpiricalCovariance
        self.means, self.precision = means, torch.linalg.pinv(cov, hermitian=True)
        self._present = torch.bincount(y, minlength=num_classes) > 0
        return self

    def score(self, feats: torch.Tensor) -> torch.Tensor:
        if self.means is None or self.precision is None:
            raise RuntimeError("Mahalanobis.fit must run before score")
        z, mu, p = feats.double(), self.means, self.precision
        # (z−μ)ᵀP(z−μ) = zᵀPz − 2 zᵀPμ + μᵀPμ: (N, K) without an (N, K, D) tensor
        zp = z @ p
        dist = (zp * z).sum(1, keepdim=True) - 2 * zp @ mu.T + ((mu @ p) * mu).sum(1)[None]
        dist[:, ~self._present] = float("inf")
        return -dist.amin(1)
