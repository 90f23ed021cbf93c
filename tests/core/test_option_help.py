"""Every option of every registry entry has help text, read from its builder's ``Args:`` section
(Google style), and ``liandan list KIND --verbose`` prints it beside the default."""

from __future__ import annotations

import inspect
import json

import pytest

from liandan.registry import INFERRED, REGISTRIES, Registry, parse_args_section

# Registries whose parameters are the framework's, not a recipe's (a rule's view, a task's info).
NO_OPTIONS = {"rules", "tasks"}
# Entries still without an Args section, owned elsewhere: this set may only shrink (a test fails
# when one of them is documented, so the set stays true).
KNOWN_UNDOCUMENTED: set[tuple[str, str]] = set()
MAX_HELP = 240  # characters: help is a line or two, the docstring's body says the rest


@pytest.mark.parametrize("kind", sorted(set(REGISTRIES) - NO_OPTIONS))
def test_every_option_has_help(kind: str) -> None:
    inferred = INFERRED if kind == "models" else ()
    missing, stale, long = [], [], []
    for e in REGISTRIES[kind].entries():
        if not e.fn.__module__.startswith("liandan."):  # an example's or a test's entry (another test loaded it)
            continue
        helps = e.option_help(inferred)
        undocumented = [n for n, text in helps.items() if not text.strip()]
        if (kind, e.name) in KNOWN_UNDOCUMENTED:
            assert undocumented, f"{kind} {e.name!r} is documented now: drop it from KNOWN_UNDOCUMENTED"
            continue
        missing += [f"{e.name}.{n}" for n in undocumented]
        stale += [f"{e.name}.{n}" for n in parse_args_section(inspect.getdoc(e.fn) or "") if n not in e.options()]
        long += [f"{e.name}.{n} ({len(t)})" for n, t in helps.items() if len(t) > MAX_HELP]
    assert not missing, f"{kind}: options without help (write them in the builder's Args: section): {missing}"
    assert not stale, f"{kind}: Args: names that are not options of the builder: {stale}"
    assert not long, f"{kind}: help over {MAX_HELP} characters: {long}"


DOC = '''Build a thing.

    A longer body that mentions width: not an item, it is above the section.

    Args:
        width: channels of the first stage; later
            stages double it (64 in the paper).
        rate (float): dropout probability.
        a, b: two options, one text.
        bare:
            the whole text on the next line.

    Returns:
        not an option: nothing here is parsed.
    '''


def test_parser_joins_multiline_text_and_reads_every_item_form() -> None:
    assert parse_args_section(inspect.cleandoc(DOC)) == {
        "width": "channels of the first stage; later stages double it (64 in the paper).",
        "rate": "dropout probability.",
        "a": "two options, one text.",
        "b": "two options, one text.",
        "bare": "the whole text on the next line.",
    }
    assert parse_args_section("One line, no section.") == {}


def test_entry_help_for_functions_classes_and_inferred_options() -> None:
    reg = Registry("thing", "test-things")  # no distribution fills this entry-point group

    @reg.register("f")
    def f(params: list, num_classes: int = 2, width: int = 3, depth: int = 1) -> int:
        """A thing.

        Args:
            width: channels,
                doubled per stage.
        """
        return width

    @reg.register("c")
    class C:
        """A class thing; its options are ``__init__``'s keywords."""

        def __init__(self, every: int = 0) -> None:
            """Save checkpoints.

            Args:
                every: steps between saves; 0: epoch ends only.
            """

    helps = reg.get("f").option_help(inferred=("num_classes",))
    assert list(helps) == ["num_classes", "width", "depth"]  # params: supplied by the framework
    assert helps["width"] == "channels, doubled per stage."
    assert helps["num_classes"].endswith("inferred from the data") and helps["depth"] == ""
    assert reg.get("c").option_help() == {"every": "steps between saves; 0: epoch ends only."}


def test_list_verbose_prints_default_and_help_aligned(cli) -> None:
    code, out, _ = cli("list", "models", "--verbose")
    assert code == 0
    block = out.split("\nresnet18 ")[1].split("\nresnet34 ")[0].splitlines()[1:]
    opts = [ln for ln in block if " = " in ln]
    assert [ln.split()[0] for ln in opts] == list(REGISTRIES["models"].get("resnet18").option_help(INFERRED))
    assert len({ln.index(" = ") for ln in opts}) == 1  # the defaults line up
    small = next(ln for ln in opts if ln.split()[0] == "small_input")
    assert "= None" in small and "—" in small and "3×3 stride-1 stem" in small


def test_list_json_has_help_for_every_option(cli) -> None:
    for kind in ("models", "optimizers", "adapters", "callbacks", "rules", "presets"):
        code, out, _ = cli("list", kind, "--json")
        assert code == 0, kind
        for row in json.loads(out):
            assert set(row["help"]) == set(row["options"]), (kind, row["name"])
    rows = {r["name"]: r for r in json.loads(cli("list", "optimizers", "--json")[1])}
    assert "params" not in rows["sgd"]["options"] and rows["sgd"]["help"]["momentum"]


def test_option_lines_wrap_long_help_under_its_column() -> None:
    from liandan.cli.listing import option_lines

    lines = option_lines({"r": "8", "targets": "None"}, {"r": "rank", "targets": "word " * 30}, indent=2, width=60)
    col = lines[0].index("—") + 2
    assert lines[0].startswith("  r       = 8") and lines[1].index("—") + 2 == col
    assert len(lines) > 2 and all(ln[:col].strip() == "" and len(ln) <= 60 for ln in lines[2:])
