"""Colour images as normalised [N, 3, 32, 32] tensors: CIFAR-100, or an MNIST stand-in.

Three sources, all returned as an :class:`ImageSplit`:

* a folder path -- CIFAR-100 in its "python version" layout,
  ``<root>/cifar-100-python/{train,test,meta}`` (50,000 train / 10,000 test images,
  100 fine classes). The path may be ``<root>`` or the ``cifar-100-python`` folder itself.
  The files are pickles, and unpickling can run arbitrary code, so they are read with an
  unpickler that can build numpy arrays and plain containers and refuses everything else.
* ``"cifar100"`` -- the same files fetched by ``plasticity data fetch cifar100`` into the
  data root (:mod:`plasticity_core.data.catalog`).
* ``"embedded-mnist"`` -- the embedded MNIST sample of :mod:`plasticity_core.data.mnist`
  (4,000 train / 1,000 test) padded to 32 x 32 and repeated over three channels. It is a
  stand-in for trying the Continuous CIFAR-100 protocol on any machine, not CIFAR.

Normalisation, both sources: pixels are scaled to [0, 1] (raw 0..255 divided by 255); then,
for each channel c, ``x[:, c] = (x[:, c] - mean_c) / std_c``, where ``mean_c`` and ``std_c``
are the mean and the population standard deviation (divided by the count, not count - 1)
of channel c over every pixel of every TRAINING image. The test split uses the training
statistics, so the training split has per-channel mean 0 and std 1 and the test split
roughly so. Labels are int64 class indices; ``classes[label]`` is the class name.
"""

from __future__ import annotations

import functools
import importlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from plasticity_core.data.catalog import resolve
from plasticity_core.data.mnist import IMAGE_SIDE as MNIST_SIDE
from plasticity_core.data.mnist import load_mnist
from plasticity_core.errors import DataError

EMBEDDED_MNIST = "embedded-mnist"
IMAGE_SIDE = 32
N_CHANNELS = 3
CIFAR100_CLASSES = 100
CIFAR100_FOLDER = "cifar-100-python"
_CIFAR_FILES = ("train", "test", "meta")
_PIXELS = N_CHANNELS * IMAGE_SIDE * IMAGE_SIDE  # 3072 bytes per row of b'data'
_MNIST_PAD = (IMAGE_SIDE - MNIST_SIDE) // 2  # 2 pixels on every side: 28 -> 32
_LAYOUT_HINT = (
    f"expected <root>/{CIFAR100_FOLDER}/{{train,test,meta}} (the python version of CIFAR-100), "
    f"or use '{EMBEDDED_MNIST}'"
)


@dataclass(frozen=True)
class ImageSplit:
    """A train/test split of colour images, normalised per channel with training statistics.

    x_train: float32 [N_train, 3, 32, 32], channels (red, green, blue), each channel
        shifted and scaled so that over the training split it has mean 0 and std 1.
    y_train: int64 [N_train], class index in 0..len(classes) - 1.
    x_test, y_test: likewise for the test set (normalised with the training statistics).
    classes: class names; ``classes[i]`` names label ``i``.
    name: the source, ``"cifar100"`` or ``"embedded-mnist"``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    name: str

    @property
    def n_classes(self) -> int:
        """Number of classes: 100 for CIFAR-100, 10 for the MNIST stand-in."""
        return len(self.classes)


def load_images(data: str) -> ImageSplit:
    """Load ``"embedded-mnist"`` (the stand-in) or, for any other string, CIFAR-100 from a path."""
    if data == EMBEDDED_MNIST:
        return load_embedded_mnist_pairs()
    if not data:
        raise DataError(f"empty image source {data!r}; {_LAYOUT_HINT}")
    if data == "cifar100":
        data = str(resolve("cifar100"))
    return load_cifar100(data)


def load_cifar100(path: str | Path) -> ImageSplit:
    """Load CIFAR-100 (fine labels) from ``<root>`` or ``<root>/cifar-100-python``.

    Returns x_train float32 [50000, 3, 32, 32], x_test [10000, 3, 32, 32], labels int64 in
    0..99, and the 100 fine class names, normalised as the module docstring says. Loaded
    splits are cached per resolved folder: a second call returns the same tensors, which
    callers must not modify.
    """
    return _load_cifar100_folder(_find_cifar_folder(Path(path)).resolve())


@functools.cache  # one CSV parse and pad per process; callers never modify the tensors
def load_embedded_mnist_pairs() -> ImageSplit:
    """The embedded MNIST sample shaped like CIFAR: a stand-in, NOT CIFAR.

    For trying the Continuous CIFAR-100 protocol and its 3-channel models on any machine
    (no CIFAR-100 ships with any package). Each 28 x 28 digit of ``load_mnist("embedded")``
    is zero-padded by 2 pixels on every side to 32 x 32 and repeated over 3 identical
    channels: x_train float32 [4000, 3, 32, 32], x_test [1000, 3, 32, 32], labels int64 0..9
    (the same order as ``load_mnist``), classes "0".."9". Normalised as the module docstring
    says; the statistics include the zero border, which becomes ``-mean_c / std_c``.
    """
    mnist = load_mnist("embedded")
    x_train, x_test = _normalised(
        _mnist_to_rgb32(mnist.x_train), _mnist_to_rgb32(mnist.x_test), EMBEDDED_MNIST
    )
    classes = tuple(str(digit) for digit in range(mnist.n_classes))
    return ImageSplit(x_train, mnist.y_train, x_test, mnist.y_test, classes, EMBEDDED_MNIST)


# ---------------------------------------------------------------- CIFAR-100 files


def _find_cifar_folder(path: Path) -> Path:
    if path.is_file():
        raise DataError(
            f"{path} is a file, not a folder (extract cifar-100-python.tar.gz); {_LAYOUT_HINT}"
        )
    if not path.is_dir():
        raise DataError(f"CIFAR-100 folder not found: {path}; {_LAYOUT_HINT}")
    if (path / CIFAR100_FOLDER).is_dir():
        return path / CIFAR100_FOLDER
    # A renamed folder still counts if it holds the files; a file is then named as missing.
    if path.name == CIFAR100_FOLDER or any((path / name).is_file() for name in _CIFAR_FILES):
        return path
    raise DataError(f"no {CIFAR100_FOLDER} folder in {path}; {_LAYOUT_HINT}")


@functools.cache  # keyed by the resolved folder, so <root> and <root>/cifar-100-python share
def _load_cifar100_folder(folder: Path) -> ImageSplit:
    records = {}
    for name in _CIFAR_FILES:
        file = folder / name
        if not file.is_file():
            raise DataError(f"CIFAR-100 file missing: {file}; {_LAYOUT_HINT}")
        records[name] = _read_pickled_dict(file)
    classes = _fine_label_names(folder / "meta", records["meta"])
    x_train, y_train = _checked_images(folder / "train", records["train"])
    x_test, y_test = _checked_images(folder / "test", records["test"])
    x_train, x_test = _normalised(x_train, x_test, str(folder))
    return ImageSplit(x_train, y_train, x_test, y_test, classes, "cifar100")


def _read_pickled_dict(path: Path) -> dict[str, Any]:
    """Unpickle ``path`` with the restricted unpickler; keys come back as ``str``."""
    try:
        with path.open("rb") as fh:
            record = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataError(
            f"refused to load {path}: the pickle asks for {exc}, which no CIFAR-100 file needs "
            "(pickles can run code; only numpy arrays and plain containers are allowed)"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except Exception as exc:
        # Malformed pickles fail in many ways (EOFError, UnpicklingError, ValueError from
        # numpy, ...); all mean the same thing to the caller, so report them as one line.
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(
            f"cannot unpickle {path}: not a valid, complete pickle ({detail}); {_LAYOUT_HINT}"
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"{path}: pickle holds a {type(record).__name__}, expected a dict; {_LAYOUT_HINT}"
        )
    # The real files (pickled by Python 2) load with bytes keys; accept str keys too.
    return {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in record.items()}


def _required(path: Path, record: dict[str, Any], keys: Sequence[str]) -> list[Any]:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(repr(k.encode()) for k in missing)}; "
            f"expected a CIFAR-100 pickle with keys {', '.join(repr(k.encode()) for k in keys)}"
        )
    return [record[k] for k in keys]


def _fine_label_names(path: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    (names,) = _required(path, meta, ["fine_label_names"])
    if not isinstance(names, (list, tuple)) or len(names) != CIFAR100_CLASSES:
        count = f"{len(names)} names" if isinstance(names, (list, tuple)) else type(names).__name__
        raise DataError(
            f"{path}: b'fine_label_names' holds {count}; expected a list of 100 class names"
        )
    try:
        return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    except UnicodeDecodeError:
        raise DataError(f"{path}: b'fine_label_names' holds bytes that are not UTF-8") from None


def _checked_images(path: Path, record: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """b'data' uint8 [N, 3072] -> float32 [N, 3, 32, 32] in [0, 1]; fine labels -> int64 [N]."""
    data, labels = _required(path, record, ["data", "fine_labels"])
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: b'data' is a {type(data).__name__}; expected a numpy array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        found = f"shape {data.shape}, dtype {data.dtype}"
        raise DataError(
            f"{path}: b'data' has {found}; expected uint8 [N, 3072] "
            "(1024 red, 1024 green, 1024 blue per row, each 32 x 32 row-major)"
        )
    y = _checked_labels(path, labels, len(data))
    # Rows are channel-major then row-major, so a plain reshape gives [N, C, H, W].
    x = torch.from_numpy(data.reshape(-1, N_CHANNELS, IMAGE_SIDE, IMAGE_SIDE)).float()
    return x.div_(255.0), y


def _checked_labels(path: Path, labels: Any, n_images: int) -> torch.Tensor:
    try:
        y = np.asarray(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        y = None  # not a sequence of numbers; reported below
    if y is None or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: b'fine_labels' is not a flat list of integers")
    if len(y) != n_images:
        raise DataError(
            f"{path}: {len(y)} fine labels for {n_images} images in b'data'; counts must match"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= CIFAR100_CLASSES):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{path}: fine label {bad} out of range; expected 0..99")
    return torch.from_numpy(y.astype(np.int64))


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (its str is ``module.name``)."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers; refuses every other global.

    Only ``find_class`` can reach code outside the pickle, so an allow-list there is the
    whole defence: a refused name is never imported, let alone called.
    """

    def find_class(self, module: str, name: str) -> Any:
        target = _allowed_globals().get((module, name))
        if target is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return target


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals CIFAR-100 pickles (and re-pickles by protocols 2..5) refer to."""
    allowed: dict[tuple[str, str], Any] = {}
    # numpy 1.x pickles name numpy.core, numpy 2 numpy._core; both must load on either.
    for owner, name in (
        ("multiarray", "_reconstruct"),  # ndarray.__reduce__, protocols 2..4
        ("multiarray", "scalar"),  # numpy scalars, e.g. labels stored as np.int64
        ("numeric", "_frombuffer"),  # ndarray.__reduce_ex__, protocol 5
    ):
        target = getattr(_numpy_core(owner), name)
        for package in ("numpy.core", "numpy._core"):
            allowed[f"{package}.{owner}", name] = target
    allowed["numpy", "ndarray"] = np.ndarray
    allowed["numpy", "dtype"] = np.dtype
    # Python 3 pickles bytes under protocol 2 as _codecs.encode(text, "latin1").
    allowed["_codecs", "encode"] = _latin1_encode
    for builtin in (set, frozenset, bytearray, complex):
        for module in ("builtins", "__builtin__"):  # Python 3 and Python 2 spellings
            allowed[module, builtin.__name__] = builtin
    return allowed


def _numpy_core(owner: str) -> Any:
    try:
        return importlib.import_module(f"numpy._core.{owner}")
    except ImportError:  # numpy < 2 has only numpy.core (numpy 2 warns on that name)
        return importlib.import_module(f"numpy.core.{owner}")


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Only the latin-1 round trip pickle itself emits: other codecs would import modules.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _RefusedGlobal(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin-1", errors)


# ---------------------------------------------------------------- shared


def _mnist_to_rgb32(x: torch.Tensor) -> torch.Tensor:
    """float32 [N, 784] in [0, 1] -> [N, 3, 32, 32]: zero border of 2, three equal channels."""
    side = MNIST_SIDE
    padded = F.pad(x.reshape(-1, 1, side, side), (_MNIST_PAD,) * 4)
    return padded.expand(-1, N_CHANNELS, -1, -1).contiguous()


def _normalised(
    x_train: torch.Tensor, x_test: torch.Tensor, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise both [N, 3, H, W] splits in place with the training split's channel stats."""
    if len(x_train) == 0:
        raise DataError(f"{source}: the training split has no images; cannot normalise")
    # CPU reductions of float32 accumulate in float64, so 51M pixels per channel are fine.
    var, mean = torch.var_mean(x_train, dim=(0, 2, 3), correction=0)
    std = var.sqrt()
    if bool((std == 0).any()):
        flat = [c for c in range(len(std)) if std[c] == 0]
        raise DataError(f"{source}: training channel(s) {flat} are constant; cannot normalise")
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return x_train.sub_(mean).div_(std), x_test.sub_(mean).div_(std)
