"""Sampling filters against transformers' warpers, seeded determinism, greedy decoding, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import liandan
from liandan.generation.text import next_token, sample_tokens, top_k_filter, top_p_filter

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_top_k_matches_transformers(k: int) -> None:
    from transformers.generation.logits_process import TopKLogitsWarper

    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(k))
    ours = top_k_filter(logits, k)
    ref = TopKLogitsWarper(k)(None, logits.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(ref)) and torch.equal(ours[~ours.isinf()], ref[~ref.isinf()])
    assert (~ours.isinf()).sum(-1).eq(k).all()


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99])
def test_top_p_matches_transformers(p: float) -> None:
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = 3 * torch.randn(16, 30, generator=torch.Generator().manual_seed(int(p * 100)))
    ours = top_p_filter(logits, p)
    ref = TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    kept = ours.softmax(-1) > 0
    probs = logits.softmax(-1)
    mass = (probs * kept).sum(-1)
    smallest = torch.where(kept, probs, torch.ones_like(probs)).min(-1).values
    assert (mass >= p - 1e-6).all() and (mass - smallest < p).all()  # the smallest set reaching p (Holtzman)


def test_top_p_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert top_p_filter(logits, 0.7).isinf().tolist() == [[False, False, True, True]]
    assert top_p_filter(logits, 0.5).isinf().tolist() == [[False, True, True, True]]
    assert top_p_filter(logits, 0.81).isinf().tolist() == [[False, False, False, True]]


def test_sampling_follows_temperature_and_is_seeded() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(next_token(logits, 1.0, generator=g), minlength=3) / 4000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.03)
    cold = torch.bincount(next_token(logits, 0.25, generator=g), minlength=3) / 4000
    assert cold[0] > 0.9  # T < 1 sharpens: p ∝ p^(1/T)
    assert next_token(logits[:2], 0.0).tolist() == [0, 0]  # T = 0 is greedy
    a = next_token(logits, 1.0, 2, 0.9, torch.Generator().manual_seed(5))
    b = next_token(logits, 1.0, 2, 0.9, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and set(a.tolist()) <= {0, 1}


class _Counter(torch.nn.Module):
    """A fake LM whose next token is always (last + 1) % V: sampling must reproduce it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * torch.nn.functional.one_hot((x + 1) % 9, 9).float()  # (B, T, V)


def test_sample_stops_at_eos_and_pads() -> None:
    out = sample_tokens(_Counter(), torch.tensor([[5], [0]]), 6, temperature=0, eos=2)
    assert out.tolist() == [[5, 6, 7, 8, 0, 1, 2], [0, 1, 2, 0, 0, 0, 0]]


@pytest.fixture(scope="module")
def arith_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("arith") / "run"
    liandan.train("arith-gpt", overrides=[*FAST, "data.n=600", "train.epochs=1", "model.dim=32"], out=out,
                  quiet=True)
    return out


def test_generate_is_seeded_and_the_cli_prints_it(arith_run, cli) -> None:
    a = liandan.generate(arith_run, "12+34=", max_new_tokens=8, temperature=1.5, seed=1)
    b = liandan.generate(arith_run, "12+34=", max_new_tokens=8, temperature=1.5, seed=1)
    assert a == b and a["finish"] in ("eos", "length") and len(a["tokens"]) <= 8
    code, out, err = cli("generate", str(arith_run), "--prompt", "12+34=", "--max-new-tokens", "8",
                         "--temperature", "1.5", "--seed", "1", "--json")
    assert code == 0 and json.loads(out)["completion"] == a["completion"]
    code, out, _ = cli("generate", str(arith_run), "--prompt", "1+1=", "--top-k", "2", "--top-p", "0.9")
    assert code == 0 and out.startswith("1+1=")
    assert (arith_run / "tokenizer.json").is_file() and (arith_run / "hf" / "config.json").is_file()


def test_exact_match_by_generation_equals_the_teacher_forced_metric(arith_run, cli) -> None:
    res = liandan.exact_match(arith_run, split="test")
    summary = json.loads((arith_run / "summary.json").read_text())
    assert res["n"] == 60 and res["exact_match"] == pytest.approx(summary["final"]["test"]["exact_match"])
    code, out, _ = cli("generate", str(arith_run), "--exact-match", "--json")
    assert code == 0 and json.loads(out)["exact_match"] == res["exact_match"]
    shown = res["examples"]  # the first few problems, right or wrong (the report's table)
    assert len(shown) == 8 and all(e["right"] == (e["got"] == e["expected"]) for e in shown), shown
    assert all(w["got"] != w["expected"] for w in res["wrong_examples"])


def test_cli_errors_are_one_line(tmp_path, cli, arith_run) -> None:
    code, out, err = cli("generate", str(tmp_path / "missing"), "--prompt", "x")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and out == ""
    code, _, err = cli("generate", str(arith_run), "--top-p", "1.5")
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1
    code, _, err = cli("predict", str(arith_run), "1,2,3")  # a language model: the error names the right verb
    assert code == 2 and err.count("\n") == 1 and f"liandan generate {arith_run}" in err


def test_evaluate_cli_reports_the_task_metrics(arith_run, cli) -> None:
    code, out, _ = cli("evaluate", str(arith_run), "--json")
    summary = json.loads((arith_run / "summary.json").read_text())["final"]["test"]
    res = json.loads(out)
    assert code == 0 and res["exact_match"] == pytest.approx(summary["exact_match"])
    assert res["perplexity"] == pytest.approx(summary["perplexity"])


def test_hf_export_generates_what_we_generate(arith_run) -> None:
    """RUN/hf is a plain transformers model + tokenizer: its greedy decoding equals ours."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(arith_run / "hf"))
    hf = AutoModelForCausalLM.from_pretrained(str(arith_run / "hf")).eval()
    ours = liandan.generate(arith_run, "12+34=", max_new_tokens=4, temperature=0)
    ids = torch.tensor([[tok.bos_token_id, *tok.encode("12+34=", add_special_tokens=False)]])
    out = hf.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
    assert out[: len(ours["tokens"])] == ours["tokens"]


def test_exact_match_with_working_judges_the_final_answer(tmp_path) -> None:
    out = tmp_path / "cot"
    liandan.train("arith-gpt", overrides=[*FAST, "data.n=400", "data.steps=true", "train.epochs=1", "model.dim=32"],
                  out=out, quiet=True)
    assert json.loads((out / "data.json").read_text())["extras"]["final_after"] == "|"
    res = liandan.exact_match(out, max_samples=12)
    from liandan.data.pipeline import build_data

    run = liandan.load_run(out)
    data = build_data(run.recipe.data, run.recipe.seed, run.recipe.task)
    tok = data.source.tokenizer
    right = 0
    for row in data.source.x[torch.as_tensor(data.indices["test"][:12])].tolist():
        prompt = tok.decode(row).split("=")[0] + "="
        got = liandan.generate(out, prompt, max_new_tokens=40, temperature=0)
        right += got["finish"] == "eos" and "|" in got["completion"] and \
            got["completion"].split("|")[-1] == str(eval(prompt[:-1]))  # noqa: S307
    assert res["n"] == 12 and res["exact_match"] == right / 12


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_key_value_cache_samples_what_rereading_samples(style: str) -> None:
    """The cached decode draws the same tokens as re-reading the context, including after the
    context outgrows the 12 learned positions (where both slide the window)."""
    from liandan.models.hf_text import gpt

    torch.manual_seed(0)
    model = gpt(vocab_size=40, max_len=12, style=style, dim=32, layers=2, heads=4).eval()
    prompt = torch.randint(3, 40, (3, 4))
    kw = {"temperature": 0.8, "top_k": 20}
    fast = sample_tokens(model, prompt, 14, generator=torch.Generator().manual_seed(1), **kw)
    slow = sample_tokens(model, prompt, 14, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert fast.shape == (3, 18) and torch.equal(fast, slow)
