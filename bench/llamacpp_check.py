"""llama.cpp itself reads liandan's GGUF files: tokenisation and greedy decoding against torch.

Models (each trained here for ``--steps`` AdamW steps on generated text, one per seed, so greedy
decoding follows learned structure rather than noise):

- ``llama-hf``: a ``LlamaForCausalLM`` (GQA) ``save_pretrained`` directory with a GPT-2-style
  byte-level BPE tokenizer (``tokenizer.ggml.pre = "gpt-2"``);
- ``qwen2-hf``: a ``Qwen2ForCausalLM`` (q/k/v biases, untied head) directory with a Qwen2-style
  tokenizer (NFC, Qwen2's split regex, ChatML specials and template; ``pre = "qwen2"``);
- ``bpe-run``: a liandan LLaMA-style run on the same kind of text with its own byte-level BPE
  (``data.tokenizer=bpe``), exported from the run directory (``pre = "gpt-2"``; the files used to
  say ``"default"``);
- ``llama-run``: a liandan ``arith-gpt`` run with ``model.style=llama`` (char vocabulary + ``▁`` +
  the 256 byte-fallback tokens), exported from the run directory.

Each is exported (``liandan.export.to_gguf``) as f32, q8_0 and q4_0 and loaded by llama.cpp through
``llama-cpp-python`` (KV cache in F32, one thread). Per file: the sample texts llama.cpp tokenises
to the model tokenizer's ids, and greedy decoding of ``--new`` tokens from ``--prompts`` held-out
prompts, position by position against torch's greedy decoding of the same prompts (plus a text
with characters outside a char vocabulary, which used to abort llama.cpp).

llama-cpp-python is built ONCE from its PyPI source distribution into ``--cache`` (default
``~/.cache/liandan/llamacpp``: ``pip download --no-binary :all:``, then a CPU-only build under
``nice``; ~20 min on 2 cores) and reused afterwards.

    python bench/llamacpp_check.py [--seeds 0 1 2] [--steps 400] [--prompts 25] [--new 32]

Last line: ``llamacpp_greedy_agreement_q8_0 = X`` (the lowest mean agreement over the models).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

VERSION = "0.3.36"
CMAKE_ARGS = ("-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAVA_BUILD=OFF "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF "
              "-DLLAMA_CURL=OFF")


def ensure_llama_cpp(cache: Path, jobs: int) -> str:
    """Import llama_cpp from ``cache/site``, building it there first if it is not."""
    site = cache / "site"
    sys.path.insert(0, str(site))
    try:
        import llama_cpp

        return llama_cpp.__version__
    except ImportError:
        pass
    sdist = cache / "sdist"
    sdist.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    if not list(sdist.glob("llama_cpp_python-*.tar.gz")):
        subprocess.run([*pip, "download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}",
                        "-d", str(sdist)], check=True)
    tarball = sorted(sdist.glob("llama_cpp_python-*.tar.gz"))[-1]
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs), "FORCE_CMAKE": "1"}
    print(f"building {tarball.name} into {site} (once; nice, {jobs} job(s))", flush=True)
    subprocess.run(["nice", "-n", "19", *pip, "install", "--no-deps", "--target", str(site), str(tarball)],
                   env=env, check=True)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), "diskcache"], check=True)
    import importlib

    importlib.invalidate_caches()
    import llama_cpp

    return llama_cpp.__version__


# --- the models -----------------------------------------------------------------------------------

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
THINGS = ("apples", "books", "coins", "shells", "stones")


def corpus(n: int, rng: random.Random) -> list[str]:
    """Lines with structure a tiny model learns: sums, counts, a fixed sentence frame."""
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 49), rng.randint(0, 49)
        who, what = rng.choice(NAMES), rng.choice(THINGS)
        out.append(rng.choice([f"{a} + {b} = {a + b}.", f"{who} has {a} {what}, {who} gives {b} away.",
                               f"{who.title()} counts {what}: {', '.join(str(a + i) for i in range(4))}."]))
    return out


def hf_dir(style: str, root: Path, seed: int, steps: int) -> tuple[Path, list[str]]:
    """Train a tiny LLaMA (``gpt2``-style BPE) or Qwen2 (``qwen2``-style BPE) and save_pretrained it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export"))
    from hf_dirs import CHATML, bpe_tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    rng = random.Random(seed)
    texts = corpus(4000, rng)
    tok = bpe_tokenizer("gpt2" if style == "llama" else "qwen2", texts, vocab_size=400)
    torch.manual_seed(seed)
    dims = {"hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 128}
    if style == "llama":
        tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
        model = LlamaForCausalLM(LlamaConfig(vocab_size=tok.get_vocab_size(), tie_word_embeddings=True,
                                             bos_token_id=0, eos_token_id=1, **dims))
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        fast.chat_template = CHATML
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=tok.get_vocab_size() + 3, tie_word_embeddings=False,
                                             rope_theta=1e6, **dims))
    ids = [fast(t + "\n")["input_ids"] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for step in range(steps):
        batch = [rng.choice(ids) for _ in range(32)]
        width = max(map(len, batch))
        x = torch.tensor([b + [0] * (width - len(b)) for b in batch])
        labels = torch.tensor([b + [-100] * (width - len(b)) for b in batch])
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 3e-3 * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.1416)).item())
    out = root / f"{style}-hf-s{seed}"
    model.eval().save_pretrained(out)
    fast.save_pretrained(out)
    held = corpus(200, random.Random(10_000 + seed))
    return out, [h[: max(3, len(h) // 2)] for h in held]


def bpe_run(root: Path, seed: int, steps: int) -> tuple[Path, list[str]]:
    """A liandan run (LLaMA style) on generated text with its own byte-level BPE."""
    import liandan

    rng = random.Random(seed)
    text = root / f"corpus-{seed}.txt"
    text.write_text("\n".join(corpus(4000, rng)))
    epochs = max(1, round(steps * 32 / 3200))  # ~steps optimizer steps at batch 32 on the 3,200 training lines
    recipe = {"name": "bpe-llama", "seed": seed,
              "data": {"source": "text", "path": str(text), "tokenizer": "bpe", "vocab_size": 400, "max_len": 48,
                       "batch_size": 32},
              "model": {"name": "gpt", "style": "llama", "layers": 2, "dim": 96, "heads": 4},
              "optim": {"name": "adamw", "lr": 3e-3}, "schedule": {"name": "cosine", "warmup_steps": 20},
              "train": {"epochs": epochs, "tensorboard": False}, "doctor": {"enabled": False}, "report": False}
    run = liandan.train(recipe, out=root / f"bpe-run-s{seed}", quiet=True)
    held = corpus(200, random.Random(10_000 + seed))
    return run.dir, [h[: max(3, len(h) // 2)] for h in held]


def liandan_run(root: Path, seed: int) -> tuple[Path, list[str]]:
    import liandan

    run = liandan.train("arith-gpt", overrides=["model.style=llama", "data.n=4000", "train.epochs=6",
                                                f"seed={seed}", "doctor.enabled=false", "train.tensorboard=false",
                                                "report=false"], out=root / f"llama-run-s{seed}", quiet=True)
    rng = random.Random(seed)
    return run.dir, [f"{rng.randint(0, 99)}+{rng.randint(0, 99)}=" for _ in range(200)]


# --- torch vs llama.cpp ------------------------------------------------------------------------------


@torch.no_grad()
def torch_greedy(model: torch.nn.Module, ids: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    out, first = list(ids), None
    for _ in range(n):
        logits = model(input_ids=torch.tensor([out])).logits[0, -1].float()
        first = logits if first is None else first
        out.append(int(logits.argmax()))
    return out[len(ids):], first


def llama_greedy(llm, ids: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    llm.reset()
    llm.eval(ids)
    first = torch.tensor(llm.scores[llm.n_tokens - 1]).float()
    out = []
    for _ in range(n):
        nxt = int(llm.scores[llm.n_tokens - 1].argmax())
        out.append(nxt)
        llm.eval([nxt])
    return out, first


def torch_reference(model, prompt_ids: list[list[int]], n_new: int) -> list[tuple[list[int], list[int], torch.Tensor]]:
    """(prompt ids, ``model``'s greedy continuation, its first-step logits) per prompt."""
    return [(ids, *torch_greedy(model, ids, n_new)) for ids in prompt_ids]


def check_file(path: str, src, ref: list, same_file: list, n_new: int) -> dict:
    """llama.cpp on one file: tokenisation of the sample texts; greedy decoding free-running against
    torch's on the source model (``ref``) and on the file as transformers dequantises it
    (``same_file``: the same weights, so only llama.cpp's arithmetic differs); and teacher-forced
    (llama.cpp fed torch's continuation: next-token agreement with the same context)."""
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=256, n_threads=1, n_batch=256, logits_all=True, verbose=False,
                type_k=0, type_v=0, seed=0)  # GGML_TYPE_F32 KV cache: no f16 rounding of keys/values
    same_tok = sum(llm.tokenize(t.encode(), add_bos=True, special=False) == src.encode(t) for t in src.texts)
    agree = agree_file = forced = total = identical = 0
    dmax = 0.0
    for (ids, want, first_ref), (_, want_file, _) in zip(ref, same_file, strict=True):
        got, first_got = llama_greedy(llm, ids, n_new)
        n_vocab = first_ref.shape[-1]
        dmax = max(dmax, float((first_got[:n_vocab] - first_ref).abs().max()))
        agree += sum(a == b for a, b in zip(got, want, strict=True))
        agree_file += sum(a == b for a, b in zip(got, want_file, strict=True))
        total += n_new
        identical += got == want
        llm.reset()
        llm.eval(ids + want[:-1])
        preds = llm.scores[len(ids) - 1: len(ids) - 1 + len(want)].argmax(-1).tolist()
        forced += sum(a == b for a, b in zip(preds, want, strict=True))
    res = {"tok": (same_tok, len(src.texts)), "greedy": (agree, total), "identical": (identical, len(ref)),
           "forced": (forced, total), "same_file": (agree_file, total), "dmax": dmax}
    if src.oov_text is not None:  # characters outside the char vocabulary: llama.cpp used to abort
        res["oov_ids"] = len(llm.tokenize(src.oov_text.encode(), add_bos=True, special=False))
    del llm
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--prompts", type=int, default=25)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--models", nargs="+", default=["llama-hf", "qwen2-hf", "bpe-run", "llama-run"])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "liandan" / "llamacpp")
    ap.add_argument("--jobs", type=int, default=1, help="parallel compile jobs for the one-time build")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    version = ensure_llama_cpp(args.cache, args.jobs)
    if args.build_only:
        print(f"llama-cpp-python {version} ready in {args.cache / 'site'}")
        return
    from liandan.export import to_gguf
    from liandan.export.gguf_check import load_gguf_model
    from liandan.export.gguf_source import open_source

    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            for name in args.models:
                made = (liandan_run(root, seed) if name == "llama-run" else bpe_run(root, seed, args.steps)
                        if name == "bpe-run" else hf_dir(name[:-3], root, seed, args.steps))
                src = open_source(made[0], n_texts=200)
                prompts = made[1][: args.prompts]
                # within the trained context (the arith run's is a dozen characters)
                n_new = max(1, min(args.new, src.model.config.max_position_embeddings
                                   - max(len(src.encode(p)) for p in prompts)))
                prompt_ids = [src.encode(p) for p in prompts]
                ref = torch_reference(src.model, prompt_ids, n_new)
                for outtype in ("f32", "q8_0", "q4_0"):
                    e = to_gguf(made[0], root / f"{name}-s{seed}-{outtype}.gguf", outtype=outtype)
                    same_file = torch_reference(load_gguf_model(Path(e["path"]))[0], prompt_ids, n_new)
                    res = check_file(e["path"], src, ref, same_file, n_new)
                    res["pre"] = e["tokenizer"]["pre"] or e["tokenizer"]["model"]
                    res["n_new"] = n_new
                    rows.setdefault((name, outtype), []).append(res)
                    print(f"  {name} seed {seed} {outtype}: greedy {res['greedy'][0]}/{res['greedy'][1]}, "
                          f"tokenizer {res['tok'][0]}/{res['tok'][1]}", flush=True)

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.3f} ± {statistics.pstdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"

    print(f"\nllama-cpp-python {version} (built from source, CPU), KV cache F32, 1 thread; seeds {args.seeds}; "
          f"{args.prompts} prompts x up to {args.new} greedy tokens (within the trained context) per file; "
          f"2-core CPU sandbox")
    print("greedy: llama.cpp decoding on its own vs torch on the source model, token by token (agree/total,"
          " mean ± sd over seeds, sequences identical); forced: llama.cpp fed torch's continuation; same file:"
          " vs torch on the file as transformers dequantises it; Δlogit: first step, vs the source model")
    print(f"{'model':<10}{'pre':<7}{'type':<6}{'tokenizer':>10}{'greedy':>11}{'mean ± sd':>15}{'identical':>10}"
          f"{'forced':>11}{'same file':>11}{'max|Δlogit|':>12}")
    worst = {}

    def tot(rs: list[dict], key: str) -> str:
        return f"{sum(r[key][0] for r in rs)}/{sum(r[key][1] for r in rs)}"

    for (name, outtype), rs in rows.items():
        frac = [r["greedy"][0] / r["greedy"][1] for r in rs]
        worst.setdefault(outtype, []).append(statistics.mean(frac))
        print(f"{name:<10}{rs[0]['pre']:<7}{outtype:<6}{tot(rs, 'tok'):>10}{tot(rs, 'greedy'):>11}{ms(frac):>15}"
              f"{tot(rs, 'identical'):>10}{tot(rs, 'forced'):>11}{tot(rs, 'same_file'):>11}"
              f"{max(r['dmax'] for r in rs):>12.2e}")
        if "oov_ids" in rs[0]:
            print(f"{'':<10}text with characters outside the vocabulary: {rs[0]['oov_ids']} ids, no abort")
    print(f"llamacpp_greedy_agreement_q8_0 = {min(worst.get('q8_0', [float('nan')])):.4f}")


if __name__ == "__main__":
    main()
