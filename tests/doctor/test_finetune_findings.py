"""The fine-tuning findings (issue 18): catastrophic_forgetting (measured on the base's held-out
data), sft_prompt_loss (data.train_on_prompt) and chat_template_missing (data.chat_template), with
the data options they rest on. The bench's quick cases run in test_rules.py; these test the
measurements against independent computations and the silence on healthy fine-tunes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liandan.data.pipeline import build_data
from liandan.data.text import IGNORE
from liandan.doctor.forgetting import _same_io, lost_share, skill
from liandan.doctor.rules._signal import signal
from liandan.doctor.view import RunView, view_from_run_dir
from liandan.errors import LiandanError
from liandan.recipe import DataConfig, load_recipe
from liandan.registry import RULES
from tests.models import hf_tiny

FAST = {"train.tensorboard": False, "train.threads": 1, "report": False}
BLOBS = {"source": "blobs", "n": 600, "classes": 4, "features": 8}
MLP = {"name": "mlp", "hidden": [32]}


def _train(recipe: dict, out: Path, **ov):
    from liandan.training.api import train

    return train(recipe, overrides={**FAST, **ov}, out=out, quiet=True)


def _findings(run) -> list[str]:
    return [f["code"] for f in json.loads((run.dir / "doctor.json").read_text())["findings"]]


def _forgetting(run_dir: Path) -> dict:
    recs = [json.loads(line) for line in (run_dir / "doctor_probes.jsonl").read_text().splitlines()]
    return next(r for r in recs if r.get("type") == "forgetting")


# --- catastrophic_forgetting ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs_base(tmp_path_factory) -> Path:
    rc = {"name": "base", "data": {**BLOBS, "seed": 0}, "model": MLP, "optim": {"name": "adam", "lr": 1e-2},
          "train": {"epochs": 8}}
    return _train(rc, tmp_path_factory.mktemp("ft") / "base", **{"doctor.enabled": False}).dir


def test_forgetting_is_measured_against_the_base_and_fires_on_a_shifted_fine_tune(blobs_base, tmp_path):
    from liandan.data.loaders import TensorBatches
    from liandan.training.loop import evaluate
    from liandan.training.run import load_run

    rc = {"name": "shift", "data": {**BLOBS, "seed": 7}, "model": {**MLP, "from_run": str(blobs_base)},
          "optim": {"name": "adam", "lr": 1e-2}, "train": {"epochs": 8}}
    run = _train(rc, tmp_path / "shift")
    rec = _forgetting(run.dir)
    base = load_run(blobs_base)
    # the base's number is its own final validation accuracy (the split holds 60 < 512 samples)
    assert rec["metric"] == "accuracy" and rec["samples"] == base.info.sizes["val"]
    assert rec["base"] == pytest.approx(base.summary["final"]["val"]["accuracy"])
    # the fine-tune's: its model on the base's raw validation inputs, standardised with its own statistics
    data = base.load_data()
    v = data.eval_batches("val")
    raw = v.x * torch.tensor(base.info.x_std) + torch.tensor(base.info.x_mean)
    mine = (raw - torch.tensor(run.info.x_mean)) / torch.tensor(run.info.x_std)
    from liandan.training.setup import build_loss

    ft = load_run(run.dir)
    _, loss_fn = build_loss(base.recipe.loss, base.info.task)
    want = evaluate(ft.model, TensorBatches(mine, v.y, 64), loss_fn, base.info, torch.device("cpu"))["accuracy"]
    assert rec["tuned"] == pytest.approx(want, abs=1e-6)
    assert lost_share(rec) > 0.75  # measured 0.87-1.31 over seeds: new centres, the old ones forgotten
    assert "catastrophic_forgetting" in _findings(run)
    f = next(f for f in json.loads((run.dir / "doctor.json").read_text())["findings"]
             if f["code"] == "catastrophic_forgetting")
    patches = [x["patch"] for x in f["fixes"] if x["patch"]]
    assert patches[0] == {"adapter": {"name": "lora", "r": 8, "alpha": 16}}  # full fine-tuning: an adapter first
    assert {"optim.lr": 0.001} in patches
    for p in patches:  # every patch is a valid recipe override
        load_recipe(run.recipe, p)


def test_forgetting_post_hoc_measures_from_the_weights_and_a_same_data_fine_tune_is_silent(blobs_base, tmp_path):
    from liandan.doctor.examine import diagnose_run_dir

    rc = {"name": "more", "data": {**BLOBS, "n": 1500, "seed": 0}, "model": {**MLP, "from_run": str(blobs_base)},
          "optim": {"name": "adam", "lr": 3e-3}, "train": {"epochs": 3}}
    run = _train(rc, tmp_path / "more", **{"doctor.enabled": False})
    doc = diagnose_run_dir(run.dir)  # no probe log: the forgetting record is measured from the saved weights
    assert doc["findings"] == []
    view = view_from_run_dir(run.dir)
    sig = signal("catastrophic_forgetting", view)
    assert not sig.fires and sig.find("skill_lost").value < 0.1  # the same centres: nothing forgotten


def test_comparison_needs_the_same_inputs_and_outputs():
    base = {"task": "classify", "num_classes": 4, "class_names": list("0123"), "vocab_size": 0, "input_shape": [8]}
    assert _same_io(base, dict(base), "classify") is None
    assert "task" in _same_io(base, dict(base), "regress")
    assert "input_shape" in _same_io(base, {**base, "input_shape": [9]}, "classify")
    tokens = {**base, "vocab_size": 20, "input_shape": [12]}
    assert _same_io(tokens, {**tokens, "input_shape": [7]}, "classify") is None  # token rows: any length
    # the strictest metric with real skill: exact match unless it sits near chance
    assert skill({"exact_match": 0.9, "accuracy": 0.95}, {})[0] == "exact_match"
    assert skill({"exact_match": 0.05, "accuracy": 0.8}, {})[0] == "accuracy"
    assert skill({"accuracy": 0.3}, {"accuracy": 0.25}) is None  # 7 % of the way from chance: no skill


def test_rule_is_silent_without_a_fine_tune():
    rc = load_recipe({"data": {"source": "blobs"}, "model": {"name": "mlp"}})
    view = RunView(rc, "classify", 4, (2,), [], extra={"info": {}})
    assert not signal("catastrophic_forgetting", view).fires
    assert view.records == []  # nothing measured
    # a fine-tune meant to replace the base's task: doctor.forgetting false, nothing measured either
    off = load_recipe(rc, {"model.from_run": "runs/nowhere", "doctor.forgetting": False})
    view = RunView(off, "classify", 4, (2,), [], extra={"info": {}, "model": object()})
    assert not signal("catastrophic_forgetting", view).fires and view.records == []


# --- sft_prompt_loss and chat_template_missing --------------------------------------------------------------


def _toy(**kw):
    return build_data(DataConfig(source="instructions", n=60, batch_size=8, **kw), seed=0)


def test_train_on_prompt_false_leaves_the_prompt_out_of_the_loss_and_true_puts_it_in():
    off, on = _toy(system=6), _toy(system=6, train_on_prompt=True)
    tok = off.source.tokenizer.hf
    assert torch.equal(off.source.x, on.source.x)  # the same rendered chats
    assistant = tok.convert_tokens_to_ids("[assistant]")
    for x, y in zip(off.source.x, off.source.y, strict=True):
        first = int((y != IGNORE).nonzero()[0])
        assert int(x[first]) == assistant  # the first learned target follows the assistant tag: no prompt token
    y_on, y_off = on.source.y, off.source.y
    assert ((y_on != IGNORE) | (on.source.x == tok.pad_token_id)).all()  # train_on_prompt: every token learned
    assert torch.equal(y_on[y_off != IGNORE], y_off[y_off != IGNORE])  # the responses' targets are the same
    # the doctor's share: learned targets that are not the assistant's
    share = 1 - (y_off != IGNORE).sum().item() / (y_on != IGNORE).sum().item()
    assert on.info.extras["prompt_label_share"] == pytest.approx(share)
    assert off.info.extras["prompt_label_share"] == 0.0


def _view(facts: dict, source: dict | None = None) -> RunView:
    rc = load_recipe({"data": source or {"source": "instructions"}, "model": {"name": "gpt"}})
    return RunView(rc, "lm", 0, (12,), [], extra={"info": {"extras": facts}})


def test_prompt_loss_and_template_rules_read_the_data_facts():
    f = RULES.get("sft_prompt_loss").fn(_view({"prompt_label_share": 0.8, "chat_template": True}))
    assert f.code == "sft_prompt_loss" and f.fixes[0].patch == {"data.train_on_prompt": False}
    assert RULES.get("sft_prompt_loss").fn(_view({"prompt_label_share": 0.3})) is None
    assert RULES.get("chat_template_missing").fn(_view({"chat_template": True})) is None
    f = RULES.get("chat_template_missing").fn(_view({"chat_template": False}))
    assert f.fixes[0].patch == {"data.chat_template": True}  # the toy source's switch
    rec = {"source": "records", "path": "chats.jsonl", "tokenizer": "gpt2-dir"}
    f = RULES.get("chat_template_missing").fn(_view({"chat_template": False}, rec))
    from liandan.data.chat import PLAIN_TEMPLATE

    assert f.fixes[0].patch == {"data.chat_template": PLAIN_TEMPLATE}  # records: a template text
    for code in ("sft_prompt_loss", "chat_template_missing"):  # no chat records: nothing to say
        assert not signal(code, _view({})).fires


class _Tiny(dict):
    """arch -> a tiny Hugging Face model directory, written on first use."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, arch: str) -> str:
        self[arch] = str(hf_tiny.write(self.root, arch))
        return self[arch]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    return _Tiny(tmp_path_factory.mktemp("hf"))


def _chats(path: Path, n: int = 24) -> str:
    s = hf_tiny.sentences(2 * n)
    path.write_text("".join(json.dumps({"prompt": s[2 * i], "response": s[2 * i + 1]}) + "\n" for i in range(n)))
    return str(path)


def test_chat_template_option_renders_a_tokenizer_without_one(tiny, tmp_path):
    from liandan.data.chat import PLAIN_TEMPLATE
    from liandan.models.hf_pretrained import load_tokenizer

    path = _chats(tmp_path / "c.jsonl")
    cfg = {"source": "records", "path": path, "tokenizer": tiny["gpt2"], "batch_size": 8}
    raw = build_data(DataConfig(**cfg), seed=0)
    assert raw.info.extras["chat_template"] is False
    (tmp_path / "t.jinja").write_text(PLAIN_TEMPLATE)
    for given in (PLAIN_TEMPLATE, str(tmp_path / "t.jinja")):
        dm = build_data(DataConfig(**cfg, chat_template=given), seed=0)
        assert dm.info.extras["chat_template"] is True
        hf = dm.source.tokenizer.to_hf()
        assert hf.chat_template == PLAIN_TEMPLATE
        x, y = dm.source.x[0], dm.source.y[0]
        text = hf.decode(x[: int((y != IGNORE).nonzero()[0]) + 1])
        assert text.startswith("<|endoftext|>[user]") and "[assistant]" in text  # the template's tags render
    assert load_tokenizer(tiny["gpt2"]).chat_template is None  # the shared tokenizer is not edited
    with pytest.raises(LiandanError, match="chat_template"):
        build_data(DataConfig(**cfg, chat_template=str(tmp_path / "missing.jinja")), seed=0)
    with pytest.raises(LiandanError, match="does not render"):
        build_data(DataConfig(**cfg, chat_template="{% for m in messages %}{{ m['content'] }"), seed=0)
    with pytest.raises(LiandanError, match="serve sft"):
        build_data(DataConfig(source="records", path=path, tokenizer=tiny["gpt2"], task="text_classify",
                              fields={"text": "prompt", "label": "response"}, train_on_prompt=True), seed=0)


@pytest.mark.slow
def test_healthy_sft_on_tiny_llama_is_silent_and_gpt2_without_template_is_named(tiny, tmp_path):
    path = _chats(tmp_path / "c.jsonl", 80)
    rc = {"name": "sft", "data": {"source": "records", "path": path, "batch_size": 8},
          "model": {"name": "hf", "path": tiny["llama"]}, "optim": {"name": "adamw", "lr": 1e-3},
          "train": {"epochs": 2}}
    mine = {"catastrophic_forgetting", "sft_prompt_loss", "chat_template_missing"}
    assert not mine & set(_findings(_train(rc, tmp_path / "llama")))
    gpt2 = {**rc, "model": {"name": "hf", "path": tiny["gpt2"]}}
    assert "chat_template_missing" in _findings(_train(gpt2, tmp_path / "gpt2"))
    fixed = _train(gpt2, tmp_path / "gpt2-fixed", **{"data.chat_template": "{{ bos_token or '' }}"
                   "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
                   "{% if add_generation_prompt %}assistant: {% endif %}"})
    assert "chat_template_missing" not in _findings(fixed)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(fixed.dir / "hf")).chat_template  # RUN/hf keeps the template


# --- lora_rank_too_low ----------------------------------------------------------------------------------------


def test_rank_probe_is_the_same_run_at_16x_rank_and_its_finding_raises_the_rank(quick_bench):
    from tests.doctor.conftest import run_dir

    d = run_dir(quick_bench, "lora_rank1_spirals_two_turns")
    recs = [json.loads(line) for line in (d / "doctor_probes.jsonl").read_text().splitlines()]
    probe = next(r for r in recs if r.get("type") == "rank_probe")
    view = view_from_run_dir(d)
    assert (probe["rank"], probe["probe_rank"], probe["steps"]) == (1, 16, view.steps[-1])
    assert view.quality() < 0.6 <= probe["probe_quality"]  # the run misses the bar the larger rank clears
    f = next(f for f in json.loads((d / "doctor.json").read_text())["findings"] if f["code"] == "lora_rank_too_low")
    assert f["fixes"][0]["patch"] == {"adapter.r": 4, "adapter.alpha": 8}  # α/r kept
    assert "underfitting" not in [x["code"] for x in json.loads((d / "doctor.json").read_text())["findings"]]


def test_rank_rule_needs_a_rank_and_a_run_that_learns_poorly():
    from liandan.doctor.rules.lora_rank_too_low import rank_of

    base = {"data": {"source": "spirals"}, "model": {"name": "mlp"}}
    assert rank_of(RunView(load_recipe(base), "classify", 3, (2,), [])) is None  # no adapter
    lora = load_recipe({**base, "adapter": {"name": "lora", "r": 2}})
    assert rank_of(RunView(lora, "classify", 3, (2,), [])) == (2, 16.0)  # α: the builder's default
    good = [{"type": "epoch", "epoch": 0, "train": {"loss": 0.1, "accuracy": 0.98},
             "val": {"loss": 0.1, "accuracy": 0.97}}]
    view = RunView(lora, "classify", 3, (2,), good)
    assert not signal("lora_rank_too_low", view).fires and view.records == good  # no probe trained
