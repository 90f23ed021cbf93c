"""S-LoRA-style serving (liandan.llm.serving): one frozen base, many LoRA fine-tunes, mixed batches.

The oracle is each fine-tuned run loaded alone (load_run: the base with its LoraLinear layers),
and peft's own mixed batch (``adapter_names=``) on the same tensors.
"""

from __future__ import annotations

import copy

import pytest
import torch

import liandan
from liandan.errors import LiandanError
from liandan.generation.text import generate as generate_one
from liandan.llm.serving import BASE, AdapterServer, read_lora_run
from liandan.training.run import load_run

pytest.importorskip("transformers")

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
MODEL = {"name": "gpt", "size": "tiny", "layers": 1, "dim": 32, "heads": 2}
TARGETS = ["c_attn", "c_fc"]
# name -> (operators, data seed, adapter options): different data, ranks 2/4/3 (the store pads to 4), rsLoRA
ADAPTERS = {"sub": ("-", 0, {"r": 2}), "mul": ("*", 0, {"r": 4, "alpha": 8.0}),
            "sub3": ("-", 1, {"r": 3, "alpha": 4.0, "rslora": True})}


def _recipe(operators: str, seed: int = 0, lr: float = 3e-3, **extra) -> dict:
    return {"name": f"arith{operators}", "seed": seed, "model": dict(MODEL), "optim": {"lr": lr},
            "data": {"source": "arith", "n": 300, "operators": operators, "seed": seed}, "train": {"epochs": 1},
            **extra}


def _fine_tune(base, out, operators: str, seed: int = 0, adapter: dict | None = None):
    rec = _recipe(operators, seed, lr=3e-2, **({"adapter": adapter} if adapter else {}))
    rec["model"]["from_run"] = str(base)
    return liandan.train(rec, overrides=FAST, out=out, quiet=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base ("+*": its context fits every operator) and LoRA fine-tunes of it; a full fine-tune
    (another base, and a run without an adapter); a LoRA fine-tune of that; one with other targets."""
    root = tmp_path_factory.mktemp("serve")
    base = liandan.train(_recipe("+*"), overrides=FAST, out=root / "base", quiet=True).dir
    out = {"base": base}
    for name, (ops, seed, opts) in ADAPTERS.items():
        out[name] = _fine_tune(base, root / name, ops, seed, {"name": "lora", "targets": TARGETS, **opts}).dir
    out["full"] = _fine_tune(base, root / "full", "-").dir
    out["alien"] = _fine_tune(out["full"], root / "alien", "*", 0, {"name": "lora", "r": 2, "targets": TARGETS}).dir
    out["attn_only"] = _fine_tune(base, root / "attn", "-", 0, {"name": "lora", "r": 2, "targets": ["c_attn"]}).dir
    return out


def _server(runs, max_active: int = 3) -> AdapterServer:
    server = AdapterServer(runs["base"], max_active=max_active)
    for name in ADAPTERS:
        server.add_adapter(name, runs[name])
    return server


def _ids(n: int = 8, t: int = 10) -> torch.Tensor:
    return torch.randint(5, 21, (n, t), generator=torch.Generator().manual_seed(0))


ROWS = ["sub", BASE, "mul", "sub3", "mul", "sub", BASE, "sub3"]


def test_mixed_batch_equals_each_fine_tune_alone(runs):
    """One forward over rows of three adapters and the base equals each row through its own
    fine-tuned run (LoraLinear, unpadded rank) and the base run; the adapters do change the output."""
    server = _server(runs)
    ids = _ids()
    mixed = server.logits(ids, ROWS)  # (8, 10, V)
    alone = {name: load_run(runs[name if name != BASE else "base"]).model for name in [*ADAPTERS, BASE]}
    worst = 0.0
    with torch.no_grad():
        for i, name in enumerate(ROWS):
            worst = max(worst, (alone[name](ids[i:i + 1])[0] - mixed[i]).abs().max().item())
            if name == BASE:
                assert torch.equal(alone[name](ids[i:i + 1])[0], mixed[i])  # W₀x + 0, bit for bit
            else:
                assert (alone[BASE](ids[i:i + 1])[0] - mixed[i]).abs().max() > 1e-3  # the adapter matters
    assert worst < 1e-5, worst
    s = server.stats()
    assert s["loads"] == 3 and s["evictions"] == 0 and s["r_max"] == 4 and s["resident"] == list(ADAPTERS)
    base_w = load_run(runs["base"]).model.state_dict()
    for k, v in server.model.state_dict().items():  # merge-free: every base tensor as trained
        if not k.endswith((".A", ".B")):
            assert torch.equal(base_w[k.replace(".base.", ".")], v), k


def test_mixed_generation_equals_per_adapter(runs):
    """Greedy completions of a mixed batch (prompts of two lengths) equal liandan.generate on each
    fine-tuned run alone."""
    server = _server(runs)
    prompts = ["12-34=", "7*8=", "45+6=", "12-34=", "9*31=", "3-4="]
    names = ["sub", "mul", BASE, "sub3", "mul", "sub"]
    got = server.generate(prompts, names, max_new_tokens=6)
    for p, n, g in zip(prompts, names, got, strict=True):
        one = generate_one(runs[n if n != BASE else "base"], p, max_new_tokens=6, temperature=0)
        assert (g["tokens"], g["finish"], g["completion"]) == (one["tokens"], one["finish"], one["completion"]), (p, n)
        assert g["adapter"] == n and g["prompt"] == p


def test_lru_evicts_and_reloads(runs):
    """With one resident slot a batch of three adapters runs as three groups, evicting as it goes;
    outputs equal the roomy server's; hits, loads and evictions are counted."""
    ids = _ids()
    want = _server(runs, 3).logits(ids, ROWS)
    server = _server(runs, max_active=1)
    assert (server.logits(ids, ROWS) - want).abs().max() < 1e-6
    s = server.stats()
    assert (s["loads"], s["evictions"], s["hits"], s["resident"]) == (3, 2, 0, ["sub3"])
    assert (server.logits(ids[[3, 7]], "sub3") - want[[3, 7]]).abs().max() < 1e-6  # resident: a hit
    assert (server.logits(ids[[2, 4]], ["mul", "mul"]) - want[[2, 4]]).abs().max() < 1e-6  # evicts sub3
    s = server.stats()
    assert (s["loads"], s["evictions"], s["hits"], s["resident"]) == (4, 3, 1, ["mul"])
    assert s["pooled"] == list(ADAPTERS) and s["pool_bytes"] > 0
    # a wider adapter re-pads the store, the resident ones intact
    wide = {n: (torch.randn(6, a.shape[1]), torch.zeros(b.shape[0], 6))
            for n, (a, b) in read_lora_run("mul", runs["mul"])[0].layers.items()}
    server.add_lora("wide", wide, scaling=1.0)
    assert server.stats()["r_max"] == 6 and server.stats()["resident"] == ["mul"]
    assert (server.logits(ids[[2, 4]], "mul") - want[[2, 4]]).abs().max() < 1e-6
    assert (server.logits(ids[[1, 6]], "wide") - want[[1, 6]]).abs().max() < 1e-6  # B = 0: the base's rows
    server.remove_adapter("wide")  # resident: its slot frees
    assert server.stats()["resident"] == [] and (server.logits(ids[:1], "sub") - want[0]).abs().max() < 1e-6
    s = server.stats()
    assert (s["loads"], s["evictions"], s["hits"]) == (6, 4, 2) and server.adapters == list(ADAPTERS)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecations peft triggers
def test_peft_mixed_batch_oracle(runs):
    """peft's mixed batch (adapter_names=) on the base GPT-2 with the same LoRA tensors agrees."""
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file

    hf = copy.deepcopy(load_run(runs["base"]).model.hf)
    model = None
    for name, (_, _, opts) in ADAPTERS.items():
        cfg = peft.LoraConfig(r=opts["r"], lora_alpha=opts.get("alpha", 16.0), use_rslora=opts.get("rslora", False),
                              target_modules=TARGETS, fan_in_fan_out=True)
        if model is None:
            model = peft.get_peft_model(hf, cfg, adapter_name=name)
        else:
            model.add_adapter(name, cfg)
        for key, t in load_file(runs[name] / "adapter.safetensors").items():
            layer, _, kind = key.removeprefix("hf.").rpartition(".")
            getattr(model.base_model.model.get_submodule(layer), kind)[name].weight.data.copy_(t)
        assert read_lora_run(name, runs[name])[0].rank == opts["r"]
    ids = _ids()
    with torch.no_grad():
        want = model.eval()(input_ids=ids, adapter_names=ROWS).logits
    assert (_server(runs).logits(ids, ROWS) - want).abs().max() < 1e-5


def test_bad_inputs(runs):
    """Unknown names, another base's adapter, runs without LoRA, other targets: one clear line each."""
    server = AdapterServer(runs["base"], max_active=2)
    server.add_adapter("sub", runs["sub"])
    cases = [
        (lambda: server.logits(_ids(2), ["sub", "nope"]), "unknown adapter 'nope'; loaded: sub"),
        (lambda: server.logits(_ids(2), ["sub"]), "2 rows but 1 adapter names"),
        (lambda: server.add_adapter("x", runs["alien"]), "whose weights are not this server's base"),
        (lambda: server.add_adapter("x", runs["base"]), "not an adapter fine-tune"),
        (lambda: server.add_adapter("x", runs["full"]), "not an adapter fine-tune"),
        (lambda: server.add_adapter("x", runs["attn_only"]), "serve adapters with the same targets together"),
        (lambda: server.add_adapter("x", runs["base"] / "nowhere"), "not a run directory"),
        (lambda: server.add_adapter("sub", runs["sub"]), "already loaded"),
        (lambda: server.add_adapter(BASE, runs["sub"]), "bad adapter name"),
    ]
    for call, message in cases:
        with pytest.raises(LiandanError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    assert server.adapters == ["sub"] and server.stats()["loads"] == 0


def test_cli(runs, cli):
    import json

    args = ["serve-adapters", str(runs["base"]), "--adapter", f"sub={runs['sub']}", "--adapter",
            f"mul={runs['mul']}", "--prompt", "sub:12-3=", "--prompt", "mul:7*8=", "--prompt", f"{BASE}:4+5=",
            "--max-new-tokens", "4", "--max-active", "1"]
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["adapter"] for r in doc["results"]] == ["sub", "mul", BASE]
    assert doc["results"][1]["tokens"] == generate_one(runs["mul"], "7*8=", 4, temperature=0)["tokens"]
    assert doc["stats"]["loads"] == 2 and doc["stats"]["evictions"] == 1
    code, out, err = cli(*args)
    assert code == 0 and out.splitlines()[0].startswith("[sub] 12-3=") and "evictions 1" in out
    code, out, err = cli("serve-adapters", str(runs["base"]), "--adapter", f"sub={runs['sub']}", "--prompt", "add:1+2=")
    assert code == 2 and err.startswith("error: serve: unknown adapter 'add'") and len(err.strip().splitlines()) == 1
