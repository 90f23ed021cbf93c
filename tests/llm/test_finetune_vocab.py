"""A fine-tune reuses its base's tokenizer: data whose vocabulary differs is refused even when the
vocabulary *size* matches, with the differing tokens named."""

from __future__ import annotations

import string

import pytest

import liandan

from .conftest import FAST, MODEL


def _text_recipe(path, **extra) -> dict:
    return {"name": "letters", "seed": 0, "data": {"source": "text", "path": str(path), "max_len": 16},
            "model": dict(MODEL), "optim": {"lr": 3e-3}, "train": {"epochs": 1}, **extra}


def _corpus(path, letters: str) -> str:
    lines = [" ".join(letters[(i + j) % len(letters)] * 3 for j in range(5)) for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def lower_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    data = _corpus(root / "lower.txt", string.ascii_lowercase[:24])  # a…x + space: 25 + 5 specials
    return root, liandan.train(_text_recipe(data), overrides=FAST, out=root / "base", quiet=True)


def test_same_size_other_tokens_is_refused(lower_base) -> None:
    root, base = lower_base
    upper = _corpus(root / "upper.txt", string.ascii_uppercase[:24])  # A…X + space: the same size
    rec = _text_recipe(upper)
    rec["model"]["from_run"] = str(base.dir)
    with pytest.raises(liandan.LiandanError, match="tokenizer") as e:
        liandan.train(rec, overrides=FAST, out=root / "ft-upper", quiet=True)
    msg = str(e.value)
    assert "'a'" in msg and "'A'" in msg and len(msg.splitlines()) == 1


def test_same_tokens_fine_tune(lower_base) -> None:
    root, base = lower_base
    same = _corpus(root / "same.txt", string.ascii_lowercase[:24][::-1])
    rec = _text_recipe(same)
    rec["model"]["from_run"] = str(base.dir)
    run = liandan.train(rec, overrides=FAST, out=root / "ft-same", quiet=True)
    assert (run.dir / "tokenizer.json").read_text() == (base.dir / "tokenizer.json").read_text()
