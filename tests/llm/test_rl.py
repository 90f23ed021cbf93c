"""Alignment: rule rewards, the GRPO loss against its formula, GRPO and a Bradley–Terry reward
model on a tiny arith run through the one trainer (exact resume, the non-finite guard,
accumulation), and the CLI's error cases."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import liandan
from liandan.llm.rl import bradley_terry_loss, exact_reward, format_reward, group_advantages, grpo, grpo_loss
from liandan.llm.rl.grpo import completion_logprobs, k3_kl
from liandan.llm.rl.rollout import completion_mask
from liandan.training.callbacks import Callback

pytest.importorskip("transformers")

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 1-layer GPT that half-learned 2-digit addition (first-digit accuracy about 0.5)."""
    rec = {"name": "arith", "seed": 0, "data": {"source": "arith", "n": 2000, "operators": "+"},
           "model": {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2},
           "optim": {"lr": 1e-2}, "train": {"epochs": 2}}
    return liandan.train(rec, overrides=FAST, out=tmp_path_factory.mktemp("rl") / "base", quiet=True)


# --- rewards ------------------------------------------------------------------------------------


def test_rule_rewards():
    answers = ["46<eos>"] * 4
    assert exact_reward(["46<eos>", "46", "461<eos>", "4<eos>"], answers) == [1.0, 0.0, 0.0, 0.0]
    assert format_reward(["46<eos>", "-7<eos>", "4<bos>6<eos>", "46"], answers) == [1.0, 1.0, 0.0, 0.0]
    # chain of thought: the final answer after the last "|" is judged; the working may differ
    a = ["2+4=6,1+3=4|46<eos>"] * 4
    c = ["2+4=6,1+3=4|46<eos>", "9+9=1|46<eos>", "2+4=6,1+3=4|47<eos>", "46<eos>"]
    assert exact_reward(c, a, "|") == [1.0, 1.0, 0.0, 0.0]
    assert format_reward(c, a, "|") == [1.0, 1.0, 1.0, 0.0]


# --- the GRPO loss --------------------------------------------------------------------------------


def test_advantages():
    r = torch.tensor([0.0, 1.0, 1.0, 3.0, 3.0, 3.0])
    adv = group_advantages(r, 3)
    g = r.view(2, 3)
    expect = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(adv, expect.reshape(-1))
    assert adv[3:].abs().max() == 0  # an all-equal group has no advantage


@pytest.mark.parametrize("loss_type", ["token", "sequence"])
def test_grpo_loss_formula(loss_type):
    """Clipped surrogate + β·k3 KL, masked, averaged by hand, with ratios in and out of the clip."""
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, -0.7]])
    old = torch.tensor([[-1.5, -0.5, -1.0], [-0.3, -0.9, -0.7]])
    ref = torch.tensor([[-1.1, -0.4, -2.5], [-0.2, -1.0, -0.9]])
    adv = torch.tensor([1.5, -0.8])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    eps, beta = 0.2, 0.1
    total, per_seq = 0.0, []
    for i in range(2):
        row = 0.0
        for t in range(3):
            ratio = torch.exp(logp[i, t] - old[i, t])
            surrogate = min(float(ratio) * adv[i], float(ratio.clamp(1 - eps, 1 + eps)) * adv[i])
            d = ref[i, t] - logp[i, t]
            kl = torch.exp(d) - d - 1
            term = float(mask[i, t] * (-surrogate + beta * kl))
            total, row = total + term, row + term
        per_seq.append(row / float(mask[i].sum()))
    expect = total / float(mask.sum()) if loss_type == "token" else sum(per_seq) / 2
    loss, stats = grpo_loss(logp, old, ref, adv, mask, eps, beta, loss_type)
    assert float(loss) == pytest.approx(expect, rel=1e-6)
    assert 0 < stats["clip_frac"] < 1  # exp(0.5) and exp(-1) leave the [0.8, 1.2] range
    assert float(k3_kl(logp, logp).abs().max()) == 0 and float(k3_kl(logp, ref).min()) >= 0


def _toy_batch(seed: int = 0):
    """Logits over a 7-token vocabulary for sequences of a 3-token prompt and a 4-token completion."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.tensor([[1, 5, 6, 3, 4, 2, 0], [1, 5, 6, 4, 4, 6, 2], [1, 6, 5, 2, 0, 0, 0], [1, 6, 5, 3, 3, 3, 3]])
    logits = torch.randn(4, 6, 7, generator=g, requires_grad=True)  # (N, T-1, V)
    ref = completion_logprobs(torch.randn(4, 6, 7, generator=g), seq, 3)  # (N, 4)
    mask = completion_mask(seq[:, 3:], eos=2)  # (N, 4)
    return seq, logits, ref, mask


def test_gradients_skip_prompt_and_padding():
    seq, logits, ref, mask = _toy_batch()
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    logp = completion_logprobs(logits, seq, 3)
    loss, _ = grpo_loss(logp, logp.detach(), ref, torch.tensor([1.0, -1.0, 0.5, -0.5]), mask, beta=0.04)
    loss.backward()
    grad = logits.grad.abs().sum(-1)  # (N, T-1): position j predicts token j+1
    assert grad[:, :2].max() == 0  # positions predicting prompt tokens
    assert grad[0, 5] == 0 and grad[2, 3:].max() == 0  # padding after <eos>
    assert grad[:, 2:][mask.bool()].min() > 0  # every completion token up to <eos> is learned


def test_equal_rewards_leave_only_the_kl_gradient():
    seq, logits, ref, mask = _toy_batch(1)
    adv = group_advantages(torch.full((4,), 0.7), 2)
    assert adv.abs().max() == 0
    logp = completion_logprobs(logits, seq, 3)
    loss, _ = grpo_loss(logp, logp.detach(), ref, adv, mask, beta=0.0)
    (g0,) = torch.autograd.grad(loss, logits)
    assert g0.abs().max() == 0  # no policy gradient at all
    logp = completion_logprobs(logits, seq, 3)
    loss, _ = grpo_loss(logp, logp.detach(), ref, adv, mask, beta=0.04)
    (g,) = torch.autograd.grad(loss, logits)
    logp = completion_logprobs(logits, seq, 3)
    kl_only = 0.04 * (k3_kl(logp, ref) * mask).sum() / mask.sum()
    (g_kl,) = torch.autograd.grad(kl_only, logits)
    assert g.abs().max() > 0
    torch.testing.assert_close(g, g_kl)


def test_bradley_terry_loss():
    c, r = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([1.0, 0.5, 0.3])
    assert float(bradley_terry_loss(c, r)) == pytest.approx(float(-F.logsigmoid(c - r).mean()))
    assert float(bradley_terry_loss(c, r)) == pytest.approx(float(torch.log1p(torch.exp(-(c - r))).mean()))


# --- end to end on a tiny arith run -----------------------------------------------------------


def _first_digit(completions, answers):
    return [float(c[:1] == a[:1]) for c, a in zip(completions, answers, strict=True)]


def _expected_first_digit(model, probs) -> float:
    """The exact expected toy reward: π(first answer token is right | prompt), averaged."""
    total, n = 0.0, 0
    with torch.no_grad():
        for cut, items in probs.buckets.items():
            ids = torch.tensor([p + a[:1] for p, a in items])  # (b, cut + 1)
            logp = model(ids[:, :-1])[:, cut - 1].log_softmax(-1)  # (b, V)
            total += float(logp.gather(1, ids[:, -1:]).exp().sum())
            n += len(items)
    return total / n


def test_grpo_raises_the_reward(base, tmp_path):
    """40 seeded GRPO steps on the toy reward raise its expected value (0.519 -> 0.557); the output is a normal run
    directory whose before-exact-match is generate.exact_match's."""
    from liandan.llm.rl.rollout import problems
    from liandan.training.run import load_run
    from liandan.training.rundir import read_metrics

    probs = problems(base, base.data, "train", 300)
    before = _expected_first_digit(base.model.eval(), probs)
    run = grpo(base.dir, _first_digit, steps=40, group=8, batch=16, lr=1e-3, out=tmp_path / "g", quiet=True)
    after = _expected_first_digit(run.model, probs)
    assert after > before + 0.02, (before, after)
    s = run.summary
    assert s["status"] == "completed" and s["steps"] == 40 and s["kl"] > 0
    assert s["before"]["test"]["exact_match"] == liandan.exact_match(base.dir)["exact_match"]
    assert s["final"]["test"]["exact_match"] == liandan.exact_match(run.dir)["exact_match"]
    rows = [r for r in read_metrics(tmp_path / "g" / "metrics.csv") if r["split"] == "step"]
    assert len(rows) == 40 and {"reward", "kl", "clip_frac"} <= set(rows[0])
    assert [r["step"] for r in rows] == list(range(1, 41)) and rows[0]["reward"] is not None
    assert (tmp_path / "g" / "checkpoints" / "last.safetensors").is_file()  # the trainer's checkpoints
    loaded = load_run(tmp_path / "g")
    ids = torch.randint(5, 10, (2, 6))
    torch.testing.assert_close(loaded.model(ids), run.model(ids))


def test_grpo_through_lora_with_a_reward_model(base, tmp_path):
    """A reward model learns to prefer right answers (> chance on held-out pairs); GRPO with it as
    the reward trains only a LoRA adapter and leaves the base weights as they were."""
    from liandan.llm.rl import reward_model
    from liandan.training.run import load_run

    doc = reward_model(base.dir, pairs=800, epochs=3, lr=1e-3, out=tmp_path / "rm", quiet=True)
    assert doc["pairs"]["test"] > 100
    assert doc["final"]["test"]["pairwise_accuracy"] > 0.6, doc["final"]
    run = grpo(base.dir, tmp_path / "rm", steps=2, group=4, batch=4, lr=1e-3, adapter={"name": "lora", "r": 2},
               inner_steps=2, temperature=0.8, out=tmp_path / "g", quiet=True)
    assert run.summary["trainable_params"] == 2 * (32 + 96) and run.summary["options"]["adapter"] == "lora"
    assert (tmp_path / "g" / "adapter.safetensors").is_file()
    loaded = load_run(tmp_path / "g")
    ft = {k.replace(".base.", "."): v for k, v in loaded.model.state_dict().items()}
    for k, v in base.model.state_dict().items():
        assert torch.equal(ft[k], v), k


def test_cli(base, tmp_path, cli):
    code, out, err = cli("grpo", str(base.dir), "--steps", "1", "--group", "2", "--batch", "2", "--beta", "0",
                         "--out", str(tmp_path / "g"), "--quiet", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "completed" and doc["kl"] is None and doc["dir"] == str(tmp_path / "g")
    code, _, err = cli("grpo", str(base.dir), "--group", "1", "--out", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: group must be ≥ 2") and len(err.strip().splitlines()) == 1
    iris = liandan.train({"data": {"source": "iris"}, "model": {"name": "mlp"}, "train": {"epochs": 1}},
                         overrides=FAST, out=tmp_path / "iris", quiet=True)
    for verb in ("grpo", "reward-model"):
        code, _, err = cli(verb, str(iris.dir), "--out", str(tmp_path / "y"))
        assert code == 2 and "needs a language-model run" in err and len(err.strip().splitlines()) == 1
        code, _, err = cli(verb, str(tmp_path / "nothing"))
        assert code == 2 and "is not a run directory" in err
    code, _, err = cli("grpo", str(base.dir), "--reward", "bogus", "--out", str(tmp_path / "z"))
    assert code == 2 and "unknown reward 'bogus'" in err


# --- through the trainer: exact resume, the non-finite guard, accumulation -------------------------


class _StopAt(Callback):
    """Interrupt the run (as Ctrl-C does) once it has taken ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
        if trainer.state.step == self.step:
            trainer.interrupt("test")


def _rows(path):
    from liandan.training.rundir import read_metrics

    return [{k: v for k, v in r.items() if k != "wall_s"} for r in read_metrics(path / "metrics.csv")]


def _same_weights(a, b) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_reward_model_resumes_bit_identical(base, tmp_path):
    """A reward-model run interrupted mid-epoch and resumed from the trainer's checkpoint ends with
    the very weights and metrics.csv rows of the run never stopped."""
    from liandan.llm.rl import reward_model

    kw = {"pairs": 120, "epochs": 2, "lr": 1e-3, "batch_size": 32, "quiet": True}
    full = reward_model(base.dir, out=tmp_path / "full", **kw)
    assert full["status"] == "completed" and full["steps"] == 8 and full["bad_steps"] == 0
    assert set(full["final"]) == {"train", "val", "test"} and full["weights"] == "reward_model"
    cut = reward_model(base.dir, out=tmp_path / "cut", callbacks=[_StopAt(3)], **kw)
    assert cut["status"] == "interrupted" and cut["steps"] == 3 and not cut["final"]
    assert not (tmp_path / "cut" / "reward_model.json").exists()  # not a reward model yet
    with pytest.raises(liandan.LiandanError, match="other options"):
        reward_model(base.dir, out=tmp_path / "cut", resume=True, **{**kw, "lr": 2e-3})
    done = reward_model(base.dir, out=tmp_path / "cut", resume=True, **kw)
    assert done["status"] == "completed" and done["steps"] == 8
    _same_weights(tmp_path / "full" / "checkpoints" / "reward_model.safetensors",
                  tmp_path / "cut" / "checkpoints" / "reward_model.safetensors")
    assert _rows(tmp_path / "full") == _rows(tmp_path / "cut")
    assert done["final"] == full["final"] and done["before"] == full["before"]
    rows = _rows(tmp_path / "full")
    assert [r["split"] for r in rows].count("step") == 8 and {r["split"] for r in rows} == {"step", "train", "val"}


def test_grpo_resumes_bit_identical(base, tmp_path):
    """GRPO interrupted and resumed (rollout generator, prompt position, optimizer, π_ref) matches
    the run never stopped, with two inner steps and two prompt batches accumulated per step."""
    kw = {"steps": 3, "group": 2, "batch": 3, "lr": 1e-3, "inner_steps": 2, "quiet": True,
          "overrides": ["train.accumulate=2"]}
    full = grpo(base.dir, _first_digit, out=tmp_path / "full", **kw)
    assert full.summary["status"] == "completed" and full.summary["steps"] == 3
    cut = grpo(base.dir, _first_digit, out=tmp_path / "cut", callbacks=[_StopAt(1)], **kw)
    assert cut.summary["status"] == "interrupted" and cut.summary["steps"] == 1
    done = grpo(base.dir, _first_digit, out=tmp_path / "cut", resume=True, **kw)
    assert done.summary["status"] == "completed"
    _same_weights(tmp_path / "full" / "checkpoints" / "final.safetensors",
                  tmp_path / "cut" / "checkpoints" / "final.safetensors")
    assert _rows(tmp_path / "full") == _rows(tmp_path / "cut")
    assert done.summary["reward"] == full.summary["reward"]


def test_grpo_non_finite_rewards_are_skipped_then_diverge(base, tmp_path):
    """NaN rewards make the loss non-finite: the trainer's guard skips each update (the weights stay
    the base's) and ends the run as diverged after train.max_bad_steps."""
    from safetensors.torch import load_file

    def nan_reward(completions, answers):
        return [math.nan] * len(completions)

    run = grpo(base.dir, nan_reward, steps=5, group=2, batch=2, lr=1e-2, quiet=True, out=tmp_path / "g",
               overrides={"train.max_bad_steps": 2})
    s = run.summary
    assert s["status"] == "diverged" and s["steps"] == 2 and s["bad_steps"] == 2 and "non-finite" in s["reason"]
    final = load_file(str(tmp_path / "g" / "checkpoints" / "final.safetensors"))
    for k, v in base.model.state_dict().items():
        assert torch.equal(final[k], v), k
