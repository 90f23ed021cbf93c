"""Fingerprint every preset: the SHA-256 of its final weights and its test metrics.

    python bench/preset_fingerprints.py [PRESET ...] > fingerprints.json

Run it at two commits (same machine, same torch threads) and compare the JSON: a refactor that
changes nothing a user sees leaves every hash and metric equal. CPU, fp32, each preset's own
seed; TensorBoard, the report and the doctor's repair stay off so only training is compared.
The last line prints how many presets were fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time

import torch

import liandan
from liandan.recipe import preset_names


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(names: list[str]) -> None:
    names = names or preset_names()
    out: dict[str, dict] = {}
    for name in names:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run = liandan.train(name, overrides={"train.tensorboard": False, "report": False,
                                                 "train.device": "cpu"}, out=f"{tmp}/run", quiet=True)
            out[name] = {"weights_sha256": weights_hash(run.model),
                         "test": run.summary.get("final", {}).get("test", {}),
                         "wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1, sort_keys=True))
    print(f"fingerprinted {len(out)} presets")


if __name__ == "__main__":
    main(sys.argv[1:])
