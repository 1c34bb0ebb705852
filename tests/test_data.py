"""Tests for pyro_pots.data: built-in datasets, file readers, SPEC parsing, Dataset checks."""

from __future__ import annotations

import gzip
import inspect
import re
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from pyro_pots.data import (
    LIKELIHOODS,
    SYNTHETIC_SPEC_KEYS,
    Dataset,
    limits,
    load_data,
    load_digits,
    make_synthetic,
    read_file,
)
from pyro_pots.errors import PotsInputError

# ---------------------------------------------------------------------------------------------
# helpers


@contextmanager
def bad_input(name: str, *fragments: str) -> Iterator[None]:
    """Expect a one-line PotsInputError naming ``name`` and containing every fragment."""
    with pytest.raises(PotsInputError, match=re.escape(name)) as info:
        yield
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def write_idx_pair(
    folder: Path, images: np.ndarray, labels: np.ndarray | None, gz: bool, prefix: str = "train"
) -> Path:
    """Write MNIST-style ``{prefix}-images-idx3-ubyte`` (+ labels) files; return images path."""
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    image_path = folder / f"{prefix}-images-idx3-ubyte{suffix}"
    with opener(image_path, "wb") as handle:
        handle.write(idx_bytes(2051, images.shape, images.astype(np.uint8).tobytes()))
    if labels is not None:
        with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as handle:
            handle.write(idx_bytes(2049, labels.shape, labels.astype(np.uint8).tobytes()))
    return image_path


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 4, 3), dtype=np.uint8)


@pytest.fixture
def small() -> Dataset:
    X = np.random.default_rng(1).random((10, 3)).astype(np.float32)
    return Dataset(X=X, labels=np.arange(10) % 3, name="small")


# ---------------------------------------------------------------------------------------------
# built-in datasets


def test_digits() -> None:
    data = load_digits()
    assert data.name == "digits"
    assert data.X.shape == (1797, 64) and data.X.dtype == np.float32
    assert data.X.min() == 0.0 and data.X.max() == 1.0
    assert data.labels is not None and data.labels.dtype == np.int64
    assert set(np.unique(data.labels)) == set(range(10))
    assert data.image_shape == (8, 8)
    data.check_support("bernoulli")


def test_synthetic_is_deterministic_per_seed() -> None:
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    assert a.X.tobytes() == b.X.tobytes()
    assert np.array_equal(a.labels, b.labels)
    assert a.X.tobytes() != make_synthetic(seed=4).X.tobytes()


def test_synthetic_shape_range_and_labels() -> None:
    data = make_synthetic(n_clusters=4, n_features=7, n_rows=402, latent_dim=3)
    assert data.X.shape == (402, 7) and data.X.dtype == np.float32
    assert data.X.min() > 0.0 and data.X.max() < 1.0
    counts = np.bincount(data.labels)
    assert len(counts) == 4 and counts.max() - counts.min() <= 1
    assert data.labels.dtype == np.int64 and data.image_shape is None
    data.check_support("bernoulli")


@pytest.mark.parametrize("kwargs", [{}, {"seed": 1}, {"n_clusters": 8, "latent_dim": 3}])
def test_synthetic_clusters_are_separable(kwargs: dict) -> None:
    data = make_synthetic(**kwargs)
    k = int(data.labels.max()) + 1
    found = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(data.X)
    assert adjusted_rand_score(data.labels, found) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_features": 2.5}, "n_features"),
        ({"n_rows": True}, "n_rows"),
        ({"latent_dim": "2"}, "latent_dim"),
        ({"separation": -1.0}, "separation"),
        ({"separation": float("inf")}, "separation"),
        ({"seed": -1}, "seed"),
        ({"n_clusters": 5, "n_rows": 3}, "n_rows (3) must be >= n_clusters (5)"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict, fragment: str) -> None:
    with bad_input("make_synthetic", fragment):
        make_synthetic(**kwargs)


# ---------------------------------------------------------------------------------------------
# Dataset


def test_dataset_normalises_dtypes() -> None:
    data = Dataset(X=np.ones((3, 2), dtype=np.int32), labels=np.array([0.0, 1.0, 2.0]), name="n")
    assert data.X.dtype == np.float32 and data.labels.dtype == np.int64
    assert (data.n_rows, data.n_features) == (3, 2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"X": np.ones(4)}, "2-D"),
        ({"X": np.array([[1.0, np.nan]])}, "non-finite"),
        ({"X": np.ones((3, 2)), "labels": np.arange(2)}, "2 labels for 3 data rows"),
        ({"X": np.ones((3, 4)), "image_shape": (3, 3)}, "image_shape"),
    ],
)
def test_dataset_validates(kwargs: dict, fragment: str) -> None:
    with bad_input("dataset 'mine'", fragment):
        Dataset(name="mine", **kwargs)


def test_split_partitions_rows_and_carries_labels(small: Dataset) -> None:
    train, held = small.split(0.3, seed=0)
    assert (train.n_rows, held.n_rows) == (7, 3)
    both = np.concatenate([train.X, held.X])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, small.X.tolist()))
    for part in (train, held):
        rows = [int(np.flatnonzero((small.X == x).all(axis=1))[0]) for x in part.X]
        assert np.array_equal(part.labels, small.labels[rows])
    again, _ = small.split(0.3, seed=0)
    assert again.X.tobytes() == train.X.tobytes()
    assert small.split(0.3, seed=1)[0].X.tobytes() != train.X.tobytes()


def test_split_keeps_image_shape() -> None:
    train, held = load_digits().split(0.1, seed=0)
    assert train.image_shape == held.image_shape == (8, 8)
    assert train.n_rows + held.n_rows == 1797


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.2", True, None])
def test_split_rejects_fraction_out_of_range(small: Dataset, fraction: object) -> None:
    with bad_input("dataset 'small'", "heldout_fraction"):
        small.split(fraction, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.01, 0.99])
def test_split_rejects_empty_part(small: Dataset, fraction: float) -> None:
    with bad_input("dataset 'small'", "at least one row"):
        small.split(fraction, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_split_rejects_bad_seed(small: Dataset, seed: object) -> None:
    with bad_input("dataset 'small'", "seed"):
        small.split(0.5, seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_check_support_accepts_unit_interval(small: Dataset, likelihood: str) -> None:
    small.check_support(likelihood)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_check_support_rejects_values_outside_unit_interval(likelihood: str) -> None:
    data = Dataset(X=np.array([[0.5, 2.0], [-1.0, 0.0]]), name="wide")
    with bad_input("dataset 'wide'", "2 of 4 values", "min -1", "max 2", "'normal'"):
        data.check_support(likelihood)
    data.check_support("normal")


def test_check_support_rejects_unknown_likelihood(small: Dataset) -> None:
    with bad_input("small", "poisson", "bernoulli, continuous_bernoulli, normal"):
        small.check_support("poisson")


# ---------------------------------------------------------------------------------------------
# file round trips


def test_npz_with_labels(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((5, 3))
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 1, 2, 0]))
    data = read_file(tmp_path / "d.npz")
    assert data.name == "d.npz" and data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, X, rtol=1e-6)
    assert data.labels.tolist() == [0, 1, 1, 2, 0]


def test_npz_without_labels(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "d.npz", X=np.ones((4, 2), dtype=np.uint8), extra=np.ones(9))
    data = read_file(str(tmp_path / "d.npz"))
    assert data.labels is None and data.X.shape == (4, 2)


def test_npy(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "d.npy", X)
    data = read_file(tmp_path / "d.npy")
    assert np.array_equal(data.X, X) and data.labels is None and data.image_shape is None


def test_csv_without_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "1,2.5,-3\n4,5e-1, 6\n\n")
    data = read_file(path)
    assert data.X.tolist() == [[1, 2.5, -3], [4, 0.5, 6]] and data.labels is None


def test_csv_with_header_and_no_label_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,b\n1,2\n3,4\n")
    data = read_file(path)
    assert data.X.tolist() == [[1, 2], [3, 4]] and data.labels is None


@pytest.mark.parametrize("label_name", ["label", "y", " Label "])
def test_csv_with_label_column(tmp_path: Path, label_name: str) -> None:
    path = write_csv(tmp_path / "d.csv", f"\ufeffa,{label_name},b\n0.1,2,0.2\n0.3,0,0.4\n")
    data = read_file(path)
    assert np.allclose(data.X, [[0.1, 0.2], [0.3, 0.4]])
    assert data.labels.tolist() == [2, 0] and data.labels.dtype == np.int64


@pytest.mark.parametrize("gz", [False, True])
def test_idx_with_labels(tmp_path: Path, images: np.ndarray, gz: bool) -> None:
    labels = np.array([3, 1, 4, 1, 5, 9])
    data = read_file(write_idx_pair(tmp_path, images, labels, gz=gz))
    assert data.X.shape == (6, 12) and data.image_shape == (4, 3)
    np.testing.assert_allclose(data.X, images.reshape(6, 12) / 255.0, rtol=1e-6)
    assert data.labels.tolist() == labels.tolist()


def test_idx_without_labels_and_dotted_name(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "t10k-images.idx3-ubyte"
    path.write_bytes(idx_bytes(2051, images.shape, images.tobytes()))
    data = read_file(path)
    assert data.labels is None and data.X.max() <= 1.0


def test_idx_gz_images_find_plain_labels(tmp_path: Path, images: np.ndarray) -> None:
    write_idx_pair(tmp_path, images, np.arange(6), gz=False)
    gz_images = tmp_path / "train-images-idx3-ubyte.gz"
    gz_images.write_bytes(gzip.compress((tmp_path / "train-images-idx3-ubyte").read_bytes()))
    assert read_file(gz_images).labels.tolist() == list(range(6))


# ---------------------------------------------------------------------------------------------
# bad files: every message names the file


def test_missing_file(tmp_path: Path) -> None:
    with bad_input("nope.npz", "no such file"):
        read_file(tmp_path / "nope.npz")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    with bad_input("dir.csv", "not a regular file"):
        read_file(tmp_path / "dir.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("1,2\n")
    with bad_input("d.txt", "unknown file type", ".npz"):
        read_file(tmp_path / "d.txt")


def test_random_bytes_npy(tmp_path: Path) -> None:
    path = tmp_path / "junk.npy"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    with bad_input("junk.npy", "not a numpy file"):
        read_file(path)


def test_truncated_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "full.npy", np.ones((20, 5)))
    path = tmp_path / "cut.npy"
    path.write_bytes((tmp_path / "full.npy").read_bytes()[:-16])
    with bad_input("cut.npy", "not a valid numpy file"):
        read_file(path)


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_npz(tmp_path: Path, keep: float) -> None:
    np.savez(tmp_path / "full.npz", X=np.ones((20, 5)), y=np.zeros(20, dtype=int))
    raw = (tmp_path / "full.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[: int(len(raw) * keep)])
    with bad_input("cut.npz", "not a valid numpy file"):
        read_file(path)


def test_npz_without_x(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", data=np.ones((2, 2)))
    with bad_input("d.npz", "'X'", "found: data"):
        read_file(tmp_path / "d.npz")


def test_npy_passed_as_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.ones((2, 2)))
    (tmp_path / "d.npz").write_bytes((tmp_path / "d.npy").read_bytes())
    with bad_input("d.npz", "not an .npz archive"):
        read_file(tmp_path / "d.npz")


def test_object_dtype(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with bad_input("o.npy", "object-dtype"):
        read_file(tmp_path / "o.npy")


def test_string_dtype(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with bad_input("s.npy", "numeric"):
        read_file(tmp_path / "s.npy")


@pytest.mark.parametrize(
    ("shape", "fragment"), [((5,), "1-D"), ((2, 3, 4), "3-D"), ((0, 4), "no data")]
)
def test_wrong_shape(tmp_path: Path, shape: tuple[int, ...], fragment: str) -> None:
    np.save(tmp_path / "a.npy", np.ones(shape))
    with bad_input("a.npy", fragment):
        read_file(tmp_path / "a.npy")


def test_nan_npy(tmp_path: Path) -> None:
    X = np.zeros((4, 3))
    X[2, 1] = np.nan
    X[3, 0] = np.nan
    np.save(tmp_path / "n.npy", X)
    with bad_input("n.npy", "2 non-finite", "row 2, column 1"):
        read_file(tmp_path / "n.npy")


def test_inf_npz(tmp_path: Path) -> None:
    X = np.zeros((4, 3))
    X[1, 2] = -np.inf
    np.savez(tmp_path / "i.npz", X=X)
    with bad_input("i.npz", "1 non-finite", "row 1, column 2"):
        read_file(tmp_path / "i.npz")


def test_float32_overflow(tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.array([[1e300]]))
    with bad_input("big.npy", "float32"):
        read_file(tmp_path / "big.npy")


def test_npz_label_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.arange(3))
    with bad_input("d.npz", "3 labels for 4 data rows"):
        read_file(tmp_path / "d.npz")


@pytest.mark.parametrize("y", [np.array([0.0, 1.5]), np.array(["a", "b"]), np.ones((2, 1))])
def test_npz_bad_labels(tmp_path: Path, y: np.ndarray) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=y)
    with bad_input("d.npz", "labels"):
        read_file(tmp_path / "d.npz")


def test_csv_nan(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,b\n1,2\n3,nan\n")
    with bad_input("d.csv", "1 non-finite", "row 3, column 2"):
        read_file(path)


def test_csv_ragged(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "1,2,3,4\n1,2,3,4\n1,2,3,4,5\n")
    with bad_input("d.csv", "row 3 has 5 columns, expected 4"):
        read_file(path)


def test_csv_non_numeric_cell(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "1,2\n3,x\n")
    with bad_input("d.csv", "row 2, column 2", "'x'"):
        read_file(path)


def test_csv_empty_cell(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "1,2\n3,\n")
    with bad_input("d.csv", "row 2, column 2", "''"):
        read_file(path)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_csv_empty(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path / "d.csv", text)
    with bad_input("d.csv", "empty"):
        read_file(path)


def test_csv_header_only(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,b\n")
    with bad_input("d.csv", "no data rows"):
        read_file(path)


def test_csv_semicolons(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a;b\n1;2\n")
    with bad_input("d.csv", "comma-separated"):
        read_file(path)


def test_csv_non_integer_label(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,label\n1,0\n2,0.5\n")
    with bad_input("d.csv", "column 'label'", "integers"):
        read_file(path)


def test_csv_two_label_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "label,y,a\n1,0,2\n")
    with bad_input("d.csv", "several label columns"):
        read_file(path)


def test_csv_only_label_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "label\n1\n")
    with bad_input("d.csv", "no feature columns"):
        read_file(path)


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"\xff\xfe\x001,2\n")
    with bad_input("d.csv", "UTF-8"):
        read_file(tmp_path / "d.csv")


def test_idx_wrong_magic(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(2049, images.shape, images.tobytes()))
    with bad_input("x-idx3-ubyte", "magic number 2049", "expected 2051"):
        read_file(path)


@pytest.mark.parametrize("cut", [2, 10, 20])
def test_idx_truncated(tmp_path: Path, images: np.ndarray, cut: int) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(2051, images.shape, images.tobytes())[:cut])
    with bad_input("x-idx3-ubyte", "truncated"):
        read_file(path)


def test_idx_trailing_bytes(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(2051, images.shape, images.tobytes() + b"\0"))
    with bad_input("x-idx3-ubyte", "size mismatch"):
        read_file(path)


def test_idx_truncated_gzip(tmp_path: Path, images: np.ndarray) -> None:
    raw = gzip.compress(idx_bytes(2051, images.shape, images.tobytes()))
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with bad_input("x-idx3-ubyte.gz", "cannot read"):
        read_file(path)


def test_idx_label_count_mismatch(tmp_path: Path, images: np.ndarray) -> None:
    path = write_idx_pair(tmp_path, images, np.arange(5), gz=True)
    with bad_input("train-labels-idx1-ubyte.gz", "5 labels for 6 images", path.name):
        read_file(path)


def test_idx_labels_wrong_magic(tmp_path: Path, images: np.ndarray) -> None:
    path = write_idx_pair(tmp_path, images, None, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(2051, (6,), bytes(6)))
    with bad_input("train-labels-idx1-ubyte", "magic number 2051"):
        read_file(path)


def test_idx_labels_file_given_directly(tmp_path: Path, images: np.ndarray) -> None:
    write_idx_pair(tmp_path, images, np.arange(6), gz=False)
    with bad_input("train-labels-idx1-ubyte", "idx3-ubyte"):
        read_file(tmp_path / "train-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------
# SPEC strings


def test_spec_keys_map_onto_make_synthetic() -> None:
    params = inspect.signature(make_synthetic).parameters
    assert {entry.argument for entry in SYNTHETIC_SPEC_KEYS.values()} == set(params)


def test_spec_digits() -> None:
    assert load_data("digits", likelihood="bernoulli").name == "digits"


def test_spec_synthetic_default() -> None:
    assert load_data("synthetic").X.tobytes() == make_synthetic().X.tobytes()


def test_spec_synthetic_with_keys() -> None:
    data = load_data(" synthetic:k=3, d=6,n=90,latent=3,sep=4.5,seed=7, ", likelihood="bernoulli")
    expected = make_synthetic(
        n_clusters=3, n_features=6, n_rows=90, latent_dim=3, separation=4.5, seed=7
    )
    assert data.X.tobytes() == expected.X.tobytes()


def test_spec_file_path(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.full((3, 2), 0.5))
    assert load_data(str(tmp_path / "d.npy"), likelihood="continuous_bernoulli").n_rows == 3


def test_spec_likelihood_support(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.array([[0.5, 3.0]]))
    assert load_data(str(tmp_path / "d.npy"), likelihood="normal").n_features == 2
    with bad_input("d.npy", "1 of 2 values"):
        load_data(str(tmp_path / "d.npy"), likelihood="bernoulli")


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("synthetic:q=1", ("unknown key 'q'", "allowed keys: k (n_clusters)", "seed (seed)")),
        ("synthetic:k=2.5", ("key 'k' (n_clusters)", "an integer", "'2.5'", "allowed keys")),
        ("synthetic:k=0", ("key 'k' (n_clusters)", ">= 1", "allowed keys")),
        ("synthetic:sep=abc", ("key 'sep' (separation)", "a number", "allowed keys")),
        ("synthetic:sep=-2", ("key 'sep'", "> 0")),
        ("synthetic:seed=-1", ("key 'seed'", ">= 0")),
        ("synthetic:k", ("expected KEY=VALUE", "allowed keys")),
        ("synthetic:k=2,k=3", ("key 'k' given more than once",)),
        ("synthetic:k=5,n=3", ("n_rows (3) must be >= n_clusters (5)",)),
        ("digits:x=1", ("takes no options",)),
        ("digitz", ("no such file", "built-in dataset")),
    ],
)
def test_spec_errors(spec: str, fragments: tuple[str, ...]) -> None:
    with bad_input(f"data spec '{spec}'", *fragments):
        load_data(spec)


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_spec_empty(spec: object) -> None:
    with bad_input("data spec"):
        load_data(spec)  # type: ignore[arg-type]


def test_spec_unknown_likelihood() -> None:
    with bad_input("synthetic", "unknown likelihood 'gamma'"):
        load_data("synthetic:n=20", likelihood="gamma")


def test_a_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    # found by tests/test_fuzz.py: Path.exists raised OSError (ENAMETOOLONG), a traceback
    name = "a" * 300
    with bad_input(f"data spec '{name}'", "cannot be read"):
        load_data(name)
    with bad_input(f"data file '{tmp_path / name}.npy'", "cannot be read"):
        read_file(tmp_path / f"{name}.npy")


# ---------------------------------------------------------------------------------------------
# declared sizes (issue 16): checked before anything of that size is allocated


@contextmanager
def peak_allocation_below(limit: int) -> Iterator[None]:
    """Fail if the block's traced peak (numpy's buffers included) reaches ``limit`` bytes."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak} bytes"


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version 1.0 .npy header declaring ``shape``, as np.save writes it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """MAX_VALUES lowered to 10^5, so that tests stay small and fast."""
    monkeypatch.setattr(limits, "MAX_VALUES", 10**5)
    return 10**5


def test_npy_declaring_a_huge_shape(tmp_path: Path) -> None:
    # the report's case: a 192-byte file declaring (10^6, 10^6) gave an _ArrayMemoryError
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header((10**6, 10**6)) + bytes(64))
    with peak_allocation_below(2**20), bad_input("huge.npy", "(1000000, 1000000)", "limit"):
        read_file(path)


def test_npy_declaring_more_than_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "short.npy"
    path.write_bytes(npy_header((1000, 1000)) + bytes(800))
    with peak_allocation_below(2**20), bad_input("short.npy", "truncated", "8000000 bytes"):
        read_file(path)


def test_npz_member_declaring_a_huge_shape(tmp_path: Path) -> None:
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", npy_header((10**6, 10**6)) + bytes(64))
    with peak_allocation_below(2**20), bad_input("huge.npz", "array 'X'", "limit"):
        read_file(path)


def test_npz_member_declaring_more_than_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", npy_header((1000, 1000)) + bytes(800))
    with peak_allocation_below(2**20), bad_input("short.npz", "truncated"):
        read_file(path)


def test_compressed_npz_beyond_the_limit_is_refused_before_decompressing(
    tmp_path: Path, small_limit: int
) -> None:
    # the report's case, scaled down: a small archive of zeros that decompresses 1000-fold
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros((400, 1000)))
    assert path.stat().st_size < 10_000
    with peak_allocation_below(2**20), bad_input("bomb.npz", "400000 values", "limit"):
        read_file(path)


def test_labels_beyond_the_limit_are_refused(tmp_path: Path, small_limit: int) -> None:
    path = tmp_path / "d.npz"
    np.savez_compressed(path, X=np.zeros((10, 2)), y=np.zeros(small_limit + 1, dtype=np.int8))
    with bad_input("d.npz", "array 'y'", "limit"):
        read_file(path)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f8", ">f4", "<i2", "|u1", "?"])
def test_npz_members_of_any_order_and_byte_order(tmp_path: Path, order: str, dtype: str) -> None:
    X = np.arange(12).reshape(4, 3).astype(dtype, order=order)
    y = np.arange(4).astype(dtype)
    np.savez_compressed(tmp_path / "d.npz", X=X, y=y)
    data = read_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.X, X.astype(np.float32))
    np.testing.assert_array_equal(data.labels, y.astype(np.int64))
    assert data.X.flags.writeable


def test_csv_beyond_the_limit_stops_reading(tmp_path: Path, small_limit: int) -> None:
    rows = small_limit // 4 + 1
    path = write_csv(tmp_path / "d.csv", "a,b,c,d\n" + "1,2,3,4\n" * rows)
    with bad_input("d.csv", f"by row {rows + 1}", "limit"):
        read_file(path)
    path = write_csv(tmp_path / "d.csv", "a,b,c,d\n" + "1,2,3,4\n" * (rows - 1))
    assert read_file(path).X.shape == (rows - 1, 4)


def test_data_at_the_limit_still_reads(tmp_path: Path, small_limit: int) -> None:
    np.save(tmp_path / "d.npy", np.ones((small_limit // 10, 10)))
    np.savez_compressed(tmp_path / "d.npz", X=np.ones((small_limit // 10, 10)))
    assert read_file(tmp_path / "d.npy").X.size == small_limit
    assert read_file(tmp_path / "d.npz").X.size == small_limit


@pytest.mark.parametrize("gz", [False, True])
def test_idx_declaring_a_huge_shape(tmp_path: Path, gz: bool) -> None:
    body = idx_bytes(2051, (60000, 10000, 10000), bytes(400))
    path = tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(body) if gz else body)
    with peak_allocation_below(2**20), bad_input(path.name, "(60000, 10000, 10000)", "limit"):
        read_file(path)


def test_gzipped_idx_beyond_the_limit_is_refused_before_decompressing(
    tmp_path: Path, small_limit: int
) -> None:
    # the report's case, scaled down: a small .gz whose header declares a large body of zeros
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(2051, (500, 20, 20), bytes(500 * 400))))
    assert path.stat().st_size < 2_000
    with peak_allocation_below(2**20), bad_input(path.name, "200000 values", "limit"):
        read_file(path)


def test_gzipped_idx_longer_than_declared(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(2051, images.shape, images.tobytes() + bytes(10**6))))
    with peak_allocation_below(2**20), bad_input(path.name, "size mismatch"):
        read_file(path)


def test_idx_labels_count_is_checked_before_their_body(tmp_path: Path, images: np.ndarray) -> None:
    path = write_idx_pair(tmp_path, images, np.arange(6), gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(2049, (2**31,), bytes(6)))
    with bad_input("train-labels-idx1-ubyte", f"{2**31} labels for 6 images"):
        read_file(path)


def test_synthetic_spec_beyond_the_limit() -> None:
    with peak_allocation_below(2**20), bad_input("data spec", "n_rows", "limit"):
        load_data("synthetic:n=10000000000000")
    with bad_input("data spec", "n_clusters", "limit"):
        load_data("synthetic:k=100000,n=100000")


# ---------------------------------------------------------------------------------------------
# CSV header rule, unreadable files, labels out of range, bounded messages (issue 16)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("1,2x,3\n4,5,6\n", ("row 1, column 2", "non-numeric value '2x' among numbers")),
        ("1,,3\n4,5,6\n", ("row 1, column 2", "non-numeric value ''")),
        ("a,b,2020\n4,5,6\n", ("row 1, column 3", "numeric value '2020' among names")),
        ("\n\nx,1\n1,2\n", ("row 3, column 1",)),
    ],
)
def test_csv_first_row_mixing_names_and_numbers(tmp_path: Path, text: str, fragments) -> None:
    # a typo in the first data row used to turn it silently into a header
    path = write_csv(tmp_path / "d.csv", text)
    with bad_input("d.csv", *fragments, "all names (a header) or all numbers"):
        read_file(path)


def test_csv_header_of_names_and_first_row_of_numbers_still_read(tmp_path: Path) -> None:
    data = read_file(write_csv(tmp_path / "h.csv", "a,b,label\n1,2,0\n3,4,1\n"))
    assert data.X.tolist() == [[1, 2], [3, 4]] and data.labels.tolist() == [0, 1]
    assert read_file(write_csv(tmp_path / "n.csv", "1,2\n3,4\n")).X.shape == (2, 2)


@pytest.mark.parametrize("name", ["d.csv", "d.npy", "d.npz", "x-idx3-ubyte"])
def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # we run as root, where chmod 000 does not stop reading: make open() refuse instead
    path = tmp_path / name
    path.write_bytes(b"1,2\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with bad_input(name, "cannot be read (Permission denied)"):
        read_file(path)


@pytest.mark.parametrize(
    "y",
    [
        np.array([0.0, 1e30]),
        np.array([0.0, -1e19]),
        np.array([0, 2**64 - 1], dtype=np.uint64),
        np.array([0, -(2**63)], dtype=np.int64),
    ],
)
def test_labels_beyond_the_int64_safe_range(tmp_path: Path, y: np.ndarray) -> None:
    # 1e30 used to become INT64_MIN, and a uint64 above 2**63 to wrap to a negative label
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=y)
    with bad_input("d.npz", "array 'y'", "magnitude at most 9007199254740992", "label 1"):
        read_file(tmp_path / "d.npz")


def test_csv_label_of_1e30(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,label\n1,0\n2,1e30\n")
    with bad_input("d.csv", "column 'label'", "label 1 (0-based) is 1e+30"):
        read_file(path)


def test_labels_at_the_bound_are_kept_exactly() -> None:
    y = np.array([2**53, -(2**53), 7], dtype=np.float64)
    data = Dataset(X=np.ones((3, 1)), labels=y)
    assert data.labels.tolist() == [2**53, -(2**53), 7]


def test_long_cells_and_specs_are_cut_in_messages(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", f"1,2\n3,{'x' * 100_000}\n")
    with bad_input("d.csv", "row 2, column 2", "..."):
        read_file(path)
    with pytest.raises(PotsInputError) as info:
        read_file(path)
    assert len(str(info.value)) < 300
    with pytest.raises(PotsInputError) as info:
        load_data("synthetic:k=" + "7" * 100_000)
    assert len(str(info.value)) < 6000
    with pytest.raises(PotsInputError) as info:
        read_file(tmp_path / ("x" * 100_000 + ".npy"))
    assert "cannot be read" in str(info.value) and len(str(info.value)) < 6000
