"""A planted world for the sandbox tests: one allowed root holding a tiny classifier run and a tiny
language-model run (both trained through the tool dispatch), and a folder *outside* the root full
of files that carry :data:`SECRET`: text, JSON lines, CSV, images, IDX and CIFAR batches, a
tokenizer and a whole run directory. Tests plant symlinks and paths to them inside the root and
check that no tool response ever holds the secret (or any outside byte) and that the server
keeps answering.
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liandan.agents.function_calling import call_tool
from liandan.agents.sandbox import Sandbox
from liandan.agents.tools import Toolbox

SECRET = "PLANTED-SECRET-5d1e77c0"
TINY = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
OUTSIDE = "outside the allowed directories"


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An MNIST IDX file (uint8) for ``arr``, gzipped when the name ends in .gz."""
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_png(path: Path, value: int = 0) -> None:
    from PIL import Image

    Image.new("L", (8, 8), color=value).save(path)


def write_cifar(path: Path, n: int = 4) -> None:
    path.write_bytes(pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": [i % 2 for i in range(n)]}))


@dataclass
class World:
    """The allowed root, the outside folder, the toolbox over the root and its two runs."""

    root: Path
    out: Path
    box: Toolbox
    tiny: Path = field(init=False)
    lm: Path = field(init=False)
    _ids: itertools.count = field(default_factory=itertools.count)

    def call(self, tool: str, **args: object) -> str:
        """The tool through the function-calling dispatcher (the servers' dispatch): its JSON text."""
        return call_tool(tool, args, self.box)

    def fresh(self, stem: str) -> Path:
        """A new, empty folder inside the root."""
        d = self.root / f"{stem}-{next(self._ids)}"
        d.mkdir()
        return d

    def copy_run(self, run: Path | None = None) -> Path:
        """A copy of the tiny (or another) run inside the root, to plant in."""
        d = self.root / f"run-{next(self._ids)}"
        shutil.copytree(run or self.tiny, d)
        return d

    def link(self, at: Path, target: Path) -> Path:
        """Replace ``at`` (if present) with a symlink to ``target``."""
        if at.is_dir() and not at.is_symlink():
            shutil.rmtree(at)
        elif at.exists() or at.is_symlink():
            at.unlink()
        at.symlink_to(target)
        return at

    def alive(self) -> None:
        """A later valid call succeeds: the server survived the refusal."""
        doc = json.loads(self.call("predict", run_dir=str(self.tiny), features=[0.1] * 13, top=1))
        assert "error" not in doc, doc
        assert doc["predictions"][0]["classes"]


def text_folder(d: Path, lines: int = 80) -> Path:
    (d / "a.txt").write_text("\n".join(f"hello small world {i}" for i in range(lines)) + "\n")
    return d


def build_world(base: Path) -> World:
    """Build the root, the outside secrets and the two runs (about 10 s on a laptop CPU)."""
    root, out = base / "root", base / "outside"
    root.mkdir()
    out.mkdir()
    w = World(root, out, Toolbox(Sandbox([root]), auto_remember=False))
    (out / "secret.txt").write_text("".join(f"{SECRET} line {i}\n" for i in range(80)))
    (out / "secret.jsonl").write_text("".join(json.dumps({"text": f"{SECRET} {i}", "id": SECRET}) + "\n"
                                              for i in range(80)))
    (out / "secret.csv").write_text(f"{SECRET},label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    write_png(out / "secret.png", 200)
    (out / "imgs" / "cls").mkdir(parents=True)
    for i in range(3):
        write_png(out / "imgs" / "cls" / f"{i}.png", 50)
    (out / "idx").mkdir()
    write_idx(out / "idx" / "train-images-idx3-ubyte", np.full((6, 8, 8), 7))
    write_idx(out / "idx" / "t10k-labels-idx1-ubyte.gz", np.arange(4) % 2)
    (out / "cifar").mkdir()
    write_cifar(out / "cifar" / "data_batch_1")
    write_cifar(out / "cifar" / "test_batch")
    (out / "tok.json").write_text(json.dumps({"liandan_tokenizer": "char",
                                              "vocab": ["<pad>", "<bos>", "<eos>", "<unk>", "<mask>", *SECRET]}))
    doc = json.loads(w.call("train", recipe="wine-mlp", overrides=TINY, epochs=1, out="tiny"))
    assert doc.get("status") == "completed", doc
    w.tiny = Path(doc["run_dir"])
    (root / "docs").mkdir()
    docs = text_folder(root / "docs")
    (root / "lm.yaml").write_text(f"name: lm\ndata: {{source: text, path: {docs}, tokenizer: char, max_len: 16, "
                                  "batch_size: 8}\nmodel: {name: gpt, layers: 1, dim: 16, heads: 2}\n")
    doc = json.loads(w.call("train", recipe="lm.yaml", overrides=TINY, epochs=1, out="lm"))
    assert doc.get("status") == "completed", doc
    w.lm = Path(doc["run_dir"])
    run = out / "run"  # a whole run outside, its name and its recipe's name the secret
    shutil.copytree(w.tiny, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "name": SECRET}))
    (run / "recipe.yaml").write_text((run / "recipe.yaml").read_text().replace("name: wine-mlp", f"name: {SECRET}"))
    shutil.copy(out / "secret.jsonl", run / "doctor_probes.jsonl")
    return w


def assert_refused(w: World, response: str, match: str = OUTSIDE) -> None:
    """One-line error naming the refusal, no outside byte, and the server still answers."""
    doc = json.loads(response)
    assert "error" in doc, doc
    assert match in doc["error"], doc["error"]
    assert "\n" not in doc["error"]
    assert SECRET not in response and "root:x:" not in response
    w.alive()
