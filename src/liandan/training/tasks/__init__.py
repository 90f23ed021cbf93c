"""Tasks: what a batch means. A task owns its batch: the loss, the metrics, what ``liandan predict``
prints, the report's examples, the exported graph's signature, and which optimizers it steps.

The trainer owns the loop (devices, precision, accumulation, clipping, checkpoints, probes, the
run directory); a recipe's ``task`` picks the object that owns the rest. A task is a small class
registered with ``@register_task(name)``::

    @register_task("classify")
    class Classify(Task):
        def forward(self, net, x, y): out = net(x); return self.loss_fn(out, y), out

This is Lightning's ``LightningModule`` cut to what liandan needs: :meth:`Task.forward` is
``training_step``/``validation_step``, :meth:`Task.predictor` is ``predict_step``, and
:meth:`Task.configure_optimizers` is ``configure_optimizers``. Code outside this package never
compares task names (``tests/training/test_no_task_switches.py`` checks it): it builds the task
(:func:`build_task`) or takes its class (:func:`task_class`) and asks it. So a new task is one
file: every pillar (the doctor, evaluation, predict, the report, the exporters) reads its answers.

Batches stay ``(x, y)`` pairs for every task (images and captions, tokens and targets, images
and unused labels), so loaders, sharding and resume need not know the task.

Tasks with more than one network (a GAN's generator and discriminator) declare their optimizers
in :meth:`Task.configure_optimizers`, take over the whole optimizer step with
:meth:`Task.train_step`, and keep their extra state in :meth:`Task.state_dict`, which the trainer
checkpoints and restores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.registry import TASKS

if TYPE_CHECKING:
    from liandan.data.pipeline import DataInfo
    from liandan.optim.schedules import Schedule
    from liandan.recipe import Recipe
    from liandan.training.loop import Trainer
    from liandan.training.run import Run

Prediction = Callable[[torch.Tensor], dict[str, Any]]


class Tally(Protocol):
    """Metric sums over batches, with no host sync per batch (tensors stay on the device)."""

    def update(self, out: Any, y: torch.Tensor, loss: torch.Tensor) -> None: ...
    def compute(self) -> dict[str, float]: ...
    def reset(self) -> None: ...


class ExampleSource(Protocol):
    """What the report hands :meth:`Task.render_examples`: a few inputs of one split, and the
    pillars' drawing tools (image sampling, greedy decoding), which this layer cannot import."""

    split: str

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A few raw inputs of the split (pixels as stored, un-normalised) and their targets."""
        ...

    def samples(self, steps: int | None = None) -> torch.Tensor:
        """Seeded samples of a generative model, as pixels in [0, 1] ``(N, C, H, W)``."""
        ...

    def completions(self) -> list[dict[str, str]]:
        """Greedy completions of the split's prompts: rows of prompt, expected and got."""
        ...


@dataclass
class Optimization:
    """What :meth:`Task.configure_optimizers` hands the trainer.

    ``optimizer`` and ``schedule`` are the trainer's own: stepped by its loop (or by the task's
    ``train_step``), checkpointed, their rate logged as ``lr``. ``params`` are what its
    non-finite guard and gradient clipping see. Optimizers the task steps besides these (a GAN's
    discriminator's) stay the task's: it lists them in :meth:`Task.optimizers` and saves them in
    :meth:`Task.state_dict`.
    """

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    params: list[nn.Parameter]


def recipe_optimizer(module: nn.Module, recipe: Recipe, total_steps: int) -> Optimization:
    """The recipe's ``optim`` and ``schedule`` sections built over ``module``'s trainable parameters."""
    from liandan.optim import build_optimizer, build_schedule

    o, s = recipe.optim, recipe.schedule
    opt = build_optimizer(module, o.name, o.lr, o.weight_decay, o.options, o.decay_bias_and_norm,
                          include_frozen=bool(recipe.model.unfreeze_at_epoch))  # unfrozen later: no new group
    return Optimization(opt, build_schedule(opt, s.name, total_steps, s.warmup_steps, s.options),
                        [p for p in module.parameters() if p.requires_grad])


class Task:
    """Base task: ``forward`` calls the network and the recipe's loss on its output.

    The class attributes are what other layers ask instead of comparing task names; they are
    read from the class (:func:`task_class`), so they need no data.
    """

    name = ""
    default_loss: str | None = None  # None: the task computes its own loss (lm, gan, diffusion, ...)
    # The loss a task that computes its own applies to the network's output (lm: cross-entropy over
    # the vocabulary), which the doctor checks the output against; None: not a per-output loss.
    own_loss: str | None = None
    higher_is_better: frozenset[str] = frozenset()
    # How the data pipeline treats the source's targets y (it reads this through the TASKS
    # registry: the data layer imports no task). "class": integer class ids, splits stratified,
    # one output per class, continuous targets refused. "value": float targets standardised with
    # the training split's statistics (class ids become values). None: y passes through as the
    # source built it for this task (token ids, captions, unused image labels).
    target_kind: str | None = None
    # The output is one logit per class against integer labels: the doctor judges the run by
    # accuracy over chance, OOD detection and distillation (softmax scores) accept it.
    is_classification = False
    # The output predicts the standardised targets: predict, the exporter and evaluation scale it
    # back to the data's units (DataInfo.denormalize_y); the doctor judges the run by R².
    is_regression = False
    # The test metric the end-of-run line prints and compression compares ("loss" where the task
    # has no score of its own).
    headline_metric = "loss"
    # A causal language model: ``liandan generate`` continues prompts, GGUF export accepts it.
    generates_text = False
    # The name of the ONNX graph's one output (raw input -> this); None: one input -> one output
    # cannot hold the model (a sampling loop, two networks, two inputs), so export refuses it.
    export_output: str | None = None
    # What to run instead of ``liandan predict`` on a run of this task ({run}: its directory).
    predict_instead = "liandan evaluate {run}"
    # The Hugging Face head a pre-trained model takes for this task (``model: {name: hf, head: auto}``):
    # causal_lm, seq_cls, token_cls, qa, masked_lm; None: the recipe names one.
    hf_head: str | None = None
    # Data options (recipe ``data.<key>``) the doctor's repair judge scores every candidate under,
    # whatever the candidate trained with: a fix that changes what the loss counts (sft: the prompt
    # tokens) must not change what the judge counts, or the two validation scores are not comparable.
    judge_data: dict[str, Any] = {}

    def __init__(self, info: DataInfo, loss_fn, recipe: Recipe) -> None:
        self.info, self.loss_fn, self.recipe = info, loss_fn, recipe

    def metric_names(self) -> list[str]:
        """Metrics logged besides ``loss`` (metrics.csv columns, early-stopping monitors)."""
        return []

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Loss of one micro-batch and the output the tally sees."""
        out = net(x)
        return self.compute_loss(out, y, x), out

    def compute_loss(self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of the network's output against the targets (the recipe's loss by default)."""
        if getattr(self.loss_fn, "needs_input", False):  # distillation: the teacher sees the same batch
            return self.loss_fn(out, y, x=x, info=self.info)
        return self.loss_fn(out, y)

    def train_flops(self, model: nn.Module, sample: torch.Tensor) -> int:
        """Training FLOPs per sample: forward + backward ≈ 3 × the forward of one sample (0: unknown)."""
        from liandan.training.flops import forward_flops

        return 3 * forward_flops(model, sample)

    def tally(self, device: torch.device, light: bool = False) -> Tally:
        """Accumulator of ``metric_names()``; ``light`` is the per-step training tally (cheap)."""
        return LossTally(device)

    # --- what a trained run does: predict, examples --------------------------------------------

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """``liandan predict`` (Lightning's ``predict_step``): a function from one normalised
        input (no batch axis) to what predict prints for it, e.g. ``{"classes": [...]}``. The
        model is in eval mode and gradients are off when it is called."""
        hint = self.predict_instead.format(run=run.dir)
        raise LiandanError(f"predict serves classifiers, regressors and image-text runs; {run.dir} is a "
                           f"{self.name} run: try `{hint}`")

    def read_inputs(self, run: Run, inputs: list[Any]) -> list[tuple[str, torch.Tensor]] | None:
        """``liandan predict``'s inputs as ``(name, model input)`` pairs, for a task whose inputs are
        not files or numbers (texts); None: predict reads them (images, arrays, CSV rows)."""
        return None

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """The report's "Examples" figure: ``{"title", "images" (N, C, H, W), "labels"}`` with a
        label ``(text, right)`` or None per image, or ``{"title", "rows"}``; None: no picture."""
        return None

    # --- hooks for tasks that own the optimizer step -------------------------------------------
    train_step = None  # or a method (trainer, batches: list[(x, y)]) -> (applied, grad_norm, loss)

    def configure_optimizers(self, trainer: Trainer) -> Optimization:
        """The trainer's optimizer, schedule and guarded parameters (Lightning's
        ``configure_optimizers``); by default the recipe's over every trainable parameter. Called
        once, before :meth:`setup`; a task with more networks builds its other optimizers here."""
        return recipe_optimizer(trainer.model, trainer.recipe, trainer.total_steps)

    def setup(self, trainer: Trainer) -> None:
        """Called once the trainer is built (its optimizer, schedule and tally exist)."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers this task steps besides the trainer's own (a GAN's discriminator's)."""
        return []

    def after_step(self, trainer: Trainer, applied: bool) -> None:
        """Called after every optimizer step of the trainer's own (``applied``: not skipped as non-finite)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LossTally:
    """The mean loss only."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.n = torch.zeros((), dtype=torch.float64, device=self.device), 0

    @torch.no_grad()
    def update(self, out: Any, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * len(y)
        self.n += len(y)

    def compute(self) -> dict[str, float]:
        return {"loss": float(self.loss_sum) / max(self.n, 1)}


# --- helpers the tasks share ------------------------------------------------------------------------


def top_classes(logits: torch.Tensor, names: list[str] | None, top: int) -> list[dict[str, Any]]:
    """The ``top`` classes of one row of logits: label, index and softmax probability."""
    probs = torch.softmax(logits.float(), -1)
    val, idx = probs.topk(min(top, probs.numel()))
    return [{"label": names[i] if names else str(i), "index": int(i), "prob": float(v)}
            for v, i in zip(val.tolist(), idx.tolist(), strict=True)]


def class_labels(pred: torch.Tensor, true: torch.Tensor, names: list[str]) -> list[tuple[str, bool]]:
    """Per example ``(text, right)``: the predicted class, and the true one where they differ."""
    return [(names[p], True) if p == t else (f"{names[p]}\n(true: {names[t] if t >= 0 else '?'})", False)
            for p, t in zip(pred.tolist(), true.tolist(), strict=True)]


@torch.no_grad()
def eval_outputs(model: nn.Module, info: DataInfo, x_raw: torch.Tensor) -> torch.Tensor:
    """The model's outputs (float32, CPU) for raw inputs, normalised as in training, in eval mode."""
    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return model(info.normalize_x(x_raw).to(device)).float().cpu()
    finally:
        model.train(was)


class MeanTally:
    """Sample-weighted means of the loss and named statistics (a GAN's d_loss/g_loss, GRPO's reward and
    KL), on the device until ``compute``; values may be tensors or plain numbers."""

    def __init__(self, device: torch.device, names: list[str]) -> None:
        self.device, self.names = device, names
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=self.device)
        self.n = 0

    @torch.no_grad()
    def update(self, out: dict[str, Any], y: torch.Tensor, loss: torch.Tensor) -> None:
        vals = [loss.detach().double().reshape(()), *(torch.as_tensor(out[k], dtype=torch.float64,
                                                                      device=self.device) for k in self.names)]
        self.sums += torch.stack(vals) * len(y)
        self.n += len(y)

    def compute(self) -> dict[str, float]:
        return dict(zip(["loss", *self.names], (self.sums / max(self.n, 1)).tolist(), strict=True))


def build_task(info: DataInfo, loss_fn, recipe: Recipe) -> Task:
    return TASKS.get(info.task).fn(info, loss_fn, recipe)


def task_class(name: str) -> type[Task]:
    """The registered class of task ``name``: its attributes answer without data (is_classification,
    headline_metric, ...). An unknown name is an error that lists the registered tasks."""
    return TASKS.get(name).fn


def task_names() -> list[str]:
    return TASKS.names()


from liandan.training.tasks import (  # noqa: E402,F401  (sibling modules register their tasks on import)
    generative,  # gan, diffusion
    language,  # lm, mlm
    sft,  # sft (pre-trained causal models on chats)
    spans,  # token_classify, extractive_qa (pre-trained models on tagged words, questions)
    supervised,  # classify, regress
    text,  # text_classify (pre-trained models on labelled texts)
    vision_language,  # contrastive, caption
)
