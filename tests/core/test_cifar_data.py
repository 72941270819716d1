"""Tests of the CIFAR-100 reader and the embedded-MNIST stand-in (real pickles, no mocks)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from plasticity_core.data.cifar import (
    ImageSplit,
    load_cifar100,
    load_embedded_mnist_pairs,
    load_images,
)
from plasticity_core.data.mnist import load_mnist
from plasticity_core.errors import DataError

TRAIN_LABELS = [0, 5, 99, 5, 42, 0, 17]
TEST_LABELS = [99, 3, 42]
FINE_NAMES = [f"fine_{i:02d}".encode() for i in range(100)]
RED, GREEN, BLUE = (slice(c * 1024, (c + 1) * 1024) for c in range(3))


# ---------------------------------------------------------------- helpers


def images(seed: int, n: int) -> np.ndarray:
    """uint8 [n, 3072] rows in the CIFAR layout; image 0 is pure red (255, 0, 0)."""
    data = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[0, RED], data[0, GREEN], data[0, BLUE] = 255, 0, 0
    return data


def batch(data: np.ndarray, labels: list[int], label: bytes) -> dict[bytes, object]:
    return {
        b"batch_label": label,
        b"data": data,
        b"fine_labels": labels,
        b"coarse_labels": [y // 5 for y in labels],
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }


def dump(path: Path, obj: object, protocol: int = 2) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """<tmp>/cifar-100-python with 7 train / 3 test images; returns (root, train, test)."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, test = images(1, len(TRAIN_LABELS)), images(2, len(TEST_LABELS))
    # Different protocols exercise each way numpy pickles an array: protocol 2 (as the real
    # Python 2 files), 5 (out-of-band-capable buffers) and 4 for the meta.
    dump(folder / "train", batch(train, TRAIN_LABELS, b"training batch 1 of 1"), protocol=2)
    dump(folder / "test", batch(test, TEST_LABELS, b"testing batch 1 of 1"), protocol=5)
    meta = {
        b"fine_label_names": FINE_NAMES,
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    dump(folder / "meta", meta, protocol=4)
    return tmp_path, train, test


def train_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of the training pixels in [0, 1], float64 [3]."""
    planes = [train[:, plane] / 255.0 for plane in (RED, GREEN, BLUE)]
    return np.array([p.mean() for p in planes]), np.array([p.std() for p in planes])


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_cifar100(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- CIFAR-100 reader


def test_cifar_split_has_shapes_dtypes_labels_and_class_names(cifar):
    root, _, _ = cifar
    split = load_cifar100(root)
    assert isinstance(split, ImageSplit)
    assert split.x_train.shape == (7, 3, 32, 32) and split.x_test.shape == (3, 3, 32, 32)
    assert split.x_train.dtype == split.x_test.dtype == torch.float32
    assert split.y_train.dtype == split.y_test.dtype == torch.int64
    assert split.y_train.tolist() == TRAIN_LABELS and split.y_test.tolist() == TEST_LABELS
    assert split.classes == tuple(f"fine_{i:02d}" for i in range(100))
    assert split.n_classes == 100 and split.name == "cifar100"


def test_rows_are_channel_major_then_row_major(cifar):
    root, train, _ = cifar
    x = load_cifar100(root).x_train
    mean, std = train_stats(train)
    # Image 0 is pure red: channel 0 holds normalised 1.0, channels 1 and 2 normalised 0.0.
    for c, value in enumerate((1.0, 0.0, 0.0)):
        expected = torch.full((32, 32), (value - mean[c]) / std[c], dtype=torch.float32)
        torch.testing.assert_close(x[0, c], expected)
    # Image 3, green channel, row 5, column 7 sits at byte 1024 + 5 * 32 + 7 of its row.
    raw = train[3, 1024 + 5 * 32 + 7] / 255.0
    assert x[3, 1, 5, 7].item() == pytest.approx((raw - mean[1]) / std[1], abs=1e-5)


def test_both_splits_are_normalised_with_training_channel_stats(cifar):
    root, train, test = cifar
    split = load_cifar100(root)
    mean, std = train_stats(train)
    for x, raw in ((split.x_train, train), (split.x_test, test)):
        pixels = raw.reshape(-1, 3, 32, 32) / 255.0
        expected = (pixels - mean[None, :, None, None]) / std[None, :, None, None]
        torch.testing.assert_close(x, torch.from_numpy(expected).float())


def test_training_split_has_zero_mean_unit_std_per_channel(cifar):
    x = load_cifar100(cifar[0]).x_train.double()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.double))
    torch.testing.assert_close(
        x.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.double)
    )


def test_parent_and_cifar_folder_give_the_same_cached_split(cifar):
    root = cifar[0]
    from_parent = load_cifar100(root)
    from_folder = load_cifar100(str(root / "cifar-100-python"))
    assert from_folder is from_parent  # one load per resolved folder


@pytest.mark.filterwarnings("error")  # numpy 2 warns when numpy.core is imported by name
def test_numpy_1_module_names_of_the_original_files_load(cifar):
    root, train, _ = cifar
    # The distributed files predate numpy 2 and name numpy.core.multiarray._reconstruct.
    pickled = pickle.dumps(batch(train, TRAIN_LABELS, b"train"), protocol=2)
    old = pickled.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    (root / "cifar-100-python" / "train").write_bytes(old)
    assert load_cifar100(root).y_train.tolist() == TRAIN_LABELS


# ---------------------------------------------------------------- CIFAR-100 errors


def test_missing_folder_names_the_expected_layout(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere" in message and "cifar-100-python/{train,test,meta}" in message


def test_folder_without_cifar_files_names_the_expected_layout(tmp_path):
    assert "cifar-100-python" in load_error(tmp_path)


def test_missing_meta_is_named(cifar):
    root = cifar[0]
    (root / "cifar-100-python" / "meta").unlink()
    message = load_error(root)
    assert "missing" in message and str(root / "cifar-100-python" / "meta") in message


def test_truncated_pickle_is_reported(cifar):
    train = cifar[0] / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:5000])
    message = load_error(cifar[0])
    assert str(train) in message and "pickle" in message


def test_file_that_is_not_a_pickle_is_reported(cifar):
    test = cifar[0] / "cifar-100-python" / "test"
    test.write_text("<html>404 Not Found</html>")
    assert str(test) in load_error(cifar[0])


def test_dict_without_data_key_is_reported(cifar):
    root, train, _ = cifar
    record = batch(train, TRAIN_LABELS, b"training batch 1 of 1")
    del record[b"data"]
    dump(root / "cifar-100-python" / "train", record)
    message = load_error(root)
    assert "b'data'" in message and "missing" in message


def test_wrong_data_width_is_reported(cifar):
    root = cifar[0]
    narrow = np.zeros((len(TRAIN_LABELS), 3000), dtype=np.uint8)
    dump(root / "cifar-100-python" / "train", batch(narrow, TRAIN_LABELS, b"train"))
    message = load_error(root)
    assert "(7, 3000)" in message and "3072" in message


def test_label_out_of_range_is_reported(cifar):
    root, _, test = cifar
    dump(root / "cifar-100-python" / "test", batch(test, [99, 100, 42], b"test"))
    message = load_error(root)
    assert "label 100 out of range" in message and "0..99" in message


def test_label_count_mismatch_is_reported(cifar):
    root, _, test = cifar
    dump(root / "cifar-100-python" / "test", batch(test, [99, 3], b"test"))
    assert "counts must match" in load_error(root)


class _RunsShell:
    """Pickles as a call to os.system: what a malicious 'dataset' file would contain."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_calling_os_system_is_refused_without_running(cifar, tmp_path):
    root, train, _ = cifar
    marker = tmp_path / "pwned"
    record = batch(train, TRAIN_LABELS, b"train")
    record[b"filenames"] = _RunsShell(f"echo pwned > {marker}")
    bad = root / "cifar-100-python" / "train"
    dump(bad, record)
    message = load_error(root)
    assert "refused" in message and str(bad) in message and "system" in message
    assert not marker.exists()


# ---------------------------------------------------------------- embedded-MNIST stand-in


def test_embedded_mnist_stand_in_has_cifar_shapes_and_mnist_labels():
    split = load_embedded_mnist_pairs()
    mnist = load_mnist("embedded")
    assert split.x_train.shape == (4000, 3, 32, 32) and split.x_test.shape == (1000, 3, 32, 32)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.classes == tuple("0123456789") and split.name == "embedded-mnist"
    assert torch.equal(split.y_train, mnist.y_train) and torch.equal(split.y_test, mnist.y_test)


def test_embedded_mnist_channels_are_identical_with_a_constant_border():
    split = load_embedded_mnist_pairs()
    padded = torch.nn.functional.pad(load_mnist("embedded").x_train.double(), (0, 1024 - 784))
    # Padding adds 240 zeros per image, which do not change the sum but do the count.
    mean = padded.sum() / padded.numel()
    std = ((padded - mean).square().sum() / padded.numel()).sqrt()
    zero = ((0.0 - mean) / std).item()
    for x in (split.x_train, split.x_test):
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert x[:, :, border].sub(zero).abs().max().item() < 1e-5
    digits = (load_mnist("embedded").x_train.double().view(-1, 28, 28) - mean) / std
    torch.testing.assert_close(split.x_train[:, 0, 2:30, 2:30], digits.float())
    torch.testing.assert_close(
        split.x_train.double().mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.double)
    )


def test_load_images_dispatches_on_the_source(cifar):
    root = cifar[0]
    assert load_images("embedded-mnist") is load_embedded_mnist_pairs()
    assert load_images(str(root / "cifar-100-python")) is load_cifar100(root)
