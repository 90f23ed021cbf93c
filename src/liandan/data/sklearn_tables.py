"""scikit-learn's bundled tables (digits, iris, wine, breast cancer, diabetes) read without
importing scikit-learn.

``import sklearn.datasets`` costs 1.1-1.7 s on the 2-core sandbox (it pulls scipy and
scipy.stats), more than reading the files: the sets themselves are small CSV files shipped in
``sklearn/datasets/data/``. The package is located with ``importlib.util.find_spec("sklearn")``,
which finds a top-level package without running it, and each file is read as
``sklearn/datasets/_base.py`` (1.3-1.9) reads it:

* ``load_csv_data`` (iris, wine, breast cancer): a header row ``n_samples,n_features,name,...``
  (the class names), then one row per sample: float64 features, an integer class last;
* ``load_gzip_compressed_csv_data`` (digits, diabetes): ``np.loadtxt`` of the gunzipped text;
  digits' last column is the class, diabetes' target is a second file;
* the feature names are lists written in ``_base.py`` (copied below);
* ``load_diabetes(scaled=True)`` standardises each column (``sklearn.preprocessing.scale``:
  ``nanmean``/``nanstd``, re-centring when the mean is not ``allclose`` to 0, constant columns
  kept) and divides by √n, reproduced step for step below.

The arrays are bit-identical to scikit-learn's (dtypes included) and the names equal:
``tests/data/test_sklearn_tables.py`` compares every one. A file that is missing or whose header
does not match (another scikit-learn layout) falls back to scikit-learn's own loader.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liandan.errors import LiandanError

WINE_FEATURES = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
                 "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
                 "od280/od315_of_diluted_wines", "proline"]
IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
_CANCER_STATS = ["radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                 "concave points", "symmetry", "fractal dimension"]
# sklearn's order: the 10 means, the 10 standard errors, the 10 worst values
CANCER_FEATURES = ([f"mean {s}" for s in _CANCER_STATS] + [f"{s} error" for s in _CANCER_STATS]
                   + [f"worst {s}" for s in _CANCER_STATS])
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
DIGITS_FEATURES = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]


@dataclass(frozen=True)
class Table:
    """One bundled set: what liandan reads of scikit-learn's ``Bunch``."""

    data: np.ndarray  # (N, F) float64
    target: np.ndarray  # (N,) int64 classes, or float64 values (diabetes)
    feature_names: list[str]
    target_names: list[str] | None  # class names; None for a regression target
    images: np.ndarray | None = None  # digits: (N, 8, 8) float64, a view of ``data``


def data_dir() -> Path:
    """``sklearn/datasets/data`` of the installed scikit-learn, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise LiandanError("this data source ships with scikit-learn: pip install scikit-learn")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _csv_with_header(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``_base.load_csv_data``: features (N, F) float64, classes (N,) int64, class names."""
    path = data_dir() / name
    with path.open(encoding="utf-8") as f:
        head = f.readline().rstrip("\r\n").split(",")
        n, n_features, names = int(head[0]), int(head[1]), head[2:]
        rows = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape != (n, n_features + 1):
        raise ValueError(f"{path}: {rows.shape} values under a header of {n}×{n_features}")
    # sklearn parses the class with np.asarray(str, dtype=int): an integer field, never rounded
    target = rows[:, -1].astype(np.int64)
    if not np.array_equal(target, rows[:, -1]):
        raise ValueError(f"{path}: non-integer class labels")
    return np.ascontiguousarray(rows[:, :-1]), target, names


def _gz(name: str, delimiter: str | None = None) -> np.ndarray:
    """``_base.load_gzip_compressed_csv_data``: ``np.loadtxt`` of the gunzipped file."""
    with gzip.open(data_dir() / name, mode="rt", encoding="utf-8") as f:
        return np.loadtxt(f, delimiter=delimiter)


def _scale(x: np.ndarray) -> np.ndarray:
    """``sklearn.preprocessing.scale(x, copy=False)`` on a dense float64 array without NaNs,
    operation for operation (so the rounding is the same)."""
    mean = np.nanmean(x, 0)
    std = np.nanstd(x, 0)
    x -= mean
    mean1 = np.nanmean(x, axis=0)
    if not np.allclose(mean1, 0):  # a large mean left a residue: sklearn subtracts it again
        x -= mean1
    std[std < 10 * np.finfo(std.dtype).eps] = 1.0  # _handle_zeros_in_scale: constant columns stay
    x /= std
    mean2 = np.nanmean(x, axis=0)
    if not np.allclose(mean2, 0):
        x -= mean2
    return x


def _classes(file: str, features: list[str]) -> Table:
    data, target, names = _csv_with_header(file)
    if data.shape[1] != len(features):
        raise ValueError(f"{file}: {data.shape[1]} columns for {len(features)} feature names")
    return Table(data, target, list(features), names)


def _read(name: str) -> Table:
    if name == "iris":
        return _classes("iris.csv", IRIS_FEATURES)
    if name == "wine":
        return _classes("wine_data.csv", WINE_FEATURES)
    if name == "breast_cancer":
        return _classes("breast_cancer.csv", CANCER_FEATURES)
    if name == "digits":
        rows = _gz("digits.csv.gz", delimiter=",")
        if rows.ndim != 2 or rows.shape[1] != 65:
            raise ValueError(f"digits.csv.gz: {rows.shape} values, expected 64 pixels and a class per row")
        flat = rows[:, :-1]  # a view, as sklearn's (so images and data share memory there too)
        return Table(flat, rows[:, -1].astype(int, copy=False), list(DIGITS_FEATURES), [str(i) for i in range(10)],
                     images=flat.reshape(-1, 8, 8))
    if name == "diabetes":
        data = _gz("diabetes_data_raw.csv.gz")
        target = _gz("diabetes_target.csv.gz")
        if data.ndim != 2 or data.shape != (len(target), len(DIABETES_FEATURES)):
            raise ValueError(f"diabetes: {data.shape} features for {target.shape} targets")
        data = _scale(data)
        data /= data.shape[0] ** 0.5
        return Table(data, target, list(DIABETES_FEATURES), None)
    raise LiandanError(f"no bundled scikit-learn table {name!r}; have {', '.join(TABLES)}")


def _from_sklearn(name: str) -> Table:
    """scikit-learn's own loader (the fallback when its files are not laid out as expected)."""
    import sklearn.datasets as ds

    d = getattr(ds, f"load_{name}")()
    names = getattr(d, "target_names", None) if name != "diabetes" else None
    return Table(d.data, d.target, [str(f) for f in d.feature_names],
                 [str(n) for n in names] if names is not None else None, getattr(d, "images", None))


TABLES = ("digits", "iris", "wine", "breast_cancer", "diabetes")


def load(name: str) -> Table:
    """The bundled set ``name`` (one of ``TABLES``) as scikit-learn's ``load_<name>()`` gives it."""
    if name not in TABLES:
        raise LiandanError(f"no bundled scikit-learn table {name!r}; have {', '.join(TABLES)}")
    try:
        return _read(name)
    except (OSError, ValueError, IndexError):  # not the files we know: ask scikit-learn itself
        return _from_sklearn(name)
