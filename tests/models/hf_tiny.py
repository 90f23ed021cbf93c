"""Tiny Hugging Face models written with ``save_pretrained`` (no downloads): LLaMA, Qwen2, GPT-2
and BERT configurations of two layers, 32 wide, with tokenizers built by the ``tokenizers``
library (word-level, or byte-level BPE trained on generated text) and, for the causal chat
models, a chat template."""

from __future__ import annotations

import random
from pathlib import Path

import torch

WORDS = ("the a one two three red blue green small big cat dog bird fish runs sleeps eats sings quickly slowly "
         "today here there yes no what is are how many please tell me about and or not good bad happy sad "
         "weather rain sun music song play stop open close book table time hello thanks").split()
ARCHS = ("llama", "qwen2", "gpt2", "bert")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA_CHAT = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {{ eos_token }} {% endfor %}"
              "{% if add_generation_prompt %}[assistant] {% endif %}")


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def tokenizer(arch: str):
    """A fast tokenizer in the style of ``arch``'s: its special tokens, padding and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if arch in ("gpt2", "qwen2"):  # byte-level BPE, as theirs (transformers rebuilds Qwen2's from vocab + merges)
        specials = ["<|endoftext|>"] if arch == "gpt2" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([*sentences(400), "user assistant system"], trainer)
        if arch == "gpt2":  # no padding token, no chat template: a base model
            return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                           eos_token="<|endoftext|>", unk_token="<|endoftext|>")
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                       additional_special_tokens=["<|im_start|>"], chat_template=CHATML)
    specials = {"bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "llama": ["<unk>", "<s>", "</s>"]}[arch]
    words = [*WORDS, "[user]", "[assistant]", "[system]", "user", "assistant", "system"]
    vocab = {w: i for i, w in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1] if arch == "bert" else specials[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if arch == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   chat_template=LLAMA_CHAT)


def model(arch: str, vocab: int, seed: int = 0) -> torch.nn.Module:
    """A two-layer, 32-wide model: the causal LM (LLaMA, Qwen2, GPT-2) or BERT's bare encoder."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             bos_token_id=1, eos_token_id=2)
        return tf.LlamaForCausalLM(cfg)
    if arch == "qwen2":
        cfg = tf.Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)
        return tf.Qwen2ForCausalLM(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=0,
                            eos_token_id=0)
        return tf.GPT2LMHeadModel(cfg)
    cfg = tf.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    return tf.BertModel(cfg)


def write(root: Path, arch: str, seed: int = 0) -> Path:
    """``root/<arch>``: a save_pretrained directory of a tiny ``arch`` model and its tokenizer."""
    d = Path(root) / arch
    tok = tokenizer(arch)
    model(arch, len(tok), seed).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d
