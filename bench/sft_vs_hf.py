"""LoRA SFT through liandan and through Hugging Face ``Trainer`` + ``peft``: the same job, timed.

The job: a LLaMA-architecture causal LM (4 layers, 128 wide, written with ``save_pretrained``,
a word-level tokenizer with a chat template), instruction records (prompt + response, rendered with
the chat template, loss on the response tokens only), LoRA r=8, α=16 on every projection
(q/k/v/o, gate/up/down), AdamW at a constant rate, batch 8, the same number of steps, the same
threads. Both sides train on the very same token ids and labels: liandan's rows are handed to
``Trainer`` as a dataset, so only the trainers differ. Contenders alternate over the repeats.

Figures: the training loop's own wall time (liandan's ``summary.wall_s``, HF's ``train_runtime``:
model loading, tokenization and liandan's final evaluation passes excluded) and the whole call
(``liandan.train`` vs building ``Trainer`` + ``train()``), with response tokens per second.

    python bench/sft_vs_hf.py [--repeats 3] [--steps 60] [--threads 1]

Last line: ``ratio liandan/hf = X`` (median loop times).

On the 2-core CPU sandbox (3 alternated repeats, 60 steps, one thread; HF's default optimizer is
fused AdamW too): loop liandan/HF 0.862 (2,459 against 2,119 response tokens/s); whole call 1.94
(4.48 s against 2.31 s): liandan's call also tokenizes the 2,000 records through the chat template,
evaluates the split at the end and writes the run directory, while HF is handed the ready token rows.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the tiny-tokenizer builder

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA, LR, BATCH = 8, 16.0, 1e-3, 8


def write_model(root: Path, width: int = 128, layers: int = 4, context: int = 256, seed: int = 0) -> Path:
    """``root/llama``: a randomly initialised LLaMA (``width`` wide, MLP 2×, 4 heads) with the tiny
    word-level tokenizer and its chat template (also the base of ``bench/sft_exact_match.py``)."""
    import transformers as tf

    from tests.models.hf_tiny import tokenizer

    tok = tokenizer("llama")
    torch.manual_seed(seed)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=context, bos_token_id=1, eos_token_id=2)
    d = root / "llama"
    tf.LlamaForCausalLM(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def write_records(root: Path, n: int = 2000) -> Path:
    """Instructions from the tokenizer's words: repeat the words after "please tell me about" in reverse."""
    from tests.models.hf_tiny import WORDS

    rng = random.Random(0)
    path = root / "sft.jsonl"
    with path.open("w") as f:
        for _ in range(n):
            words = [rng.choice(WORDS[:40]) for _ in range(rng.randint(4, 10))]
            f.write(json.dumps({"prompt": "please tell me about " + " ".join(words),
                                "response": " ".join(reversed(words))}) + "\n")
    return path


def recipe(model_dir: Path, data: Path, steps: int, threads: int) -> dict:
    return {"name": "sft-bench", "seed": 0, "task": "sft",
            "data": {"source": "records", "path": str(data), "batch_size": BATCH, "split": [1.0, 0.0, 0.0]},
            "model": {"name": "hf", "path": str(model_dir)},
            "adapter": {"name": "lora", "r": R, "alpha": ALPHA, "targets": TARGETS},
            "optim": {"name": "adamw", "lr": LR, "weight_decay": 0.0},
            "train": {"epochs": 1000, "max_steps": steps, "threads": threads, "tensorboard": False,
                      "log_every": 10**6},
            "doctor": {"enabled": False}, "report": False}


def liandan_side(rc: dict, out: Path) -> tuple[float, float]:
    import liandan

    t0 = time.perf_counter()
    run = liandan.train(rc, out=out, quiet=True)
    return run.summary["wall_s"], time.perf_counter() - t0


def hf_rows(rc: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """liandan's training rows (ids, next-token targets with -100 off the responses)."""
    from liandan.data import build_data
    from liandan.recipe import load_recipe

    r = load_recipe(rc)
    data = build_data(r.data, r.seed, r.task)
    return data.train.x, data.train.y


def hf_side(model_dir: Path, x: torch.Tensor, y: torch.Tensor, steps: int, threads: int,
            out: Path) -> tuple[float, float]:
    import peft
    import transformers as tf

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    model = tf.AutoModelForCausalLM.from_pretrained(str(model_dir))
    model = peft.get_peft_model(model, peft.LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                                       target_modules=TARGETS, task_type="CAUSAL_LM"))
    # HF shifts labels inside the model: labels[t] is the target of position t-1, so liandan's
    # targets y (already shifted) move one place right; both score the same response tokens.
    labels = torch.cat([torch.full_like(y[:, :1], -100), y[:, :-1]], dim=1)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": x[i], "labels": labels[i]}

    args = tf.TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
                                learning_rate=LR, weight_decay=0.0, lr_scheduler_type="constant",
                                warmup_steps=0, logging_steps=10**6, save_strategy="no", report_to=[],
                                use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = tf.Trainer(model=model, args=args, train_dataset=Rows())
    result = trainer.train()
    return result.metrics["train_runtime"], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    times: dict[str, list[tuple[float, float]]] = {"liandan": [], "hf": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, data = write_model(root), write_records(root)
        rc = recipe(model_dir, data, args.steps, args.threads)
        x, y = hf_rows(rc)
        tokens = int((y[: args.steps * BATCH] != -100).sum())  # response tokens per pass over `steps` batches
        print(f"rows {tuple(x.shape)}, {args.steps} steps of {BATCH}, threads {args.threads}, "
              f"optimizer (HF default) {tf_default_optim()}")
        for r in range(args.repeats):
            for name in (["liandan", "hf"] if r % 2 == 0 else ["hf", "liandan"]):  # alternate who goes first
                out = root / f"{name}{r}"
                t = liandan_side(rc, out) if name == "liandan" else hf_side(model_dir, x, y, args.steps,
                                                                             args.threads, out)
                times[name].append(t)
                print(f"  {name:<8} loop {t[0]:7.2f} s   whole call {t[1]:7.2f} s")
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in times.items()}
    print(f"\n{'':<8} {'loop s':>8} {'call s':>8} {'resp tok/s':>11}")
    for k, (loop, call) in med.items():
        print(f"{k:<8} {loop:8.2f} {call:8.2f} {tokens / loop:11.0f}")
    print(f"whole call liandan/hf = {med['liandan'][1] / med['hf'][1]:.3f}")
    print(f"ratio liandan/hf = {med['liandan'][0] / med['hf'][0]:.3f}")


def tf_default_optim() -> str:
    import transformers as tf

    return str(tf.TrainingArguments(output_dir=tempfile.gettempdir(), report_to=[]).optim)


if __name__ == "__main__":
    main()
