"""scikit-learn's bundled tables read without scikit-learn equal its loaders bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.datasets as ds

from liandan.data import sklearn_tables
from liandan.data.sources import breast_cancer, diabetes, digits, iris, wine
from liandan.errors import LiandanError


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, dtype and shape, and the same bytes (so -0.0 and NaN payloads too)."""
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


@pytest.mark.parametrize("name", sklearn_tables.TABLES)
def test_table_is_sklearns(name):
    ours = sklearn_tables._read(name)  # the file reader itself, never the sklearn fallback
    ref = getattr(ds, f"load_{name}")()
    assert same(ours.data, ref.data)
    assert same(ours.target, ref.target)
    assert ours.feature_names == [str(f) for f in ref.feature_names]
    if name == "diabetes":
        assert ours.target_names is None and "target_names" not in ref
    else:
        assert ours.target_names == [str(t) for t in ref.target_names]
    if name == "digits":
        assert same(ours.images, ref.images)


def test_sources_are_built_from_the_same_arrays():
    d = ds.load_digits()
    assert np.array_equal(digits().x.numpy(), d.images.astype(np.float32)[:, None] / 16.0)
    for build, loader in ((iris, ds.load_iris), (wine, ds.load_wine), (breast_cancer, ds.load_breast_cancer)):
        src, ref = build(), loader()
        assert np.array_equal(src.x.numpy(), ref.data.astype(np.float32))
        assert np.array_equal(src.y.numpy(), ref.target)
        assert src.class_names == [str(n) for n in ref.target_names]
        assert src.feature_names == list(ref.feature_names)
    src, ref = diabetes(), ds.load_diabetes()
    assert np.array_equal(src.x.numpy(), ref.data.astype(np.float32))
    assert np.array_equal(src.y.numpy(), ref.target.astype(np.float32)[:, None])


def test_other_file_layout_falls_back_to_sklearn(monkeypatch, tmp_path):
    (tmp_path / "iris.csv").write_text("150,5,a,b,c\n1,2,3,4,5,0\n")  # a header that does not match
    monkeypatch.setattr(sklearn_tables, "data_dir", lambda: tmp_path)
    for name in sklearn_tables.TABLES:  # missing files and the wrong iris: sklearn's own loader
        t = sklearn_tables.load(name)
        assert same(t.data, getattr(ds, f"load_{name}")().data)


def test_unknown_table_is_one_line():
    with pytest.raises(LiandanError, match="no bundled scikit-learn table"):
        sklearn_tables.load("mnist")
