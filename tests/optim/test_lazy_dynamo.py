"""``torch.optim`` without ``torch._dynamo`` until something compiles (``optim/lazy_dynamo.py``).

Each check runs in a fresh interpreter: the test process itself may have imported
``torch._dynamo`` already (another test compiled something), and then the lazy path is off.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Builds and steps optimizers (liandan's and torch's own), checkpoints them, counts FLOPs and ops
# (dispatch modes defined before and after liandan.optim) with torch._dynamo absent; then imports
# it, which puts torch's own wrappers back in charge, and does it all again: the two runs must
# agree bit for bit.
EAGER = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from torch.utils.flop_counter import FlopCounterMode  # a dispatch mode defined before install
    from torch.utils._python_dispatch import TorchDispatchMode
    from liandan.optim import build_optimizer

    class CountOps(TorchDispatchMode):  # one defined after: wrapped by the replaced decorator
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    def run(name, opts, raw=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(8, 3))
        make = (lambda: raw(model.parameters(), **opts)) if raw else \\
            (lambda: build_optimizer(model, name, 1e-2, 0.01, opts))
        opt = make()
        x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
        grads_on = []
        for step in range(4):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            grads_on.append(torch.is_grad_enabled())
            if step == 1:  # a checkpoint round trip
                sd = opt.state_dict()
                opt = make()
                opt.load_state_dict(sd)
        with FlopCounterMode(display=False) as fc, CountOps() as ops:
            model.eval()(x[:1])
        state = [t for s in opt.state_dict()["state"].values() for t in s.values() if torch.is_tensor(t)]
        return [p.detach().clone() for p in model.parameters()] + state, fc.get_total_flops(), ops.ops, grads_on

    cases = [("adamw", {}, None), ("adam", {"amsgrad": True}, None), ("sgd", {"momentum": 0.9}, None),
             ("rmsprop", {}, None), ("adabelief", {}, None),
             ("torch_sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, torch.optim.SGD),
             ("torch_adam", {"lr": 1e-2}, torch.optim.Adam)]

    def differentiable():
        # differentiable=True keeps autograd on inside step: with weight decay, dp/dw is not 1
        w = torch.linspace(-1, 1, 7, dtype=torch.float64, requires_grad=True)
        p = w.clone()
        p.grad = torch.linspace(0.5, 2, 7, dtype=torch.float64)
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5, differentiable=True)
        opt.step()
        opt.step()
        (dw,) = torch.autograd.grad((p ** 2).sum(), w)
        return [p.detach(), dw], p.grad_fn is not None, torch.is_grad_enabled()

    lazy = [run(*c) for c in cases] + [differentiable()]
    report = {"dynamo_imported": "torch._dynamo" in sys.modules}
    import torch._dynamo  # noqa: F401  from here on torch's own wrappers run
    real = [run(*c) for c in cases] + [differentiable()]
    names = [c[0] for c in cases] + ["torch_sgd_differentiable"]
    report["equal"] = {n: all(torch.equal(a, b) for a, b in zip(l[0], r[0], strict=True)) and l[1:] == r[1:]
                       for n, l, r in zip(names, lazy, real, strict=True)}
    print(json.dumps(report))
""")


def _python(code: str, *args: str) -> str:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip().splitlines()[-1]


def test_optimizers_step_and_checkpoint_without_dynamo_bit_identical():
    report = json.loads(_python(EAGER))
    assert report["dynamo_imported"] is False
    assert report["equal"] == dict.fromkeys(report["equal"], True) and len(report["equal"]) == 8


# The same script with and without the lazy path: torch.compile must trace the same graphs, break
# at the same (dynamo-disabled) optimizer methods and compute the same values.
COMPILE = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    if sys.argv[1] == "lazy":
        from liandan.optim import lazy_dynamo
        lazy_dynamo.install()
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 4)
    m(x).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=False)
    before = "torch._dynamo" in sys.modules
    import torch._dynamo

    def zero(x):
        y = m(x) * 2
        opt.zero_grad(set_to_none=False)
        return y + 1

    def step(x):
        y = m(x) * 2
        opt.step()
        return y + 1

    def save(x):
        y = m(x) * 2
        n = len(opt.state_dict()["state"])
        return y + n

    out = {"dynamo_before_compile": before}
    for fn in (zero, step, save):
        m.weight.grad = torch.ones_like(m.weight)
        ex = torch._dynamo.explain(fn)(x)
        torch._dynamo.reset()
        m.weight.grad = torch.ones_like(m.weight)
        y = torch.compile(fn, backend="eager")(x)
        out[fn.__name__] = [ex.graph_count, ex.graph_break_count, y.sum().item(), m.weight.sum().item()]
    fn = torch.optim.Optimizer.zero_grad.__wrapped__
    out["disabled"] = bool(getattr(getattr(fn, "__dynamo_disable", None), "_torchdynamo_disable", False))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_compile_after_the_lazy_path_sees_the_same_disabled_methods():
    plain, lazy = (json.loads(_python(COMPILE, mode)) for mode in ("plain", "lazy"))
    assert plain.pop("dynamo_before_compile") is True  # torch alone imports it on the first step
    assert lazy.pop("dynamo_before_compile") is False
    assert lazy == plain
    assert lazy["disabled"] is True and lazy["zero"][1] >= 1  # zero_grad still breaks the graph


RUN = textwrap.dedent("""
    import json, sys
    import liandan
    out = sys.argv[1]
    liandan.train("digits-mlp", overrides=["train.max_steps=3", "train.checkpoint_every=1", "report=false",
                                           "doctor.enabled=false"], out=out, quiet=True)
    print(json.dumps({m: m in sys.modules for m in ("torch._dynamo", "sklearn")}))
""")


@pytest.mark.slow
def test_digits_mlp_run_imports_neither_dynamo_nor_sklearn(tmp_path):
    assert json.loads(_python(RUN, str(tmp_path / "run"))) == {"torch._dynamo": False, "sklearn": False}
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
