"""The path sandbox: everything a client passes must resolve inside an allowed root
(the reference filesystem server's validatePath, ported)."""

from __future__ import annotations

import os

import pytest

from liandan.agents.sandbox import Sandbox, SandboxError
from liandan.errors import LiandanError


@pytest.fixture
def tree(tmp_path):
    """tmp/a/b (the root), tmp/a/bc (a sibling sharing the prefix), tmp/outside/secret.txt."""
    root = tmp_path / "a" / "b"
    (root / "run").mkdir(parents=True)
    (root / "run" / "recipe.yaml").write_text("name: x\n")
    (tmp_path / "a" / "bc").mkdir()
    (tmp_path / "a" / "bc" / "x.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s")
    return tmp_path, root


def test_relative_paths_resolve_against_the_first_root(tree):
    tmp, root = tree
    sb = Sandbox([root])
    assert sb.resolve("run") == root / "run"
    assert sb.resolve("run/recipe.yaml", must_exist=True) == root / "run" / "recipe.yaml"
    assert sb.resolve(str(root / "run")) == root / "run"
    assert sb.resolve(".") == root  # the root itself is inside
    assert sb.resolve("run/../run/./recipe.yaml") == root / "run" / "recipe.yaml"


def test_dotdot_escape_is_refused(tree):
    tmp, root = tree
    sb = Sandbox([root])
    for bad in ["..", "../bc/x.txt", "run/../../../outside/secret.txt", str(root / ".." / "bc")]:
        with pytest.raises(SandboxError, match="outside the allowed"):
            sb.resolve(bad)


def test_absolute_path_outside_is_refused(tree):
    tmp, root = tree
    sb = Sandbox([root])
    for bad in [str(tmp / "outside" / "secret.txt"), "/etc/passwd", "/", str(tmp)]:
        with pytest.raises(SandboxError, match="outside the allowed"):
            sb.resolve(bad)


def test_prefix_trick_is_refused(tree):
    """/a/bc starts with the string /a/b but is not inside it: whole components are compared."""
    tmp, root = tree
    sb = Sandbox([root])
    with pytest.raises(SandboxError):
        sb.resolve(str(tmp / "a" / "bc" / "x.txt"))
    with pytest.raises(SandboxError):
        sb.resolve(str(root) + "c")


def test_symlink_pointing_out_is_refused(tree):
    tmp, root = tree
    sb = Sandbox([root])
    os.symlink(tmp / "outside", root / "link")
    os.symlink(tmp / "outside" / "secret.txt", root / "file-link")
    os.symlink(tmp / "outside" / "not-yet", root / "dangling")
    for bad in ["link", "link/secret.txt", "file-link", "link/new-dir", "dangling", "dangling/x"]:
        with pytest.raises(SandboxError):
            sb.resolve(bad)
    os.symlink(root / "run", root / "inner")  # a link that stays inside is fine, and is resolved
    assert sb.resolve("inner/recipe.yaml", must_exist=True) == root / "run" / "recipe.yaml"


def test_root_given_through_a_symlink_is_realpathed(tree):
    tmp, root = tree
    os.symlink(root, tmp / "root-link")
    sb = Sandbox([tmp / "root-link"])
    assert sb.roots == (str(root),)
    assert sb.resolve(str(tmp / "root-link" / "run")) == root / "run"


def test_nul_byte_and_empty_paths_are_refused(tree):
    _, root = tree
    sb = Sandbox([root])
    with pytest.raises(SandboxError, match="NUL"):
        sb.resolve("run\x00/../../etc/passwd")
    for bad in ["", "   "]:
        with pytest.raises(SandboxError, match="empty"):
            sb.resolve(bad)
    with pytest.raises(SandboxError):
        sb.resolve(42)  # type: ignore[arg-type]
    assert issubclass(SandboxError, LiandanError)  # tools report it as a one-line user error


def test_tilde_is_expanded(tree, monkeypatch):
    tmp, root = tree
    monkeypatch.setenv("HOME", str(root))
    sb = Sandbox([root])
    assert sb.resolve("~/run") == root / "run"
    monkeypatch.setenv("HOME", str(tmp / "outside"))
    with pytest.raises(SandboxError):
        sb.resolve("~/secret.txt")


def test_missing_paths(tree):
    tmp, root = tree
    sb = Sandbox([root])
    assert sb.resolve("new/deeper/out") == root / "new" / "deeper" / "out"  # outputs may not exist yet
    with pytest.raises(SandboxError, match="does not exist"):
        sb.resolve("nope", must_exist=True)
    with pytest.raises(SandboxError, match="not a run directory"):
        sb.run_dir(".")
    assert sb.run_dir("run") == root / "run"


def test_several_roots(tree):
    tmp, root = tree
    sb = Sandbox([root, tmp / "a" / "bc"])
    assert sb.resolve(str(tmp / "a" / "bc" / "x.txt"), must_exist=True) == tmp / "a" / "bc" / "x.txt"
    assert sb.resolve("x.txt") == root / "x.txt"  # relative: the first root
    with pytest.raises(SandboxError):
        sb.resolve(str(tmp / "outside"))


def test_default_root_is_created_and_explicit_roots_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sb = Sandbox()
    assert sb.roots == (str(tmp_path / "runs"),) and (tmp_path / "runs").is_dir()
    with pytest.raises(SandboxError, match="does not exist"):
        Sandbox([tmp_path / "missing"])
    with pytest.raises(SandboxError):
        Sandbox(["bad\x00root"])


def test_output_dirs_stay_inside_and_never_reuse_a_non_empty_directory(tree):
    tmp, root = tree
    sb = Sandbox([root])
    out = sb.output_dir(None, "../../evil name")
    assert out.parent == root and out.name.startswith("evil_name-")
    assert sb.output_dir("fresh", "x") == root / "fresh"
    (root / "empty").mkdir()
    assert sb.output_dir("empty", "x") == root / "empty"
    with pytest.raises(SandboxError, match="not empty"):
        sb.output_dir("run", "x")
    with pytest.raises(SandboxError, match="outside"):
        sb.output_dir(str(tmp / "outside" / "new"), "x")
