"""A plugin that ``pip install`` registers a model and a data source through the one
``liandan.plugins`` entry-point group (examples/plugin/): listed and trainable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[2] / "examples" / "plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin pip-installed (offline, no build isolation) into a directory of its own."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(PLUGIN, tmp / "src")  # the build's files stay out of the source tree
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True)
    return target


def _liandan(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "liandan", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_plugin_entries_are_listed(site) -> None:
    models = _liandan(site, "list", "models")
    assert models.returncode == 0, models.stderr
    assert any(ln.startswith("example_fcnet ") for ln in models.stdout.splitlines())
    assert any(ln.startswith("resnet18 ") for ln in models.stdout.splitlines())  # liandan's own still there
    data = _liandan(site, "list", "data", "--verbose")
    assert data.returncode == 0, data.stderr
    assert any(ln.startswith("example_blobs ") for ln in data.stdout.splitlines())
    assert "number of clusters, one class each" in data.stdout  # the plugin's Args: help


@pytest.mark.slow  # trains: the fast tier keeps the listing checks
def test_recipe_with_plugin_model_and_data_trains(site, tmp_path) -> None:
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text("name: plugin\ndata: {source: example_blobs, n: 200, classes: 3, batch_size: 32}\n"
                      "model: {name: example_fcnet, hidden: 16}\ntrain: {epochs: 1, tensorboard: false}\n"
                      "doctor: {enabled: false}\nreport: false\n")
    out = tmp_path / "run"
    done = _liandan(site, "train", str(recipe), "--out", str(out), "-q", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "checkpoints" / "final.safetensors").exists()


def test_plugin_is_not_seen_without_it() -> None:
    from liandan.registry import MODELS

    assert "example_fcnet" not in MODELS  # installed only into the subprocesses' path
