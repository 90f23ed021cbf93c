"""LoRA SFT through liandan and through Hugging Face ``Trainer`` + ``peft``: the same job, timed.

The job: a LLaMA-architecture causal LM (4 layers, 128 wide, written with ``save_pretrained``,
a word-level tokenizer with a chat template), instruction records (prompt + response, rendered with
the chat template, loss on the response tokens only), LoRA r=8, α=16 on every projection
(q/k/v/o, gate/up/down), AdamW at a constant rate, batch 8, the same number of steps, the same
threads. Each side starts from the JSONL file: liandan's ``records`` source; on the HF side the code
an HF user writes (``datasets.load_dataset("json")``, ``map`` with ``apply_chat_template`` and the
prompt masked, padded to liandan's row length). The bench checks that both yield the very same
token ids and labels before timing. HF's ``Trainer.train()`` evaluates nothing at the end, so
liandan's run sets ``train.final_eval: []``; it still writes its run directory, checkpoint and
final weights (HF: ``save_strategy="no"``). One untimed warm-up call of each side pays the imports;
then the contenders alternate over the repeats.

Figures: the training loop's own wall time (liandan's ``summary.wall_s``, HF's ``train_runtime``)
and the whole call (reading and tokenizing the records, loading the model, adding LoRA, training:
``liandan.train`` vs ``load_dataset`` + ``map`` + ``from_pretrained`` + ``Trainer.train()``),
with response tokens per second.

    python bench/sft_vs_hf.py [--repeats 3] [--steps 60] [--threads 1]

Last line: ``whole call liandan/hf = X ± s``, the mean ± sd over repeats of the per-repeat ratio.

On the 2-core CPU sandbox (60 steps, one thread, other jobs on the machine, load ≈ 3; HF's default
optimizer is fused AdamW too): 5 alternated repeats, whole call 0.923 ± 0.052 (1.97 ± 0.09 s against
2.14 ± 0.13 s), loop 0.842 ± 0.050 (2,554 against 2,146 response tokens/s); 3 repeats in another call,
whole call 0.970 ± 0.052, loop 0.862 ± 0.015.
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
from typing import Any

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


# HF's Trainer.train() evaluates nothing at the end; liandan's final evaluation is switched off to match.
NO_FINAL_EVAL = {"train.final_eval": []}


def liandan_side(rc: dict, out: Path) -> tuple[float, float]:
    import liandan

    t0 = time.perf_counter()
    run = liandan.train(rc, overrides=NO_FINAL_EVAL, out=out, quiet=True)
    return run.summary["wall_s"], time.perf_counter() - t0


def liandan_rows(rc: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """liandan's training rows (ids, next-token targets with -100 off the responses)."""
    from liandan.data import build_data
    from liandan.recipe import load_recipe

    r = load_recipe(rc)
    data = build_data(r.data, r.seed, r.task)
    return data.train.x, data.train.y


def hf_dataset(model_dir: Path, data: Path, length: int) -> Any:
    """The records tokenized as a Hugging Face user would: ``datasets`` reads the JSONL, ``map`` renders
    each exchange with the chat template and masks the prompt (labels -100), padded to ``length``
    (liandan pads every row to the longest; HF shifts labels inside the model, so these are unshifted)."""
    import datasets
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token is None:  # the usual line of HF fine-tuning scripts (liandan pads with EOS too)
        tok.pad_token = tok.eos_token

    def encode(rec: dict) -> dict:
        chat = [{"role": "user", "content": rec["prompt"]}, {"role": "assistant", "content": rec["response"]}]
        prompt = tok(tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
        ids = tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt) + ids[len(prompt):]
        pad = length + 1 - len(ids)  # liandan's rows hold ids[:-1] and targets ids[1:]: length + 1 tokens
        return {"input_ids": (ids + [tok.pad_token_id] * pad)[:length], "labels": (labels + [-100] * pad)[:length]}

    ds = datasets.load_dataset("json", data_files=str(data), split="train")
    return ds.map(encode, remove_columns=ds.column_names).with_format("torch")


def hf_side(model_dir: Path, data: Path, length: int, steps: int, threads: int, out: Path) -> tuple[float, float]:
    import peft
    import transformers as tf

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    rows = hf_dataset(model_dir, data, length)
    model = tf.AutoModelForCausalLM.from_pretrained(str(model_dir))
    model = peft.get_peft_model(model, peft.LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                                       target_modules=TARGETS, task_type="CAUSAL_LM"))
    args = tf.TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
                                learning_rate=LR, weight_decay=0.0, lr_scheduler_type="constant",
                                warmup_steps=0, logging_steps=10**6, save_strategy="no", report_to=[],
                                use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = tf.Trainer(model=model, args=args, train_dataset=rows)
    result = trainer.train()
    return result.metrics["train_runtime"], time.perf_counter() - t0


def same_rows(model_dir: Path, data: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    """Both sides train on the same tokens: HF's rows (labels shifted back) equal liandan's."""
    rows = hf_dataset(model_dir, data, x.shape[1])[:]  # every row, as tensors
    ids, labels = rows["input_ids"], rows["labels"]
    if not (torch.equal(ids, x) and torch.equal(labels[:, 1:], y[:, :-1])):
        raise SystemExit("the HF side's token rows differ from liandan's: not the same job")


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
        x, y = liandan_rows(rc)
        same_rows(model_dir, data, x, y)
        tokens = int((y[: args.steps * BATCH] != -100).sum())  # response tokens per pass over `steps` batches
        print(f"rows {tuple(x.shape)}, {args.steps} steps of {BATCH}, threads {args.threads}, "
              f"optimizer (HF default) {tf_default_optim()}")
        # untimed warm-up of both sides: imports (transformers, peft, datasets) are paid once per process
        liandan_side(recipe(model_dir, data, 2, args.threads), root / "warm-liandan")
        hf_side(model_dir, data, x.shape[1], 2, args.threads, root / "warm-hf")
        for r in range(args.repeats):
            for name in (["liandan", "hf"] if r % 2 == 0 else ["hf", "liandan"]):  # alternate who goes first
                out = root / f"{name}{r}"
                t = liandan_side(rc, out) if name == "liandan" else hf_side(model_dir, data, x.shape[1],
                                                                             args.steps, args.threads, out)
                times[name].append(t)
                print(f"  {name:<8} loop {t[0]:7.2f} s   whole call {t[1]:7.2f} s")
    print(f"\n{'':<8} {'loop s':>14} {'call s':>14} {'resp tok/s':>11}")
    for k, v in times.items():
        loops, calls = [a for a, _ in v], [b for _, b in v]
        print(f"{k:<8} {_ms(loops):>14} {_ms(calls):>14} {tokens / statistics.mean(loops):11.0f}")
    pairs = list(zip(times["liandan"], times["hf"], strict=True))  # repeat r of each side: the same conditions
    print(f"loop liandan/hf = {_ms([a[0] / b[0] for a, b in pairs], 3)} (per repeat)")
    print(f"whole call liandan/hf = {_ms([a[1] / b[1] for a, b in pairs], 3)} (per repeat)")


def _ms(xs: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f}"


def tf_default_optim() -> str:
    import transformers as tf

    return str(tf.TrainingArguments(output_dir=tempfile.gettempdir(), report_to=[]).optim)


if __name__ == "__main__":
    main()
