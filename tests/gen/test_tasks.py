"""The ``gan`` and ``diffusion`` tasks through the trainer: shortened preset runs, exact resume
with both GAN optimizers, the ``sample`` verb, and the sample-quality measure."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

import liandan
from liandan.evaluation.generative import confidence_stats, sample_quality
from liandan.generation.images import draw_images
from liandan.training.tasks.generative import to_model_space, to_pixels

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
TINY_GAN = {"name": "tiny-gan", "seed": 0, "task": "gan",
            "data": {"source": "digits", "split": [0.5, 0.5], "batch_size": 64, "normalize": False},
            "model": {"name": "dcgan", "nz": 16, "width": 16},
            "optim": {"name": "adam", "lr": 2e-4, "weight_decay": 0.0, "betas": [0.5, 0.999]},
            "train": {"epochs": 2, "log_every": 5, "tensorboard": False}, "doctor": {"enabled": False},
            "report": False}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    return liandan.train("digits-dcgan", overrides=[*FAST, "train.epochs=10"], out=out, quiet=True)


def _rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_gan_preset_learns_the_pixel_statistics(gan_run) -> None:
    assert gan_run.status == "completed"
    rows = _rows(gan_run.dir)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(rows[0])
    val = [r for r in rows if r["split"] == "val"]
    assert len(val) == 10 and all(math.isfinite(float(r["d_loss"])) for r in val)
    # D neither wins outright nor is fooled completely (both collapse modes of GAN training)
    last = gan_run.summary["final"]["val"]
    assert 0.05 < last["d_fake"] < last["d_real"] < 0.95, last
    # an untrained generator's Tanh sits near 0 (pixel 0.5); the digits are mostly dark background
    x = draw_images(gan_run.model, 256, seed=0)
    data_mean = float(gan_run.data.source.x.mean())
    assert abs(float(x.mean()) - data_mean) < 0.1, (float(x.mean()), data_mean)


def test_gan_resume_equals_uninterrupted_run(tmp_path) -> None:
    a = liandan.train(TINY_GAN, out=tmp_path / "a", quiet=True)
    liandan.train(TINY_GAN, overrides=["train.epochs=1"], out=tmp_path / "b", quiet=True)
    state = torch.load(next((tmp_path / "b" / "checkpoints").glob("step-*")) / "state.pt", weights_only=True)
    assert state["task"]["opt_d"]["state"], "the discriminator's Adam moments must be checkpointed"
    assert state["optimizer"]["state"], "the generator's optimizer is the trainer's"
    b = liandan.resume(tmp_path / "b", quiet=True, epochs=2)
    assert a.status == b.status == "completed" and a.summary["steps"] == b.summary["steps"]
    wa = load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "last.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:3]
    assert a.summary["final"]["val"] == b.summary["final"]["val"]


@pytest.mark.slow
def test_diffusion_preset_lowers_the_noise_prediction_loss(tmp_path) -> None:
    run = liandan.train("digits-ddpm", overrides=[*FAST, "train.epochs=3", "model.width=16"],
                        out=tmp_path / "d", quiet=True)
    assert run.status == "completed"
    steps = [float(r["loss"]) for r in _rows(run.dir) if r["split"] == "step"]
    # the zero-initialised output predicts ε = 0 first: loss E[ε²] = 1
    assert steps[0] > 0.5 and run.summary["final"]["val"]["loss"] < 0.4, (steps[:3], run.summary["final"])
    assert int(run.model.ema_updates) == run.summary["steps"]
    x = draw_images(run.model, 4, seed=1, steps=20)
    assert x.shape == (4, 1, 8, 8) and torch.equal(x, draw_images(run.model, 4, seed=1, steps=20))


def test_model_space_round_trip() -> None:
    from liandan.data.pipeline import DataInfo

    info = DataInfo("digits", "gan", 1, (1, 8, 8), x_mean=[0.3], x_std=[0.4])
    pix = torch.rand(2, 1, 8, 8)
    x = to_model_space(info, info.normalize_x(pix))
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    assert torch.allclose(to_pixels(x), pix, atol=1e-6)


def test_sample_cli_writes_a_png_and_bad_dirs_exit_2(gan_run, tmp_path, cli) -> None:
    out = tmp_path / "grid.png"
    code, stdout, err = cli("sample", str(gan_run.dir), "-n", "16", "--out", str(out), "--seed", "3", "--json")
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    PIL = pytest.importorskip("PIL.Image")
    with PIL.open(out) as im:  # 4×4 tiles of 8×8 pixels, ×4, with a 1-pixel border
        assert im.size == (4 * 33 + 1, 4 * 33 + 1) and im.mode == "L"
    again = tmp_path / "again.png"
    assert cli("sample", str(gan_run.dir), "-n", "16", "--out", str(again), "--seed", "3")[0] == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same picture
    code, stdout, err = cli("sample", str(tmp_path / "nope"), "--out", str(out))
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_sample_of_a_classifier_run_is_a_user_error(tmp_path, cli) -> None:
    liandan.train("digits-mlp", overrides=[*FAST, "train.max_steps=1"], out=tmp_path / "c", quiet=True)
    code, _, err = cli("sample", str(tmp_path / "c"), "--out", str(tmp_path / "g.png"))
    assert code == 2 and "gan or diffusion" in err and len(err.strip().splitlines()) == 1


def test_confidence_stats() -> None:
    probs = torch.tensor([[0.95, 0.05], [0.2, 0.8], [0.99, 0.01], [0.05, 0.95]])
    s = confidence_stats(probs, 0.9)
    assert s["confident_fraction"] == 0.75 and s["class_histogram"] == [2, 2] and s["classes_present"] == 2
    assert s["entropy_bits"] == pytest.approx(1.0) and s["max_entropy_bits"] == 1.0
    one = confidence_stats(torch.tensor([[0.1, 0.9, 0.0]] * 5))
    assert one["entropy_bits"] == 0.0 and one["classes_present"] == 1


def test_sample_quality_of_a_short_gan_run(gan_run, tmp_path) -> None:
    clf = liandan.train("digits-mlp", overrides=[*FAST, "train.epochs=10"], out=tmp_path / "clf", quiet=True)
    q = sample_quality(gan_run.dir, clf.dir, n=200, seed=0)
    assert q["n"] == 200 and sum(q["class_histogram"]) == 200
    assert q["real"]["confident_fraction"] > 0.75 and q["real"]["classes_present"] == 10
    # ten epochs already give digit-like samples of many classes (the full preset: see bench/gen_quality.py)
    assert q["confident_fraction"] > 0.2 and q["classes_present"] >= 8, q


def test_gan_accumulation_joins_the_group_and_clipping_applies(tmp_path) -> None:
    sets = ["train.accumulate=2", "train.grad_clip=0.5", "train.max_steps=3", "train.log_every=1"]
    run = liandan.train(TINY_GAN, overrides=sets, out=tmp_path / "acc", quiet=True)
    assert run.status == "completed" and run.summary["steps"] == 3
    assert run.summary["effective_batch_size"] == 128
    norms = [float(r["grad_norm"]) for r in _rows(run.dir) if r["split"] == "step"]
    assert norms and all(math.isfinite(n) for n in norms)  # reported before clipping, as the trainer does
