"""Property-based: hundreds of generated bad recipes and override strings all end in exit
code 2 with a one-line message — never a traceback, never a training run."""

from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOOD = {"data": {"source": "iris"}, "model": {"name": "mlp"}}
SECTIONS = ["data", "model", "loss", "optim", "schedule", "train", "doctor"]
TRAIN_KEYS = ["epochs", "precision", "grad_clip", "accumulate", "checkpoint_every", "max_bad_steps", "log_every"]
junk_text = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
bad_value = st.one_of(junk_text.map(lambda s: "x" + s), st.just(-5), st.just([1, 2]), st.just({"a": 1}))


@st.composite
def bad_recipe(draw) -> dict:
    rec = yaml.safe_load(yaml.safe_dump(GOOD))
    kind = draw(st.sampled_from(["unknown_top", "unknown_key", "bad_type", "bad_name", "bad_option", "missing",
                                 "bad_split"]))
    if kind == "unknown_top":
        rec["zz" + draw(junk_text)] = 1
    elif kind == "unknown_key":
        rec.setdefault(draw(st.sampled_from(["train", "doctor"])), {})["zz" + draw(junk_text)] = 1
    elif kind == "bad_type":
        rec["train"] = {draw(st.sampled_from(TRAIN_KEYS)): draw(bad_value)}
    elif kind == "bad_name":
        section, key = draw(st.sampled_from([("data", "source"), ("model", "name"), ("optim", "name"),
                                             ("loss", "name"), ("schedule", "name")]))
        rec.setdefault(section, {})[key] = "zz" + draw(junk_text)
    elif kind == "bad_option":
        rec.setdefault(draw(st.sampled_from(["model", "optim", "data"])), {})["zz" + draw(junk_text)] = 1
    elif kind == "missing":
        del rec[draw(st.sampled_from(["data", "model"]))]
    else:
        rec["data"]["split"] = draw(st.lists(st.floats(-1, 0.3), min_size=1, max_size=4))
    return rec


bad_override = st.one_of(
    junk_text,  # no '='
    junk_text.map(lambda s: "=" + s),  # empty key
    st.tuples(st.sampled_from(SECTIONS), junk_text).map(lambda t: f"{t[0]}.zz{t[1]}=1"),
    st.tuples(st.sampled_from(TRAIN_KEYS), junk_text).map(lambda t: f"train.{t[0]}=x{t[1]}"),
    junk_text.map(lambda s: f"model.name=zz{s}"),
    junk_text.map(lambda s: f"optim.lr=-{len(s)}"),
    st.just("train..epochs=3"),
    st.just("data=5"),
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line_exit_2(cli, *args) -> None:
    code, out, err = cli(*args)
    assert code == 2, (args, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


@FAST
@given(rec=bad_recipe())
def test_bad_recipes_exit_2(cli, tmp_path_factory, rec) -> None:
    path = tmp_path_factory.mktemp("r") / "r.yaml"
    path.write_text(yaml.safe_dump(rec))
    _one_line_exit_2(cli, "train", str(path), "--out", str(path.parent / "out"))
    assert not (path.parent / "out").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(override=bad_override)
def test_bad_overrides_exit_2(cli, tmp_path_factory, override) -> None:
    out = tmp_path_factory.mktemp("o") / "out"
    _one_line_exit_2(cli, "train", "wine-mlp", "--set", override, "--out", str(out))
    assert not out.exists()
