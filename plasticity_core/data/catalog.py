"""Named datasets: `data: mnist` and `data: cifar100` instead of a folder path.

They live under one data root: `PLASTICITY_DATA` if set, else `$XDG_CACHE_HOME/plasticity/data`
(`~/.cache/plasticity/data` by default). `plasticity data fetch NAME` (runner/download.py)
downloads them there and lays them out as the readers expect:

    mnist     ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar100  ROOT/cifar-100-python/{train,test,meta}   (from ROOT/cifar-100-python.tar.gz)

The mirrors and MD5 checksums are the ones torchvision uses (torchvision/datasets/mnist.py,
cifar.py). Nothing here touches the network: it says where a dataset is and whether its
files are there and intact.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from plasticity_core.errors import DataError

ENV = "PLASTICITY_DATA"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """One file: its name and MD5."""

    name: str
    md5: str


@dataclass(frozen=True)
class Dataset:
    name: str
    mirrors: tuple[str, ...]
    """Base URLs, tried in order; a file's URL is base + its name."""
    folder: str
    """Where the downloads go, relative to the root."""
    downloads: tuple[Remote, ...]
    extract: str = ""
    """For an archive: the folder it holds, extracted next to it."""
    members: tuple[Remote, ...] = ()
    """The extracted files (inside `extract`) and their MD5s."""

    def location(self, root: Path) -> Path:
        """The folder a reader opens."""
        return root / (self.extract or self.folder)

    def needed(self, root: Path) -> list[tuple[Path, str]]:
        """(path, md5) of every file a reader needs."""
        if self.extract:
            return [(root / self.extract / m.name, m.md5) for m in self.members]
        return [(root / self.folder / d.name, d.md5) for d in self.downloads]


DATASETS = {
    "mnist": Dataset(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),  # fmt: skip
        folder="MNIST/raw",
        downloads=(
            Remote("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            Remote("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            Remote("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            Remote("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "cifar100": Dataset(
        name="cifar100",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        folder="",
        downloads=(Remote("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        extract="cifar-100-python",
        members=(
            Remote("train", "16019d7e3df5f24257cddd939b257f8d"),
            Remote("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
            Remote("meta", "7973b15100ade9c7d40fb424638fde48"),
        ),
    ),
}


def data_root(root: str | Path | None = None) -> Path:
    """`root` if given, else PLASTICITY_DATA, else the per-user cache folder."""
    if root:
        return Path(root).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "plasticity" / "data"


def resolve(name: str, root: str | Path | None = None) -> Path:
    """The folder to read dataset `name` from; DataError naming the fetch command if any of
    its files is missing (existence only: `verify` checks contents)."""
    dataset = DATASETS[name]
    base = data_root(root)
    missing = [path for path, _ in dataset.needed(base) if not path.is_file()]
    if missing:
        raise DataError(
            f"dataset {name!r} is not in {base} ({missing[0].name} missing); run: plasticity "
            f"data fetch {name}" + (f" --root {base}" if root else "")
        )
    return dataset.location(base)


BUILT_IN = ("embedded", "embedded-mnist")
"""Sources that ship with the project (no folder to look for)."""


def missing_folder(data: str) -> str | None:
    """For a process that sees the same disks as the trials: why the folder `data` names
    cannot be read, or None (named and built-in sources are checked elsewhere)."""
    if data in DATASETS or data in BUILT_IN or Path(data).expanduser().is_dir():
        return None
    return f"data folder {data} does not exist"


def check_source(data: str) -> None:
    """For configs: a named dataset must be present (cheap: files exist); paths and the
    embedded sources are left to their readers."""
    if data in DATASETS:
        resolve(data)


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity against the published sums
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(dataset: Dataset, root: str | Path | None = None) -> str:
    """'verified' (every needed file matches its MD5), 'incomplete' (some are there, or a
    partial download), or 'missing'."""
    base = data_root(root)
    needed = dataset.needed(base)
    present = [(p, md5) for p, md5 in needed if p.is_file()]
    if len(present) == len(needed) and all(md5_of(p) == md5 for p, md5 in present):
        return "verified"
    partial = any((base / dataset.folder / f"{d.name}.part").exists() for d in dataset.downloads)
    downloaded = any((base / dataset.folder / d.name).is_file() for d in dataset.downloads)
    return "incomplete" if present or partial or downloaded else "missing"
