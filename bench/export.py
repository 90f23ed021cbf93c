"""Export table: short runs of digits-mlp, digits-lenet and a LLaMA-style arith-gpt, each exported
to ONNX (checked with onnxruntime on test inputs at batch 1 and 5; latency at batch 1, median of
``--repeats`` calls, torch eager vs onnxruntime on the same thread count), and the language
model also to GGUF f32 / q8_0 / q4_0 (read back by transformers: max |Δlogit| on test prompts).

    python bench/export.py [--epochs 3] [--repeats 300] [--threads 1] [--keep DIR] [--spread 5]

``--spread N`` also exports digits-mlp and arith-llama N times each and prints the spread of the latency ``export.json``
records (one thread, the thread's CPU clock) and, for comparison, of the old measurement (both
cores, wall clock: identical exports swung 0.8-40 ms on the shared 2-core sandbox).

Last line: ``ort_over_torch_latency = X`` (geometric mean over the ONNX models of ORT / torch
batch-1 latency; below 1 means onnxruntime is faster).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch


def _runs(root: Path, epochs: int) -> dict[str, Path]:
    import liandan

    fast = ["doctor.enabled=false", "train.tensorboard=false", "report=false", f"train.epochs={epochs}"]
    specs = {"digits-mlp": ("digits-mlp", []), "digits-lenet": ("digits-lenet", []),
             "arith-llama": ("arith-gpt", ["model.style=llama", "data.n=3000", "schedule.warmup_steps=20"])}
    return {name: liandan.train(preset, overrides=[*extra, *fast], out=root / name, quiet=True).dir
            for name, (preset, extra) in specs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="train into this directory and keep the runs and files")
    ap.add_argument("--spread", type=int, default=0, help="export digits-mlp N times per thread count")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from liandan.export import to_gguf, to_onnx
    from liandan.training.api import load_run

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        runs = _runs(root, args.epochs)
        rows, ratios = [], []
        for name, run_dir in runs.items():
            params = sum(p.numel() for p in load_run(run_dir).model.parameters())
            e = to_onnx(run_dir, repeats=args.repeats)
            c = e["check"]
            ratios.append(c["latency_ratio_ort_over_torch"])
            rows.append((name, params, "onnx", e["bytes"], c["max_abs_diff"], c["latency_ms"]["torch_eager"],
                         c["latency_ms"]["onnxruntime"], f"outputs up to {c['output_scale']:.1f}"))
            if name.endswith("llama"):
                for outtype in ("f32", "q8_0", "q4_0"):
                    g = to_gguf(run_dir, outtype=outtype)
                    k = g["check"]
                    rows.append((name, params, f"gguf {outtype}", g["bytes"], k["max_abs_diff"], None, None,
                                 f"logits up to {k['logit_scale']:.1f}, greedy agreement {k['greedy_agreement']:.3f}"))
        if args.spread:
            for name in ("digits-mlp", "arith-llama"):
                _spread(name, runs[name], args.spread, args.repeats, root)
    print(f"latency: 1 thread, CPU clock, batch 1, {args.repeats} calls; max |Δ| vs the run's torch model")
    print(f"{'model':<14}{'params':>9}  {'format':<11}{'KiB':>9}{'max |Δ|':>11}{'torch ms':>10}{'ORT ms':>9}"
          f"{'ORT/torch':>11}  note")
    for name, params, fmt, size, diff, t_torch, t_ort, note in rows:
        lat = (f"{t_torch:>10.3f}{t_ort:>9.3f}{t_ort / t_torch:>11.2f}" if t_torch else f"{'-':>10}{'-':>9}{'-':>11}")
        print(f"{name:<14}{params:>9}  {fmt:<11}{size / 1024:>9.1f}{diff:>11.2e}{lat}  {note}")
    print("GGUF |Δ|: max |Δlogit| when transformers reads the file back (llama.cpp itself: bench/llamacpp_check.py)")
    print(f"ort_over_torch_latency = {math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")


def _spread(name: str, run_dir: Path, n: int, repeats: int, root: Path) -> None:
    """Latency over ``n`` identical exports: as export.json records it (one thread, thread CPU clock)
    and as it was measured before (both cores, wall clock)."""
    import statistics

    from liandan.export import onnx_export

    print(f"latency spread over {n} identical exports of {name} (batch 1, {repeats} calls):")
    for threads, key, how in ((1, "latency_ms", "1 thread, CPU clock"), (2, "wall_ms", "2 threads, wall clock")):
        onnx_export.LATENCY_THREADS = threads
        t, o = [], []
        for i in range(n):
            out = root / f"spread-{name}-{threads}-{i}.onnx"
            lat = onnx_export.to_onnx(run_dir, out, repeats=repeats)["check"][key]
            t.append(lat["torch_eager"])
            o.append(lat["onnxruntime"])
        for rt, xs in (("torch", t), ("onnxruntime", o)):
            print(f"  {how:<22} {rt:<12} mean {statistics.mean(xs):.4f} ms ± {statistics.pstdev(xs):.4f} "
                  f"(min {min(xs):.4f}, max {max(xs):.4f}, max/min {max(xs) / min(xs):.2f})")
    onnx_export.LATENCY_THREADS = 1


if __name__ == "__main__":
    main()
