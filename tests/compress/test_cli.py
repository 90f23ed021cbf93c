"""``liandan compress``: one JSON document with --json, a table otherwise; bad input ends with one
``error: ...`` line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_compress_json_and_table(cli, teacher, tmp_path) -> None:
    code, out, err = cli("compress", str(teacher), "--method", "prune", "--amount", "0.4", "--out",
                         str(tmp_path / "p"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "prune" and doc["options"]["amount"] == 0.4
    assert doc == json.loads((tmp_path / "p" / "compress.json").read_text())
    code, out, err = cli("compress", str(teacher), "-m", "quantize", "--out", str(tmp_path / "q"))
    assert code == 0, err
    assert "size (bytes)" in out and "latency batch64 ms" in out and "test accuracy" in out


@pytest.mark.parametrize("args, message", [
    (["--method", "shrink"], "unknown compression method 'shrink'"),
    (["--method", "prune", "--amount", "1"], "strictly between 0 and 1"),
    (["--method", "prune", "--amount", "0"], "strictly between 0 and 1"),
    (["--method", "distill"], "needs --student"),
    (["--method", "distill", "--student", "no-such-preset"], "no recipe file or preset named 'no-such-preset'"),
    (["--method", "quantize", "--dtype", "int3"], "unknown quantisation dtype"),
])
def test_bad_input_is_one_line_exit_2(cli, teacher, tmp_path, args, message) -> None:
    code, out, err = cli("compress", str(teacher), *args, "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_not_a_run_dir_and_existing_out(cli, teacher, tmp_path) -> None:
    code, _, err = cli("compress", str(tmp_path))
    assert code == 2 and "is not a run directory" in err
    code, _, err = cli("compress", str(teacher), "--out", str(teacher))
    assert code == 2 and "not empty" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_subprocess_exit_code(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "liandan", "compress", str(tmp_path / "missing"), "-m", "prune"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
