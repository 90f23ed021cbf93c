"""The image-text presets, trained shorter than the full presets (whose numbers are in the issue
note), against bars that chance cannot reach. Short runs learn colour long before shape, so they
check the zero-shot and captioning machinery on colour words, which the same code handles."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import liandan
from liandan.data.captions import SIZES, caption_text, encode, tokenizer
from liandan.data.shapes import COLOURS, SHAPES
from liandan.training.tasks.vision_language import (
    caption_class,
    generate_captions,
    vision_language_metrics,
    zero_shot_logits,
)

PRESETS = ["shapes-clip", "shapes-blip"]
# a shorter run: fewer, smaller epochs; no doctor, report or TensorBoard
FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false", "data.n=1000"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_opens_with_its_launch_command(name: str) -> None:
    text = (Path(liandan.__file__).parent / "presets" / f"{name}.yaml").read_text().splitlines()
    assert text[0] == f"# liandan train {name}" and text[1].startswith("# ") and len(text[1]) > 20


def _test_split(run) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = next(iter(run.data.eval_batches("test").epoch(0)))
    return x, y


@pytest.mark.slow
def test_shapes_clip_learns_to_match_images_and_captions(tmp_path) -> None:
    run = liandan.train("shapes-clip", overrides=[*FAST, "train.epochs=3"], out=tmp_path / "r", quiet=True)
    test = run.summary["final"]["test"]
    assert test["retrieval_accuracy"] > 0.15 and "zero_shot_accuracy" in test, test  # chance ≈ 0.02
    again = vision_language_metrics(tmp_path / "r")  # the Python surface re-evaluates the saved run
    assert again["zero_shot_accuracy"] == pytest.approx(test["zero_shot_accuracy"])
    # zero-shot colour classification from text prompts alone: "a SIZE red SHAPE", ... per colour
    tok, x, y = tokenizer(), *_test_split(run)
    prompts = torch.stack([encode(tok, [caption_text(s, c, z) for s, z in itertools.product(SHAPES, SIZES)],
                                  run.info.max_len) for c in COLOURS])  # (8, 30, T)
    pred = zero_shot_logits(run.model, x, prompts).argmax(-1)
    colour = caption_class(y, torch.tensor([tok.index[c] for c in COLOURS]))
    assert float((pred == colour).float().mean()) > 0.5  # chance 0.125
    assert zero_shot_logits(run.model, x[:4], prompts, ensemble="mean").shape == (4, 8)


@pytest.mark.slow
def test_shapes_blip_learns_to_caption(tmp_path) -> None:
    run = liandan.train("shapes-blip", overrides=[*FAST, "data.n=1200", "train.epochs=4"], out=tmp_path / "r",
                        quiet=True)
    test = run.summary["final"]["test"]
    assert test["token_accuracy"] > 0.55 and "shape_accuracy" in test, test  # no image: ≈ 0.51
    tok, x, y = tokenizer(), *_test_split(run)
    caps = generate_captions(run.model, x, tok, max_new=run.info.max_len - 1)
    assert len(caps) == len(x) and all(c.startswith("a ") for c in caps), caps[:5]
    said = [next((i for i, c in enumerate(COLOURS) if c in cap.split()), -1) for cap in caps]
    colour = caption_class(y, torch.tensor([tok.index[c] for c in COLOURS]))
    assert float((torch.tensor(said) == colour).float().mean()) > 0.25  # the caption names the colour; chance 0.125


@pytest.fixture
def shape_images(tmp_path) -> tuple[Path, torch.Tensor]:
    """Four raw shape images (the predict verb normalises them) saved as one .npy file."""
    import numpy as np

    from liandan.data.shapes import render

    imgs = render(4, 32, seed=123)[0]  # (4, 3, 32, 32) in [0, 1]
    np.save(tmp_path / "shapes.npy", imgs)
    return tmp_path / "shapes.npy", torch.from_numpy(imgs)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.slow
def test_predict_captions_or_classifies_zero_shot(name: str, tmp_path, shape_images, cli) -> None:
    """``liandan predict`` on an image-text run: the caption a captioner writes, the zero-shot
    classes of a CLIP run; the same as the Python surface on the normalised images."""
    run = liandan.train(name, overrides=[*FAST, "data.n=300", "train.epochs=1"], out=tmp_path / "r", quiet=True)
    path, raw = shape_images
    preds = liandan.predict(run.dir, [str(path)])
    x = torch.stack([run.info.normalize_x(im) for im in raw])
    if name == "shapes-blip":
        assert [p["caption"] for p in preds] == generate_captions(run.model, x, tokenizer(), run.info.max_len - 1)
    else:
        prompts = torch.as_tensor(run.info.extras["prompt_ids"])
        probs = zero_shot_logits(run.model, x, prompts).softmax(-1)  # (4, K)
        assert [p["classes"][0]["label"] for p in preds] == [SHAPES[i] for i in probs.argmax(-1).tolist()]
        got = torch.tensor([p["classes"][0]["prob"] for p in preds])
        assert torch.allclose(got, probs.max(-1).values, atol=1e-5)
    code, out, _ = cli("predict", str(run.dir), str(path))
    assert code == 0 and len(out.splitlines()) == 4 and out.startswith(f"{path}[0]: ")
    # the report shows the task's metrics and a figure of test images with the model's answers
    from liandan.report import write_report

    html = write_report(run.dir).read_text()
    assert ("shape_accuracy" if name == "shapes-blip" else "zero_shot_accuracy") in html
    assert (run.dir / "figures" / "examples.png").stat().st_size > 5000
