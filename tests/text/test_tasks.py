"""The lm and mlm tasks (registry-driven over the tasks this package adds): losses, tallies,
dynamic masking, and whole runs through the trainer."""

from __future__ import annotations

import math

import pytest
import torch

import liandan
from liandan.data.pipeline import DataInfo
from liandan.data.text import IGNORE, mask_tokens
from liandan.data.tokenize import NUM_SPECIAL
from liandan.registry import TASKS

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
V = 30


def _info(task: str, mask_prob: float = 0.15) -> DataInfo:
    return DataInfo(source="t", task=task, num_classes=0, input_shape=(10,), vocab_size=V, max_len=10, pad_id=0,
                    num_special=NUM_SPECIAL, mask_prob=mask_prob)


def _targets(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 10, V, generator=g)  # (B, T, V)
    y = torch.randint(0, V, (6, 10), generator=g)
    y[:, 7:] = IGNORE
    y[0] = IGNORE  # a sequence with nothing to learn counts for nothing
    y[1, :7] = logits[1, :7].argmax(-1)  # one sequence all right
    return logits, y


@pytest.mark.parametrize("name", ["lm", "mlm"])
def test_tally_is_token_weighted(name: str) -> None:
    task = TASKS.get(name).fn(_info(name), None, None)
    assert task.default_loss is None and set(task.metric_names()) <= {"accuracy", "perplexity", "exact_match"}
    tally = task.tally(torch.device("cpu"))
    all_logits, all_y = [], []
    for seed in range(3):
        logits, y = _targets(seed)
        net = _Fixed(logits).eval()
        loss, out = task.forward(net, torch.zeros(6, 10, dtype=torch.int64), y)
        tally.update(out, y, loss)
        all_logits.append(logits)
        all_y.append(y)
    logits, y = torch.cat(all_logits), torch.cat(all_y)
    m = tally.compute()
    learned = y != IGNORE
    ce = torch.nn.functional.cross_entropy(logits[learned], y[learned])
    assert m["loss"] == pytest.approx(float(ce), rel=1e-6)
    assert m["perplexity"] == pytest.approx(math.exp(float(ce)), rel=1e-6)
    assert m["accuracy"] == pytest.approx(float((logits.argmax(-1)[learned] == y[learned]).float().mean()))
    if name == "lm":
        assert m["exact_match"] == pytest.approx(3 / 15)  # row 1 of each batch, of 5 rows with targets


class _Fixed(torch.nn.Module):
    """Returns fixed logits and remembers its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.seen = logits, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.logits


def test_mlm_redraws_masks_in_training_and_keeps_them_in_eval() -> None:
    task = TASKS.get("mlm").fn(_info("mlm"), None, None)
    ids = torch.randint(NUM_SPECIAL, V, (64, 10), generator=torch.Generator().manual_seed(0))
    x, y = mask_tokens(ids, 0.15, V, torch.Generator().manual_seed(1))
    net = _Fixed(torch.zeros(64, 10, V))
    net.eval()
    task.forward(net, x, y)
    assert torch.equal(net.seen[-1], x)  # val/test: the source's fixed masks
    net.train()
    _, (_, y1) = task.forward(net, x, y)
    _, (_, y2) = task.forward(net, x, y)
    x1, x2 = net.seen[-2:]
    assert not torch.equal(x1, x2) and not torch.equal(y1, y2)
    for xi, yi in ((x1, y1), (x2, y2)):  # every fresh masking is of the same original tokens
        assert torch.equal(torch.where(yi != IGNORE, yi, xi)[yi != IGNORE], ids[yi != IGNORE])
        assert torch.equal(xi[(yi == IGNORE)], ids[yi == IGNORE])
    static = TASKS.get("mlm").fn(_info("mlm", mask_prob=0.0), None, None)
    loss, out = static.forward(net, x, y)
    assert torch.equal(net.seen[-1], x) and torch.is_tensor(out)


def test_llama_lm_run_saves_tokenizer_and_hf(tmp_path) -> None:
    run = liandan.train("arith-gpt", overrides=[*FAST, "data.n=400", "train.epochs=1", "model.style=llama",
                                                "model.dim=32"], out=tmp_path / "r", quiet=True)
    test = run.summary["final"]["test"]
    assert run.status == "completed" and {"accuracy", "perplexity", "exact_match"} <= set(test)
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "r" / "hf")
    assert type(hf).__name__ == "LlamaForCausalLM"
    again = liandan.load_run(tmp_path / "r")
    x = run.data.source.x[:4]
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), run.model.eval()(x))


@pytest.mark.slow
def test_bert_classifies_grammaticality(tmp_path) -> None:
    run = liandan.train({"data": {"source": "grammar", "n": 2000, "batch_size": 32}, "task": "classify",
                         "model": {"name": "bert", "layers": 1, "dim": 64, "heads": 4}, "optim": {"lr": 1e-3},
                         "schedule": {"name": "cosine", "warmup_steps": 50}, "train": {"epochs": 5}},
                        overrides=FAST, out=tmp_path / "r", quiet=True)
    # chance 0.5; these 5 epochs reach 0.80, 8 epochs of a 2-layer model on 3,000 sentences 0.997
    assert run.info.task == "classify" and run.summary["final"]["test"]["accuracy"] > 0.65


def test_dynamic_masking_resumes_exactly(tmp_path) -> None:
    """The masks are drawn from the RNG the checkpoint saves: 1 epoch + resume = 2 epochs straight."""
    recipe = {"data": {"source": "grammar", "n": 600, "batch_size": 32},
              "model": {"name": "bert", "layers": 1, "dim": 32, "heads": 2}, "train": {"epochs": 2}}
    straight = liandan.train(recipe, overrides=FAST, out=tmp_path / "a", quiet=True)
    liandan.train(recipe, overrides=[*FAST, "train.epochs=1"], out=tmp_path / "b", quiet=True)
    resumed = liandan.resume(tmp_path / "b", quiet=True, epochs=2)
    assert resumed.summary["final"]["val"] == straight.summary["final"]["val"]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("preset", "model"), [("grammar-bert", "gpt"), ("arith-gpt", "bert")])
def test_a_model_for_another_task_is_a_one_line_error(preset: str, model: str, cli, tmp_path) -> None:
    code, _, err = cli("train", preset, "--set", f"model.name={model}", "--set", "data.n=100",
                       "--out", str(tmp_path / "r"), "-q")
    assert code == 2 and err.startswith("error: model") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
