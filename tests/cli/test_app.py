"""The CLI's own options and its refusals of folders that are not runs."""

from __future__ import annotations

import liandan


def test_version(cli) -> None:
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"liandan {liandan.__version__}"


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, cli) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    code, _, err = cli("report", str(tmp_path))
    assert code == 2 and err.startswith("error:") and "not a run directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written into it
