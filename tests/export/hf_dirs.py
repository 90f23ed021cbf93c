"""Tiny Hugging Face ``save_pretrained`` directories for the GGUF tests, written into tmp_path.

Real tokenizers, built the way their families build them: byte-level BPE learned with the
``tokenizers`` package on a generated corpus, GPT-2's pre-tokenizer (``ByteLevel``) for the LLaMA
directory, Qwen2's (NFC, ``Split`` on its regex, ``ByteLevel`` without regex) with ChatML special
tokens and a chat template for the Qwen2 directory. Models are random-initialised (seeded), with
grouped-query attention, Qwen2's q/k/v biases made non-zero (its init zeroes them, which would
hide a lost bias) and an untied head plus unused padding rows in Qwen2's vocabulary.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

WORDS = ("the", "a", "cat", "dog", "sat", "on", "mat", "and", "ran", "to", "it's", "we'll", "I've", "café", "naïve",
         "über", "日本", "中文", "x", "y", "sum", "is", "of", "Hello", "WORLD")
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            parts.append(rng.choice(WORDS) if r < 0.7 else str(rng.randint(0, 99999)) if r < 0.85
                         else rng.choice([".", ",", "!", "?", "...", "==", "()", "'"]))
            parts.append(rng.choice([" ", " ", " ", "  ", "\n", "\t", ""]))
        out.append("".join(parts))
    return out


def bpe_tokenizer(style: str, texts: list[str], vocab_size: int = 420):
    """A trained ``tokenizers.Tokenizer`` with GPT-2's (``gpt2``) or Qwen2's (``qwen2``) pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from liandan.export.gguf_vocab import QWEN2_REGEX

    tok = Tokenizer(models.BPE())
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<s>", "</s>", "<pad>"]
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def llama_dir(root: Path, seed: int = 0) -> Path:
    """LlamaForCausalLM (GQA 4/2 heads, tied) + a GPT-2-style BPE tokenizer that adds ``<s>``."""
    from tokenizers.processors import TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = bpe_tokenizer("gpt2", corpus())
    tok.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    out = root / "llama-hf"
    LlamaForCausalLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def qwen2_dir(root: Path, seed: int = 0) -> Path:
    """Qwen2ForCausalLM (GQA, non-zero q/k/v biases, untied head, 5 unused vocabulary rows) + a
    Qwen2-style BPE tokenizer with ChatML specials and chat template (no ``<bos>`` added)."""
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = bpe_tokenizer("qwen2", corpus(seed=1))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=tok.get_vocab_size() + 5, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False, rope_theta=1e6, bos_token_id=0, eos_token_id=2)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    out = root / "qwen2-hf"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
