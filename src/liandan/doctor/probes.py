"""Probes: cheap measurements of a running training job, kept as plain records for the rules.

Every step: the loss and the global gradient norm (kept as tensors, turned into floats once an
epoch, so no extra host sync). Every K steps (a *probe step*; K counted in steps, never timed, so
the verdicts do not depend on the machine's load — K is chosen so that probes cost about
``budget`` of the training at an estimated :data:`PROBE_COST` steps each, as Cockpit recommends
tracking sparsely: economy every 16th step costs 1.04×, every step 1.51×, Schneider et al.
2021): per-layer gradient norms,
weight norms and update/weight ratios (TheDeepChecker's log10(|ΔW|/|W|) in [-4, -1]), and
activation statistics from forward hooks that exist only during that step: dead ReLU units
(TheDeepChecker), saturated sigmoid/tanh pre-activations beyond ±5 (DeepDiagnosis), per-layer
mean/std. On the first batches: input range and per-feature/channel mean/std, label range.
At the start and every epoch end: identical units (rows of a weight matrix equal up to 1e-6:
the symmetry of constant init).

Records are dicts; they are also appended to ``doctor_probes.jsonl`` in the run directory so
``liandan doctor RUN_DIR`` re-diagnoses from exactly what the live doctor saw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.training.callbacks import Callback

PROBE_LOG = "doctor_probes.jsonl"
# Pre-activation magnitude beyond which the activation's derivative is < ~1 % of its maximum:
# sigmoid'(5) = 0.0066 (DeepDiagnosis uses ±5); tanh'(x) = 4·sigmoid'(2x), so ±2.5 for tanh.
SATURATION = {"sigmoid": 5.0, "tanh": 2.5}
ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax",
    nn.Hardtanh: "tanh", nn.Softplus: "softplus", nn.SELU: "selu", nn.Mish: "mish",
}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
MAX_LIST = 256  # per-feature vectors longer than this are summarised, not stored
# What one probe step costs, in training steps: the hooks read every activation once and the
# per-layer norms and update ratios read every weight and gradient about three times — about one
# more forward pass. An estimate, not a timing: the schedule must be the same on every machine.
PROBE_COST = 1.5


def model_facts(model: nn.Module) -> dict[str, Any]:
    """Static facts the rules cite: weight layers in order, activations, norms, dropout, size."""
    layers = [{"name": n.removesuffix(".weight"), "shape": list(p.shape)}
              for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    acts = [{"name": n, "kind": ACTIVATIONS[type(m)]} for n, m in model.named_modules() if type(m) in ACTIVATIONS]
    dropout = [float(m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    # what bounds the output by construction: ``model.output`` (a hook), else a last leaf module that
    # is an activation (a Sequential ending in Sigmoid; a custom model defining its head's activation last)
    ends_in = getattr(model, "liandan_output", None) or (ACTIVATIONS.get(type(leaves[-1])) if leaves else None)
    return {"layers": layers, "activations": acts, "norms": sum(isinstance(m, NORMS) for m in model.modules()),
            "dropout": dropout, "params": sum(p.numel() for p in model.parameters()),
            "model_type": type(model).__name__, "ends_in": ends_in or "logits"}


def _thin(t: torch.Tensor) -> torch.Tensor:
    return t[:, :, ::2, ::2] if t.dim() == 4 and t.shape[-1] * t.shape[-2] > 64 else t


@torch.no_grad()
def activation_stats(kind: str, inp: torch.Tensor, out: torch.Tensor) -> dict[str, float]:
    """mean/std of the output; dead units (ReLU) or saturated pre-activations (sigmoid/tanh).
    All statistics are stacked and read with one host transfer; large feature maps are read at
    every other row and column (a quarter of the positions: the statistics are estimates anyway)."""
    o, inp = _thin(out.detach()), _thin(inp.detach())
    std, mean = torch.std_mean(o.float()) if o.numel() > 1 else (o.new_zeros(()), o.float().mean())
    keys, vals = ["mean", "std"], [mean, std]
    if kind == "relu":
        # a unit is dead when it outputs 0 for the whole batch: its maximum over samples/positions is 0
        dims = [d for d in range(o.dim()) if d != 1] if o.dim() >= 2 else [0]
        alive = o.amax(dim=dims) > 0
        keys += ["dead", "zero"]
        vals += [1.0 - alive.float().mean(), 1.0 - torch.count_nonzero(o > 0) / max(o.numel(), 1)]
    elif kind in SATURATION:
        x = inp.detach().float()
        keys += ["saturated", "pre_std"]
        vals += [torch.count_nonzero(x.abs() > SATURATION[kind]) / max(x.numel(), 1),
                 x.std() if x.numel() > 1 else x.new_zeros(())]
    return dict(zip(keys, torch.stack([v.float() for v in vals]).tolist(), strict=True))


@torch.no_grad()
def output_stats(out: torch.Tensor) -> dict[str, float]:
    """Does the output look like logits, probabilities (softmax inside the model) or log-probs?"""
    o = out.detach().float()
    st = {"mean": o.mean().item(), "std": o.std().item() if o.numel() > 1 else 0.0,
          "min": o.min().item(), "max": o.max().item(), "dim": int(o.shape[-1]) if o.dim() > 1 else 1}
    if o.dim() >= 2 and o.shape[-1] > 1:  # (B, K) class scores or (B, T, V) token scores
        st["row_sum_dev"] = (o.sum(-1) - 1).abs().max().item()  # 0 for softmax outputs
        st["logsumexp_dev"] = o.logsumexp(-1).abs().max().item()  # 0 for log_softmax outputs
    return st


@torch.no_grad()
def identical_fraction(w: torch.Tensor, tol: float = 1e-6) -> float:
    """Fraction of a layer's units whose incoming weights equal another unit's up to ``tol``.

    Rows are projected on a fixed random direction (local generator: the run's RNG is not
    touched), sorted, and neighbours compared element-wise: O(n log n) instead of all pairs.
    """
    rows = w.detach().reshape(w.shape[0], -1).float().cpu()
    n = rows.shape[0]
    if n < 2:
        return 0.0
    g = torch.Generator().manual_seed(0)
    proj = rows @ torch.randn(rows.shape[1], generator=g)
    s = rows[proj.argsort()]
    same = (s[1:] - s[:-1]).abs().amax(1) <= tol
    dup = torch.zeros(n, dtype=torch.bool)
    dup[1:] |= same
    dup[:-1] |= same
    return dup.float().mean().item()


@torch.no_grad()
def input_stats(x: torch.Tensor) -> dict[str, Any]:
    x = x.detach().float()
    dims = [0, 2, 3] if x.dim() == 4 else [0] if x.dim() == 2 else [d for d in range(x.dim()) if d != 1]
    if x.dim() == 1:
        dims = [0]
    mean, std = x.mean(dims).reshape(-1), x.std(dims).reshape(-1) if x.shape[0] > 1 else torch.zeros(1)
    return {"mean": mean.tolist(), "std": std.tolist(), "min": x.min().item(), "max": x.max().item()}


@torch.no_grad()
def label_stats(y: torch.Tensor) -> dict[str, Any]:
    if y.dtype in (torch.int64, torch.int32, torch.long):
        return {"kind": "class", "min": int(y.min()), "max": int(y.max()), "distinct": int(y.unique().numel())}
    yf = y.detach().float()
    return {"kind": "value", "min": yf.min().item(), "max": yf.max().item(), "mean": yf.mean().item(),
            "std": yf.std().item() if yf.numel() > 1 else 0.0}


def summarize_inputs(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Average the per-batch statistics of the first batches into one record."""
    mean = torch.tensor([b["mean"] for b in batches]).mean(0)
    std = torch.tensor([b["std"] for b in batches]).mean(0)
    live = std[std > 1e-8]
    return {
        "min": min(b["min"] for b in batches), "max": max(b["max"] for b in batches),
        "features": len(mean), "abs_mean_max": mean.abs().max().item(),
        "std_max": std.max().item(), "std_min": live.min().item() if len(live) else 0.0,
        "std_ratio": (live.max() / live.min()).item() if len(live) else 1.0,
        "constant_features": int((std <= 1e-8).sum()),
        # how far the features sit from zero in units of their spread: ≈ 0 once standardised, ≈ 1
        # for [0, 1] pixels (LeCun et al., Efficient BackProp §4.3: inputs should average to zero)
        "off_centre": (mean[std > 1e-8].pow(2).mean().sqrt() / live.pow(2).mean().sqrt()).item() if len(live) else 0.0,
        "mean": mean.tolist()[:MAX_LIST], "std": std.tolist()[:MAX_LIST],
    }


def probe_interval(budget: float, steps_per_epoch: int, epoch: int, every: int | None = None) -> int:
    """Steps between two probes (``every`` when the recipe fixes it)."""
    if every:
        return every
    spe = max(1, steps_per_epoch)
    k = math.ceil(PROBE_COST / budget)
    cap = max(3, spe // 3) if epoch == 0 else spe  # denser in the first epoch
    return int(min(max(k, 2), cap))


class Probes(Callback):
    """Collects the records; :class:`liandan.doctor.live.DoctorCallback` adds the rules on top."""

    def __init__(self, budget: float = 0.02, every: int | None = None, input_batches: int = 3,
                 log: bool = True) -> None:
        self.budget, self.every, self.input_batches, self.write_log = budget, every, input_batches, log
        self.records: list[dict[str, Any]] = []
        self._pending: list[tuple[int, Any, Any, bool]] = []
        self._inputs: list[dict[str, Any]] = []
        self._labels: dict[str, Any] | None = None
        self._inputs_done = False
        self._hooks: list[Any] = []
        self._probe: dict[str, Any] | None = None
        self._before: list[torch.Tensor] = []
        self._next = 1
        self._written = 0
        self.path: Path | None = None

    # --- records ------------------------------------------------------------------------------

    def add(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)

    def flush(self, trainer: Any) -> None:
        """Turn the pending per-step tensors into one ``steps`` record (one sync per epoch)."""
        if not self._pending:
            return
        steps = [p[0] for p in self._pending]
        loss = torch.stack([p[1].detach().float().reshape(()) for p in self._pending]).tolist()
        gn = torch.stack([p[2].detach().float().reshape(()) for p in self._pending]).tolist()
        applied = [p[3] for p in self._pending]
        self._pending.clear()
        self.add({"type": "steps", "epoch": trainer.state.epoch, "steps": steps, "loss": loss,
                  "grad_norm": gn, "applied": applied})
        self.save()

    def save(self) -> None:
        if not self.write_log or self.path is None:
            return
        with open(self.path, "a") as f:
            for rec in self.records[self._written:]:
                f.write(json.dumps(rec) + "\n")
        self._written = len(self.records)

    # --- callback hooks ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: Any) -> None:
        self.path = Path(trainer.dir) / PROBE_LOG
        if trainer.state.step > 0 and self.path.exists():  # resumed: keep what the first part saw
            self.records = [r for r in read_probe_log(self.path) if r.get("step", 0) <= trainer.state.step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            self._written = len(self.records)
            self._next = trainer.state.step + 1
            self._inputs_done = True
        else:
            self.path.unlink(missing_ok=True)
            self.add({"type": "meta", **model_facts(trainer.model), "steps_per_epoch": trainer.steps_per_epoch,
                      "total_steps": trainer.total_steps})
            self.check_identical(trainer)

    def on_batch_start(self, trainer: Any, x: Any, y: Any) -> None:
        if not self._inputs_done and torch.is_tensor(x) and x.is_floating_point():
            self._inputs.append(input_stats(x))
            self._labels = _merge_labels(self._labels, label_stats(y))
            if len(self._inputs) >= self.input_batches:
                self._finish_inputs()
        step = trainer.state.step + 1
        if step >= self._next and self._probe is None:
            self._start_probe(trainer, step, y)

    def _start_probe(self, trainer: Any, step: int, y: Any) -> None:
        self._probe = {"type": "probe", "step": step, "epoch": trainer.state.epoch, "acts": {}}
        if torch.is_tensor(y):
            self._probe["labels"] = label_stats(y)
        acts = self._probe["acts"]

        def hook(name: str, kind: str):
            def fn(_m: nn.Module, inp: tuple, out: Any) -> None:
                if name in acts or not torch.is_tensor(out) or not inp or not torch.is_tensor(inp[0]):
                    return
                acts[name] = {"kind": kind, **activation_stats(kind, inp[0], out)}
            return fn

        for name, m in trainer.model.named_modules():
            kind = ACTIVATIONS.get(type(m))
            if kind is not None:
                self._hooks.append(m.register_forward_hook(hook(name, kind)))

        def out_hook(_m: nn.Module, _inp: tuple, out: Any) -> None:
            if "output" not in self._probe and torch.is_tensor(out):
                self._probe["output"] = output_stats(out)

        # the module the loop calls (the model, or its DDP/compiled wrapper): its output is what the loss sees
        self._hooks.append(getattr(trainer, "net", trainer.model).register_forward_hook(out_hook))

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def on_after_backward(self, trainer: Any) -> None:
        if self._probe is None:
            return
        self._remove_hooks()
        named = [(n.removesuffix(".weight"), p) for n, p in trainer.model.named_parameters()
                 if p.dim() >= 2 and p.requires_grad]
        layers: dict[str, dict[str, float]] = {}
        with torch.no_grad():
            ws = [p.detach() for _, p in named]
            gs = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in named]
            if ws:  # per layer: |W|, |g|, mean |g|, share of exact zeros — one host transfer for all
                stats = torch.stack([torch.stack(torch._foreach_norm(ws)), torch.stack(torch._foreach_norm(gs)),
                                     torch.stack([g.abs().mean() for g in gs]),
                                     torch.stack([(g == 0).float().mean() for g in gs])]).T.tolist()
                for (name, _), (w, gn, gm, z) in zip(named, stats, strict=True):
                    layers[name] = {"weight": w, "grad": gn, "grad_mean": gm, "zero_grad": z}
            self._before = [w.clone() for w in ws]
        self._probe["layers"] = layers
        self._probe["lr"] = trainer.optimizer.param_groups[0]["lr"]

    def on_step_end(self, trainer: Any, loss: Any, grad_norm: Any, applied: bool) -> None:
        self._pending.append((trainer.state.step, loss, grad_norm, applied))
        if self._probe is None:
            return
        probe, self._probe = self._probe, None
        self._remove_hooks()
        if applied and self._before and "layers" in probe:
            named = [n.removesuffix(".weight") for n, p in trainer.model.named_parameters()
                     if p.dim() >= 2 and p.requires_grad]
            with torch.no_grad():
                ws = [p.detach() for p in trainer.model.parameters() if p.dim() >= 2 and p.requires_grad]
                diffs = torch._foreach_sub(ws, self._before)
                dn = torch.stack(torch._foreach_norm(diffs)).tolist()
            for name, d in zip(named, dn, strict=True):
                rec = probe["layers"].get(name)
                if rec is not None:
                    rec["update"] = d / max(rec["weight"], 1e-12)
        self._before = []
        probe["loss"] = float(loss)
        probe["grad_norm"] = float(grad_norm)
        probe["applied"] = bool(applied)
        self.add(probe)
        self._schedule(trainer, probe["step"])
        self.on_probe(trainer, probe)

    def _schedule(self, trainer: Any, step: int) -> None:
        """Next probe: K steps later, K = PROBE_COST / budget (75 at 2 %), at most a third of an
        epoch in the first epoch (where most faults show) and one epoch after, at least 2.
        Counted in steps, so the same run probes the same steps on any machine and under any load."""
        self._next = step + probe_interval(self.budget, trainer.steps_per_epoch, trainer.state.epoch, self.every)

    def on_probe(self, trainer: Any, probe: dict[str, Any]) -> None:
        """Called after each probe step's record is complete (the live doctor runs its rules)."""

    def check_identical(self, trainer: Any) -> None:
        # LoRA's B starts at zero on purpose (the adapted model starts as the base); the frozen random
        # A and each output's own gradient break the tie, so it is not the symmetry problem
        fr = {n.removesuffix(".weight"): identical_fraction(p) for n, p in trainer.model.named_parameters()
              if p.dim() >= 2 and p.requires_grad and p.shape[0] > 1 and "lora_B" not in n}
        self.add({"type": "identical", "step": trainer.state.step, "epoch": trainer.state.epoch,
                  "layers": {k: v for k, v in fr.items() if v > 0}})

    def on_epoch_end(self, trainer: Any, metrics: dict[str, dict[str, float]]) -> None:
        self.flush(trainer)
        self.check_identical(trainer)
        self.add({"type": "epoch", "epoch": trainer.state.epoch, "step": trainer.state.step,
                  "lr": trainer.optimizer.param_groups[0]["lr"],
                  **{k: dict(v) for k, v in metrics.items()}})
        self.save()

    def on_fit_end(self, trainer: Any) -> None:
        self._remove_hooks()
        self._probe = None
        self.flush(trainer)
        self._finish_inputs()  # fewer batches than planned
        self.save()

    def _finish_inputs(self) -> None:
        if self._inputs and not self._inputs_done:
            self.add({"type": "inputs", **summarize_inputs(self._inputs), "labels": self._labels})
        self._inputs_done = True


def _merge_labels(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    out = dict(a)
    out["min"], out["max"] = min(a["min"], b["min"]), max(a["max"], b["max"])
    if "distinct" in a:
        out["distinct"] = max(a["distinct"], b["distinct"])
    return out


def read_probe_log(path: Path) -> list[dict[str, Any]]:
    from liandan.paths import read_text

    out = []
    for line in read_text(path, "probe log").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a killed run
    return out
