"""The ``records`` source: users' JSONL, CSV, Parquet and save_to_disk data read with ``datasets``,
tokenized with the model's tokenizer; the classification and SFT schemas; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liandan.data import build_data
from liandan.data.chat import render
from liandan.data.text import IGNORE
from liandan.errors import LiandanError
from liandan.models.hf_pretrained import load_tokenizer
from liandan.recipe import DataConfig
from tests.models import hf_tiny

LABELS = ["greet", "weather", "music"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    return {a: str(hf_tiny.write(root, a)) for a in ("bert", "llama", "qwen2", "gpt2")}


def labelled(n: int = 30, seed: int = 0) -> list[dict]:
    return [{"text": t, "label": LABELS[i % 3]} for i, t in enumerate(hf_tiny.sentences(n, seed))]


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def data(tok: str, path: str, **kw) -> object:
    return build_data(DataConfig(source="records", path=path, tokenizer=tok, batch_size=8, **kw), seed=0)


def test_every_format_gives_the_same_rows(tiny, tmp_path) -> None:
    import datasets

    rows = labelled()
    ds = datasets.Dataset.from_list(rows)
    files = {"jsonl": jsonl(tmp_path / "r.jsonl", rows), "csv": str(tmp_path / "r.csv"),
             "parquet": str(tmp_path / "r.parquet"), "disk": str(tmp_path / "saved")}
    ds.to_csv(files["csv"])
    ds.to_parquet(files["parquet"])
    ds.save_to_disk(files["disk"])
    built = {k: data(tiny["bert"], f).source for k, f in files.items()}
    ref = built["jsonl"]
    tok = load_tokenizer(tiny["bert"])
    assert ref.x[0, : len(tok(rows[0]["text"])["input_ids"])].tolist() == tok(rows[0]["text"])["input_ids"]
    assert ref.class_names == sorted(LABELS) and ref.task == "text_classify"
    for k, src in built.items():
        assert torch.equal(src.x, ref.x) and torch.equal(src.y, ref.y), k


def test_saved_dataset_dict_gives_its_splits_and_fields_map_columns(tiny, tmp_path) -> None:
    import datasets

    rename = lambda rows: [{"sentence": r["text"], "intent": r["label"]} for r in rows]  # noqa: E731
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rename(labelled(30))),
                               "validation": datasets.Dataset.from_list(rename(labelled(9, seed=1))),
                               "test": datasets.Dataset.from_list(rename(labelled(6, seed=2)))})
    dd.save_to_disk(str(tmp_path / "dd"))
    dm = data(tiny["bert"], str(tmp_path / "dd"), fields={"text": "sentence", "label": "intent"})
    assert dm.info.sizes == {"train": 30, "val": 9, "test": 6}
    assert dm.info.class_names == sorted(LABELS)


def test_integer_labels_keep_their_ids_and_val_test_files(tiny, tmp_path) -> None:
    rows = [{"text": r["text"], "label": i % 4} for i, r in enumerate(labelled(40))]
    dm = data(tiny["bert"], jsonl(tmp_path / "t.jsonl", rows), val=jsonl(tmp_path / "v.jsonl", rows[:8]),
              test=jsonl(tmp_path / "s.jsonl", rows[8:12]))
    assert dm.info.class_names == ["0", "1", "2", "3"] and dm.info.sizes == {"train": 40, "val": 8, "test": 4}
    assert dm.source.y[:8].tolist() == [r["label"] for r in rows[:8]]


def test_errors_name_what_is_wrong(tiny, tmp_path) -> None:
    good = jsonl(tmp_path / "good.jsonl", labelled())
    (tmp_path / "empty.jsonl").write_text("")
    cases = [
        ({"path": jsonl(tmp_path / "nofield.jsonl", [{"sentence": "a", "label": "x"}] * 5)},
         r"no field 'text'; fields present: sentence, label"),
        ({"path": str(tmp_path / "empty.jsonl")}, "is empty"),
        ({"path": good, "test": jsonl(tmp_path / "unseen.jsonl", [{"text": "a cat", "label": "sports"}])},
         r"label 'sports', which the training records never show"),
        ({"path": good, "max_len": 4}, r"record 0 has \d+ tokens, more than the model's context of 4"),
        ({"path": str(tmp_path / "absent.jsonl")}, "not found"),
        ({"path": str(tmp_path)}, "not a datasets save_to_disk folder"),
    ]
    for opts, msg in cases:
        with pytest.raises(LiandanError, match=msg) as e:
            data(tiny["bert"], **opts)
        assert "\n" not in str(e.value)
    with pytest.raises(LiandanError, match="records are tokenized with a model's tokenizer"):
        build_data(DataConfig(source="records", path=good), seed=0)


def test_truncate_cuts_with_a_count(tiny, tmp_path) -> None:
    rows = labelled(30)
    dm = data(tiny["bert"], jsonl(tmp_path / "r.jsonl", rows), max_len=5, truncate=True)
    tok = load_tokenizer(tiny["bert"])
    cut = [i for i, r in enumerate(rows) if len(tok(r["text"])["input_ids"]) > 5]
    assert dm.info.input_shape == (5,) and cut
    assert f"{len(cut)} records cut to 5 tokens" in dm.info.describe()
    assert (dm.source.x[cut, -1] == tok.sep_token_id).all()  # cut by the tokenizer: [SEP] stays last


# --- sft --------------------------------------------------------------------------------------------


def chats(n: int, seed: int = 0) -> list[dict]:
    s = hf_tiny.sentences(2 * n, seed)
    return [{"prompt": s[2 * i], "response": s[2 * i + 1]} for i in range(n)]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_sft_learns_response_tokens_only(tiny, tmp_path, arch: str) -> None:
    rows = chats(12)
    dm = data(tiny[arch], jsonl(tmp_path / "c.jsonl", rows), split=[1.0, 0.0])
    tok = load_tokenizer(tiny[arch])
    assert dm.info.task == "sft"
    for i, r in enumerate(rows):
        x, y = dm.source.x[i], dm.source.y[i]
        learned = [int(t) for t in y if t != IGNORE]
        answer = tok(r["response"], add_special_tokens=False)["input_ids"]
        assert learned[: len(answer)] == answer  # the response's tokens, then the end-of-turn marker(s)
        end = tok.eos_token_id
        assert end in learned[len(answer):] and len(learned) <= len(answer) + 2
        first = int((y != IGNORE).nonzero()[0])
        prompt = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        seq = x[: first + 1].tolist()
        assert any(seq[j: j + len(prompt)] == prompt for j in range(len(seq)))  # the prompt is context


def test_multi_turn_chat_learns_every_assistant_turn(tiny) -> None:
    tok = load_tokenizer(tiny["qwen2"])
    chat = [{"role": "system", "content": "be good"}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hello there"}, {"role": "user", "content": "what time"},
            {"role": "assistant", "content": "no time"}]
    ids, learned = render(tok, chat, "test")
    got = tok.decode([t for t, k in zip(ids, learned, strict=True) if k])
    assert got == "hello there<|im_end|>\nno time<|im_end|>\n"  # both answers with their end-of-turn, nothing else


def test_packing_restarts_positions_and_keeps_every_token(tiny, tmp_path) -> None:
    rows = chats(20)
    path = jsonl(tmp_path / "c.jsonl", rows)
    plain = data(tiny["qwen2"], path, split=[1.0, 0.0])
    packed = data(tiny["qwen2"], path, split=[1.0, 0.0], packing=True, max_len=128)
    x, y = packed.source.x, packed.source.y
    assert x.dim() == 3 and x.shape[1] == 2 and x.shape[2] == 128 and len(x) < len(rows)
    assert (plain.source.y != IGNORE).sum() == (y != IGNORE).sum()  # no learned token lost or added
    starts = int((x[:, 1] == 0).sum())
    assert starts == len(rows)  # every example starts at position 0 exactly once
    assert "20 examples packed into" in packed.info.describe()


def test_sft_errors(tiny, tmp_path) -> None:
    bad = jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}] * 4)
    with pytest.raises(LiandanError, match="has no assistant message"):
        data(tiny["qwen2"], bad)
    multi = jsonl(tmp_path / "multi.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                           {"role": "assistant", "content": "yes"}] * 2}] * 4)
    with pytest.raises(LiandanError, match="no chat template"):
        data(tiny["gpt2"], multi)
    with pytest.raises(LiandanError, match="packing serves sft"):
        data(tiny["bert"], jsonl(tmp_path / "l.jsonl", labelled()), packing=True)
