"""The registries: every entry is listed, documented and validated against its signature."""

from __future__ import annotations

import pytest

from liandan.errors import LiandanError
from liandan.registry import REGISTRIES, Registry


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_entry_has_a_description(kind: str) -> None:
    for e in REGISTRIES[kind].entries():
        assert e.description, f"{kind} {e.name!r} has no docstring"


def test_unknown_name_lists_allowed_and_suggests() -> None:
    from liandan.registry import MODELS

    with pytest.raises(LiandanError, match=r"did you mean 'lenet5'.*available: .*mlp"):
        MODELS.get("lenet")


def test_validate_rejects_unknown_option_and_coerces_types() -> None:
    reg = Registry("thing", "test-things")  # no distribution fills this entry-point group

    @reg.register("t")
    def t(width: int = 3, rate: float = 0.1) -> int:
        """A thing."""
        return width

    e = reg.get("t")
    assert e.validate({"width": "5", "rate": "1e-3"}, where="x") == {"width": 5, "rate": 1e-3}
    with pytest.raises(LiandanError, match="unknown option 'widht'.*did you mean 'width'"):
        e.validate({"widht": 4}, where="x")
    with pytest.raises(LiandanError, match=r"x\.width"):
        e.validate({"width": "wide"}, where="x")


def test_list_cli(cli) -> None:
    for kind in ("models", "data", "losses", "optimizers", "schedules", "presets"):
        code, out, _ = cli("list", kind)
        assert code == 0 and len(out.splitlines()) >= 3, kind
    code, _, err = cli("list", "gizmos")
    assert code == 2 and err.startswith("error:")
