"""``text_classify``: a label per text, by a pre-trained model's sequence-classification head
(``model: {name: hf, path: ...}``; BERT-style models classify the ``[CLS]`` state, causal ones
their last token). The loss, metrics, splits and every run tool are :class:`Classify`'s; what
differs is the input: token ids of the model's tokenizer, so ``liandan predict`` takes texts and
the report shows test texts with their predicted label.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from liandan.errors import LiandanError
from liandan.registry import register_task
from liandan.training.tasks import ExampleSource, eval_outputs
from liandan.training.tasks.supervised import Classify

if TYPE_CHECKING:
    from liandan.training.run import Run


def run_tokenizer(run: Run) -> Any:
    """The tokenizer the run's data was encoded with: ``RUN/hf/`` (written at the end of the run),
    else the recipe's ``data.tokenizer`` (the pre-trained model's directory)."""
    from liandan.models.hf_pretrained import load_tokenizer
    from liandan.runs import HF

    hf = Path(run.dir) / HF
    if (hf / "tokenizer_config.json").is_file():
        return load_tokenizer(str(hf), "tokenizer")
    path = run.recipe.data.options.get("tokenizer")
    if not isinstance(path, str):
        raise LiandanError(f"{run.dir}: no tokenizer: neither {hf} nor data.tokenizer in its recipe")
    return load_tokenizer(path)


def texts_of(inputs: list[Any]) -> list[tuple[str, str]]:
    """``(name, text)`` per input: a ``.txt`` file gives each non-empty line, anything else is the text."""
    from liandan.paths import read_text

    def is_txt(p: Path) -> bool:
        try:
            return p.suffix == ".txt" and p.is_file()
        except (OSError, ValueError):  # a text that cannot be a file name (too long, a NUL byte)
            return False

    out = []
    for item in inputs:
        p = Path(str(item))
        if is_txt(p):
            lines = [ln for ln in read_text(p, "input file", encoding="utf-8").splitlines() if ln.strip()]
            out += [(f"{p}[{i}]", ln) for i, ln in enumerate(lines)]
        else:
            out.append((str(item), str(item)))
    return out


@register_task("text_classify", tags=("pretrained",))
class TextClassify(Classify):
    """Text classification: a pre-trained model's head over token ids; accuracy, macro F1 (as classify)."""

    name = "text_classify"
    hf_head = "seq_cls"
    export_output = "logits"  # token ids (batch, seq) in: the ONNX graph takes input_ids

    def read_inputs(self, run: Run, inputs: list[Any]) -> list[tuple[str, torch.Tensor]]:
        """Texts (or ``.txt`` files, a text per line) as token ids, cut to the run's row length."""
        tok = run_tokenizer(run)
        out = []
        for name, text in texts_of(inputs):
            ids = tok(text, add_special_tokens=True, truncation=True, max_length=self.info.max_len)["input_ids"]
            out.append((name if len(name) <= 60 else name[:57] + "...", torch.tensor(ids, dtype=torch.int64)))
        return out

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A table of the split's texts with the predicted label (and its probability) and the true one."""
        tok = run_tokenizer(run)
        x, y = ex.inputs()
        probs = eval_outputs(run.model, self.info, x).softmax(-1)  # (N, K)
        p, pred = probs.max(-1)
        names = self.info.class_names or [str(i) for i in range(self.info.num_classes)]
        rows = [{"prompt": tok.decode(ids, skip_special_tokens=True), "expected": names[t],
                 "got": f"{names[k]} ({q:.2f})", "right": k == t}
                for ids, t, k, q in zip(x.tolist(), y.tolist(), pred.tolist(), p.tolist(), strict=True)]
        return {"title": f"predicted labels of {ex.split} texts", "rows": rows}
