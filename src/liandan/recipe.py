"""The recipe: one YAML file describing data, model, loss, optimizer, schedule and training.

Validated by pydantic: unknown keys, wrong types and unknown registry names are errors that
name the key and list the allowed values. Registry options (``model: {name: mlp, hidden: ...}``)
sit beside the name and are checked against the builder's signature. Code past this module
reads the typed :class:`Recipe`, never raw dicts.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from liandan.errors import LiandanError, did_you_mean

PRESET_DIR = "presets"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Options(BaseModel):
    """A section naming a registry entry; extra keys are that entry's options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class DataConfig(_Options):
    source: str = Field(description="data source name (liandan list data)")
    split: list[float] = Field([0.8, 0.1, 0.1], description="train/val/test fractions (stratified, seeded)")
    batch_size: int = Field(64, gt=0, description="samples per batch")
    augment: list[str] = Field([], description="train-only augmentations: hflip, vflip, crop:PAD, noise:STD")
    normalize: bool = Field(True, description="standardise inputs with training-split statistics")
    eval_batch_size: int | None = Field(None, gt=0, description="batch size for val/test (default: 4×batch_size)")
    num_workers: int = Field(0, ge=0, description="DataLoader workers for file-backed sources")

    @model_validator(mode="after")
    def _check_split(self) -> DataConfig:
        s = self.split
        if len(s) not in (2, 3) or any(f < 0 for f in s) or abs(sum(s) - 1.0) > 1e-6 or s[0] <= 0:
            raise ValueError(f"split must be 2 or 3 non-negative fractions summing to 1, got {s}")
        return self


# Weight initialisation schemes a recipe may name (liandan.models._init implements them).
INIT_SCHEMES = (
    "default", "zeros", "constant", "normal", "uniform", "xavier_uniform", "xavier_normal",
    "kaiming_uniform", "kaiming_normal", "orthogonal",
)


class ModelConfig(_Options):
    name: str = Field(description="model name (liandan list models), or user code package.module:ClassName "
                      "(an nn.Module class or a builder, given the options; needs trust: true)")
    trust: bool = Field(False, description="allow importing the user code name names (a recipe then runs "
                        "code: only for code you trust; CLI: --trust)")
    init: str = Field("default", description="weight init: default, zeros, constant, normal, uniform, "
                      "xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, orthogonal")
    init_std: float = Field(0.01, gt=0, description="std (normal) or bound (uniform) for init")
    init_value: float = Field(0.1, description="value for constant init")
    reparam: Literal["none", "weight", "spectral"] = Field(
        "none", description="wrap Linear/Conv weights in weight normalisation or spectral normalisation")
    from_run: str | None = Field(None, description="fine-tune: start from this run directory's trained "
                                 "weights (same model options) instead of the init")
    weights: str | None = Field(None, description="transfer learning: start from this state dict (.safetensors, "
                                "or .pth/.pt read with weights_only), in liandan's or torchvision's/timm's key "
                                "names (resnet, vgg, mobilenet_v2); the head is replaced when the class count "
                                "differs")
    freeze: str | list[str] = Field("none", description="parameters that do not train: none, backbone (all but "
                                    "the classifier head), or a list of name patterns (fnmatch)")
    unfreeze_at_epoch: int | None = Field(None, ge=1, description="train every parameter from this epoch on "
                                          "(1-based; gradual unfreezing after the head has settled)")
    output: Literal["logits", "softmax", "sigmoid", "relu", "tanh"] = Field(
        "logits", description="activation applied to the model's output (Keras's Dense(activation=...)); every "
        "loss expects raw logits/values, so anything else is a fault the doctor names (softmax twice, ...)")

    @model_validator(mode="after")
    def _trusted_code(self) -> ModelConfig:
        if ":" in self.name:  # user code: imported only on explicit trust
            if not self.trust:
                raise ValueError(f"{self.name!r} is user code and importing it runs that code; set model.trust: "
                                 f"true (or pass --trust) only for code you trust")
            from liandan.registry import MODELS

            MODELS.allow(self.name)
        return self


class AdapterConfig(_Options):
    name: str | None = Field(None, description="parameter-efficient fine-tuning method (liandan list adapters): "
                             "the base model freezes, only the adapter trains")
    model_config = ConfigDict(extra="allow", validate_assignment=True, populate_by_name=True)

    from_: str | None = Field(None, alias="from", description="start from a peft adapter directory "
                              "(adapter_config.json + adapter_model.safetensors); its config gives the method, "
                              "rank and targets")

    @model_validator(mode="after")
    def _method_or_directory(self) -> AdapterConfig:
        if self.name is None and self.from_ is None:
            raise ValueError("adapter needs a name (liandan list adapters) or from: a peft adapter directory")
        if self.from_ is not None and self.options:
            raise ValueError(f"adapter.from takes its options from the peft config; drop {sorted(self.options)}")
        return self


class LossConfig(_Options):
    name: str | None = Field(None, description="loss name (default from the task: cross_entropy or mse)")
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights (sum |w|), added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights (sum w²), added to the loss")


class OptimConfig(_Options):
    name: str = Field("adamw", description="optimizer name (liandan list optimizers)")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.01, ge=0, description="weight decay")
    decay_bias_and_norm: bool = Field(False, description="also decay biases and norm parameters")


class ScheduleConfig(_Options):
    name: str = Field("constant", description="LR schedule name (liandan list schedules)")
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps before the schedule")


class EarlyStoppingConfig(_Section):
    monitor: str = Field("val.loss", description="metric to watch, e.g. val.loss or val.accuracy")
    mode: Literal["auto", "min", "max"] = Field("auto", description="min for losses/errors, max for scores")
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")
    restore_best: bool = Field(True, description="load the best weights when training ends")


class CallbackConfig(_Options):
    name: str = Field(description="registered callback name (liandan list callbacks); other keys are its options")


class TrainConfig(_Section):
    epochs: int = Field(20, ge=0, description="passes over the training split")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="fp32, bf16 autocast, fp16 (CUDA)")
    grad_clip: float | None = Field(None, gt=0, description="clip gradients to this global L2 norm")
    grad_clip_value: float | None = Field(None, gt=0, description="clip each gradient element to ±value")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step")
    early_stopping: EarlyStoppingConfig | None = Field(None, description="stop when a metric stops improving")
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every N optimizer steps (0: epochs only)")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints to keep")
    max_bad_steps: int = Field(10, ge=1, description="consecutive non-finite steps before status diverged")
    log_every: int = Field(10, ge=1, description="write a train row to metrics.csv every N steps")
    final_eval: list[Literal["train", "val", "test"]] = Field(
        ["train", "val", "test"], description="splits evaluated once more at the end, into summary.json's final "
        "(a step-capped fine-tune may skip train: a pass over the whole split can cost more than the training)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: chosen by model size)")
    tensorboard: bool = Field(True, description="write TensorBoard event files under tb/")
    compile: bool = Field(False, description="torch.compile the model (pays on GPUs; on a small CPU it "
                          "was slower than eager for every model in bench/compile.py)")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="data parallelism under torchrun: ddp or fsdp")
    channels_last: bool | None = Field(None, description="NHWC memory format for convolutional image models "
                                       "(default: on for CPU, where oneDNN's NHWC convolutions are faster)")
    callbacks: list[CallbackConfig] = Field([], description="extra training callbacks by registered name, e.g. "
                                            "[{name: model_checkpoint, every: 100}]; one of a built-in's kind "
                                            "replaces that default")


class DoctorConfig(_Section):
    enabled: bool = Field(True, description="watch the run and write doctor.json")
    auto_fix: bool = Field(False, description="apply the top fix and retrain when a finding appears")
    max_rounds: int = Field(3, ge=1, description="repair rounds for auto_fix")
    probe_every: int | None = Field(None, ge=1, description="probe every N steps (default: every "
                                    "⌈1.5 / probe_budget⌉ steps, denser in the first epoch)")
    probe_budget: float = Field(0.02, gt=0, le=1, description="share of training time the probes may take")
    forgetting: bool = Field(True, description="at the end of a fine-tune (model.from_run) on new data, measure "
                             "the base run's skill on its own held-out data (catastrophic_forgetting); false: the "
                             "fine-tune is meant to replace the base's task")
    memory: str | None = Field(None, description="SQLite file of past findings and fixes "
                               "(default: $LIANDAN_HOME/memory.db, else ~/.liandan/memory.db)")


class Recipe(_Section):
    name: str = Field("run", description="run name (the run directory is runs/<name>-<timestamp>)")
    seed: int = Field(0, description="seed for splits, init, data order and dropout")
    task: str = Field("auto", description="auto: from the data source; else a registered task "
                      "(classify, regress, lm, mlm, caption, contrastive, gan, diffusion, ...)")
    data: DataConfig
    model: ModelConfig
    adapter: AdapterConfig | None = Field(None, description="PEFT adapter, e.g. {name: lora, r: 8} (with "
                                          "model.from_run to fine-tune a trained run)")
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    doctor: DoctorConfig = Field(default_factory=DoctorConfig)
    report: bool = Field(True, description="write report.html at the end of the run")

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", by_alias=True)  # adapter.from, as recipes write it
        if not d["train"]["callbacks"]:  # recipe.yaml of a run without any stays as it was
            del d["train"]["callbacks"]
        return d

    def to_yaml(self, header: str | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)
        return (f"# {header}\n" if header else "") + text


# ---------------------------------------------------------------------------------------------
# loading


def preset_names() -> list[str]:
    root = resources.files("liandan") / PRESET_DIR
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return (resources.files("liandan") / PRESET_DIR / f"{name}.yaml").read_text()


def load_dict(source: str | Path | dict) -> dict[str, Any]:
    """A recipe file path, a preset name, or a dict -> raw dict (not yet validated)."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    if path.is_dir() and (path / "recipe.yaml").is_file():
        path = path / "recipe.yaml"
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise LiandanError(f"recipe file not found: {path}")
        from liandan.paths import read_text

        text = read_text(path, "recipe file")  # checked against the agents' roots when they are active
    elif str(source) in preset_names():
        text = preset_text(str(source))
    else:
        names = preset_names()
        raise LiandanError(
            f"no recipe file or preset named {str(source)!r}{did_you_mean(str(source), names)}; "
            f"presets: {', '.join(names)}"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LiandanError(f"{source}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise LiandanError(f"{source}: a recipe is a YAML mapping, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides; values are parsed as YAML (``3e-4``, ``[64, 32]``, ``null``)."""
    if not overrides:
        return raw
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, value in items:
        parts = key.split(".")
        if not all(parts):
            raise LiandanError(f"override {key!r}: empty key segment")
        node = raw
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise LiandanError(f"override {key!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return raw


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise LiandanError(f"override {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise LiandanError(f"override {text!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads 3e-4 as a string; try a number first
        try:
            parsed = float(parsed) if any(c in parsed for c in ".eE") else int(parsed)
        except ValueError:
            pass
    return key, parsed


def validate(raw: dict[str, Any], *, check_registries: bool = True) -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
    except pydantic.ValidationError as e:
        raise LiandanError(_format_validation_error(e)) from None
    if check_registries:
        check_names(recipe)
    return recipe


def load_recipe(source: str | Path | dict | Recipe, overrides: list[str] | dict | None = None) -> Recipe:
    """Load a recipe from a file, a preset name, a dict or a Recipe, then apply ``overrides``."""
    if isinstance(source, Recipe):
        source = source.to_dict()
    raw = load_dict(source)
    resolve_data_paths(raw, _recipe_folder(source))
    raw = apply_overrides(raw, overrides)
    resolve_data_paths(raw, Path.cwd())  # an override's relative path: from where the command runs
    fill_model_implied(raw)
    return validate(raw)


DATA_PATH_KEYS = ("path", "val", "test")  # data options naming files, where the source takes them


def _recipe_folder(source: str | Path | dict) -> Path:
    """The folder relative data paths resolve against: the recipe file's, else the current one."""
    if isinstance(source, dict):
        return Path.cwd()
    path = Path(source)
    if path.is_dir() and (path / "recipe.yaml").is_file():
        path = path / "recipe.yaml"
    return path.absolute().parent if path.is_file() else Path.cwd()


def resolve_data_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the data section's relative file paths absolute, resolved against ``base`` (the recipe
    file's folder), so a run's recipe.yaml works from any folder. A relative path found only from
    the current folder (a run recorded before paths were stored resolved) keeps that meaning."""
    from liandan.registry import DATA, MODELS

    data = raw.get("data")
    try:
        takes = DATA.get(data["source"]).options() if isinstance(data, dict) and isinstance(
            data.get("source"), str) else {}
    except LiandanError:
        takes = {}  # an unknown source: validation names it
    data = data if isinstance(data, dict) else {}
    for key in DATA_PATH_KEYS:
        value = data.get(key)
        if key in takes and isinstance(value, str) and value and "://" not in value:
            data[key] = _resolved(value, base)
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str) and ":" not in str(model.get("name", ":")):
        try:
            takes_path = "path" in MODELS.get(model["name"]).options()
        except LiandanError:
            return
        if takes_path:  # a model directory (a hub id that names no folder stays as it is)
            model["path"] = _resolved(model["path"], base, existing_only=True)


def _resolved(value: str, base: Path, existing_only: bool = False) -> str:
    """``value`` made absolute against ``base`` (else the current folder, where only it exists);
    ``existing_only``: left as it is unless one of them exists (a name rather than a path)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return value
    here = base / p
    if existing_only and not here.exists() and not p.exists():
        return value
    return str(here if here.exists() or not p.exists() else p.absolute())


def fill_model_implied(raw: dict[str, Any]) -> None:
    """Fill the data options the model implies (its registry entry's ``data_options``, e.g. a
    pre-trained model's tokenizer for ``data.tokenizer``) where the data source takes them from a
    model (its entry's ``model_options``) and the recipe leaves them out: the reverse of the model
    options the data implies. Written into the run's recipe.yaml, so the run rebuilds its data the
    same way."""
    model, data = raw.get("model"), raw.get("data")
    if not (isinstance(model, dict) and isinstance(data, dict) and isinstance(model.get("name"), str)
            and isinstance(data.get("source"), str)) or ":" in model["name"]:  # user code: not imported here
        return
    from liandan.registry import DATA, MODELS

    try:
        implied = MODELS.get(model["name"]).extra.get("data_options")
        takes = DATA.get(data["source"]).extra.get("model_options", ())  # what the source takes from a model
    except LiandanError:
        return  # an unknown name: validation names it
    for key, value in (implied(model) if implied else {}).items():
        if key in takes and data.get(key) is None:
            data[key] = value


def _format_validation_error(e: pydantic.ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "recipe"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        section = _section_for(err["loc"][:-1])
        allowed = sorted(section.model_fields) if section else []
        hint = did_you_mean(str(err["loc"][-1]), allowed)
        return f"unknown key {loc!r}{hint}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return f"missing required key {loc!r}"
    got = err.get("input")
    got_s = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"{loc}: {msg.removeprefix('Value error, ')} (got {got_s[:60]})"


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        if args:
            ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def check_names(recipe: Recipe) -> None:
    """Check registry names and options (imports the registries, hence torch)."""
    from liandan.registry import DATA, INFERRED, LOSSES, MODELS, OPTIMIZERS, SCHEDULES

    DATA.get(recipe.data.source).validate(recipe.data.options, where="data")
    MODELS.get(recipe.model.name).validate(recipe.model.options, where="model", inferred=INFERRED)
    if recipe.model.init not in INIT_SCHEMES:
        raise LiandanError(f"model.init: unknown init {recipe.model.init!r}; available: {', '.join(INIT_SCHEMES)}")
    if recipe.adapter is not None and recipe.adapter.name is not None:
        from liandan.registry import ADAPTERS

        ADAPTERS.get(recipe.adapter.name).validate(recipe.adapter.options, where="adapter")
    if recipe.loss.name is not None:
        LOSSES.get(recipe.loss.name).validate(recipe.loss.options, where="loss")
    OPTIMIZERS.get(recipe.optim.name).validate(recipe.optim.options, where="optim")
    SCHEDULES.get(recipe.schedule.name).validate(recipe.schedule.options, where="schedule")
    if recipe.train.callbacks:
        from liandan.registry import CALLBACKS

        for i, c in enumerate(recipe.train.callbacks):
            CALLBACKS.get(c.name).validate(c.options, where=f"train.callbacks[{i}]")
    if recipe.train.precision == "fp16" and recipe.train.device == "cpu":
        raise LiandanError("train.precision: fp16 needs a CUDA GPU (GradScaler); use bf16 on CPU")
