"""LoRA SFT of a small pre-trained chat model: held-out exact match before and after.

The base: a LLaMA-architecture model (2 layers, 64 wide, a word-level tokenizer with a chat
template) that liandan first trains (full SFT) to answer "please tell me about W1 .. Wn" with the
words reversed. The fine-tune: LoRA (r=8 on every Linear, 1 epoch budget of a few hundred steps)
teaches it a new instruction, "repeat W1 .. Wn", answered with the words in order. Exact match
(``liandan.llm.sft_exact_match``: greedy answers through the chat template, equal to the expected
response) on 100 held-out "repeat" prompts whose word sequences no training record holds, before
(the base) and after (the LoRA run), plus the base's own task after the fine-tune (forgetting).

    python bench/sft_exact_match.py [--seeds 0,1,2]

On the 2-core CPU sandbox (seeds 0, 1, 2): "repeat" exact match 0.007 ± 0.012 before, 0.543 ± 0.155
after LoRA; the base's "reverse" 0.953 ± 0.081 before, 0.003 ± 0.006 after (full forgetting: the
adapters on every Linear overwrite the old instruction; a doctor finding to build).

Last line: ``exact match after/before = A / B`` (means over seeds).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the tiny-tokenizer builder

from sft_vs_hf import write_model  # noqa: E402 (bench/ is on the path: the same tiny LLaMA)

QUIET = {"train.tensorboard": False, "report": False, "doctor.enabled": False, "train.threads": 1}


def instructions(kind: str, n: int, seed: int, words: list[str], avoid: set[str] = frozenset()) -> list[dict]:
    rng, out, seen = random.Random(seed), [], set(avoid)
    while len(out) < n:
        w = [rng.choice(words) for _ in range(rng.randint(3, 5))]
        key = " ".join(w)
        if key in seen:
            continue
        seen.add(key)
        if kind == "reverse":
            out.append({"prompt": "please tell me about " + key, "response": " ".join(reversed(w))})
        else:
            out.append({"prompt": "repeat " + key, "response": key})
    return out


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft(model_path: Path, data: Path, out: Path, seed: int, adapter: dict | None, epochs: int, lr: float):
    import liandan

    rc = {"name": out.name, "seed": seed, "task": "sft",
          "data": {"source": "records", "path": str(data), "batch_size": 16, "split": [0.9, 0.1, 0.0]},
          "model": {"name": "hf", "path": str(model_path)}, "optim": {"name": "adamw", "lr": lr, "weight_decay": 0.0},
          "schedule": {"name": "cosine", "warmup_steps": 20}, "train": {"epochs": epochs}}
    if adapter:
        rc["adapter"] = adapter
    return liandan.train(rc, QUIET, out=out, quiet=True)


def one_seed(seed: int, root: Path) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from liandan.llm.sft_eval import sft_exact_match
    from tests.models.hf_tiny import WORDS

    torch.set_num_threads(1)
    words = list(WORDS[:30])
    a_train = instructions("reverse", 3000, seed, words)
    b_train = instructions("repeat", 1500, seed + 100, words)
    held = instructions("repeat", 100, seed + 200, words, {r["response"] for r in b_train})
    a_seen = {r["prompt"].removeprefix("please tell me about ") for r in a_train}
    a_held = instructions("reverse", 100, seed + 300, words, a_seen)
    init = write_model(root, width=64, layers=2, context=64, seed=seed)
    base_run = sft(init, write(root / "a.jsonl", a_train), root / "base", seed, None, 6, 3e-3)
    base_dir = base_run.dir / "hf"
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    before = sft_exact_match(base, tok, held).exact_match
    base_own = sft_exact_match(base, tok, a_held).exact_match
    lora = sft(base_dir, write(root / "b.jsonl", b_train), root / "lora", seed,
               {"name": "lora", "r": 8, "alpha": 16, "targets": "all-linear"}, 4, 3e-3)
    after = sft_exact_match(lora.model, tok, held)
    own_after = sft_exact_match(lora.model, tok, a_held).exact_match
    print(f"seed {seed}: repeat before {before:.3f} after {after.exact_match:.3f}; "
          f"reverse (the base's task) {base_own:.3f} -> {own_after:.3f}; e.g. {after.rows[0]}")
    return {"before": before, "after": after.exact_match, "base_task_before": base_own, "base_task_after": own_after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    results = []
    for s in (int(x) for x in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(one_seed(s, Path(tmp)))

    def stat(k: str) -> str:
        v = [r[k] for r in results]
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}"

    print("\nheld-out exact match (mean ± sd over seeds)")
    print(f"  new instruction (repeat), base:       {stat('before')}")
    print(f"  new instruction (repeat), after LoRA: {stat('after')}")
    print(f"  base's instruction (reverse): {stat('base_task_before')} -> {stat('base_task_after')} after LoRA")
    m = {k: statistics.mean(r[k] for r in results) for k in ("before", "after")}
    print(f"exact match after/before = {m['after']:.3f} / {m['before']:.3f}")


if __name__ == "__main__":
    main()
