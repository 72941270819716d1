"""`plasticity data fetch` / `list` and named datasets, against a loopback HTTP server that
serves tiny files in the real formats (gzipped IDX, a CIFAR-100 tarball of pickles) and can
refuse, cut, stall or ignore Range. Nothing leaves the machine."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

from plasticity_core.data.catalog import DATASETS, Remote, data_root, verify
from plasticity_core.data.cifar import load_images
from plasticity_core.data.mnist import load_mnist
from plasticity_core.errors import DataError
from runner.download import fetch
from tests.core.test_cifar_data import FINE_NAMES, batch, images

RNG = np.random.default_rng(0)
MNIST_IMAGES = {"train": RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8),
                "t10k": RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)}  # fmt: skip
MNIST_LABELS = {"train": RNG.integers(0, 10, 12, dtype=np.uint8),
                "t10k": RNG.integers(0, 10, 5, dtype=np.uint8)}  # fmt: skip
CIFAR_TRAIN, CIFAR_TEST = [3, 7, 99, 0], [7, 3]


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return gzip.compress(header + array.tobytes(), mtime=0)


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)  # as the published Python 2 files


def _cifar_members() -> dict[str, bytes]:
    return {
        "train": _pickle(batch(images(1, 4), CIFAR_TRAIN, b"train")),
        "test": _pickle(batch(images(2, 2), CIFAR_TEST, b"test")),
        "meta": _pickle({b"fine_label_names": FINE_NAMES}),
    }


def _tarball(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


FILES = {
    **{f"{s}-images-idx3-ubyte.gz": _idx(MNIST_IMAGES[s]) for s in MNIST_IMAGES},
    **{f"{s}-labels-idx1-ubyte.gz": _idx(MNIST_LABELS[s]) for s in MNIST_LABELS},
    "cifar-100-python.tar.gz": _tarball(_cifar_members()),
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _catalog(name: str, base: str):
    """The dataset with the tiny files' checksums, served from `base`."""
    real = DATASETS[name]
    members = tuple(Remote(n, _md5(d)) for n, d in _cifar_members().items())
    return dataclasses.replace(
        real,
        mirrors=(base,),
        downloads=tuple(Remote(d.name, _md5(FILES[d.name])) for d in real.downloads),
        members=members if real.members else (),
    )


class Server(http.server.ThreadingHTTPServer):
    """Serves FILES; `mode`: ok | missing | cut (close after half) | stall | no-range."""

    mode = "ok"

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ranges: list[str] = []
        self.requests = 0
        self.base = f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        server = self.server
        server.requests += 1
        data = FILES.get(self.path.lstrip("/"))
        if data is None or server.mode == "missing":
            self.send_error(404)
            return
        if server.mode == "stall":
            time.sleep(3)
        start = 0
        wanted = self.headers.get("Range")
        if wanted and server.mode != "no-range":
            server.ranges.append(wanted)
            start = int(re.match(r"bytes=(\d+)-", wanted).group(1))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if server.mode == "cut":
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _fetch(name, root, server, **kwargs):
    return fetch(_catalog(name, server.base), root, say=lambda text: None, **kwargs)


def test_fetched_datasets_read_back_through_their_names(tmp_path, server, monkeypatch):
    _fetch("mnist", tmp_path, server)
    _fetch("cifar100", tmp_path, server)
    monkeypatch.setenv("PLASTICITY_DATA", str(tmp_path))
    assert data_root() == tmp_path
    mnist = load_mnist("mnist")
    expected = torch.from_numpy(MNIST_IMAGES["train"].reshape(12, -1) / np.float32(255))
    assert torch.equal(mnist.x_train, expected.float())
    assert mnist.y_test.tolist() == MNIST_LABELS["t10k"].tolist()
    cifar = load_images("cifar100")
    assert cifar.x_train.shape == (4, 3, 32, 32) and cifar.y_train.tolist() == CIFAR_TRAIN
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "MNIST", "cifar-100-python", "cifar-100-python.tar.gz"]  # fmt: skip
    requests = server.requests
    _fetch("mnist", tmp_path, server)  # verified files are not fetched again
    _fetch("cifar100", tmp_path, server)
    assert server.requests == requests


def test_a_checksum_mismatch_discards_the_download_and_keeps_the_rest(tmp_path, server):
    catalog = _catalog("mnist", server.base)
    good, bad = catalog.downloads[0], catalog.downloads[1]
    catalog = dataclasses.replace(catalog, downloads=(good, Remote(bad.name, "0" * 32)))
    with pytest.raises(DataError, match=f"{bad.name} from .* has MD5 .*, expected 0+: discarded"):
        fetch(catalog, tmp_path, say=lambda text: None)
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [good.name]


def test_a_cut_transfer_keeps_its_part_and_the_next_fetch_resumes_with_range(tmp_path, server):
    server.mode = "cut"
    with pytest.raises(DataError, match="bytes kept in .*part for resume"):
        _fetch("cifar100", tmp_path, server)
    part = tmp_path / "cifar-100-python.tar.gz.part"
    half = part.stat().st_size
    assert 0 < half < len(FILES["cifar-100-python.tar.gz"])
    assert verify(_catalog("cifar100", server.base), tmp_path) == "incomplete"
    server.mode = "ok"
    _fetch("cifar100", tmp_path, server)
    assert server.ranges == [f"bytes={half}-"]
    assert not part.exists() and verify(_catalog("cifar100", server.base), tmp_path) == "verified"


def test_a_server_that_ignores_range_starts_the_file_over(tmp_path, server):
    part = tmp_path / "cifar-100-python.tar.gz.part"
    part.write_bytes(b"garbage that is not the start of the archive")
    server.mode = "no-range"
    _fetch("cifar100", tmp_path, server)
    assert verify(_catalog("cifar100", server.base), tmp_path) == "verified"


def test_a_missing_file_falls_back_to_the_next_mirror_and_fails_in_one_line(tmp_path, server):
    catalog = _catalog("mnist", server.base)
    gone = server.base + "nowhere/"
    fetch(dataclasses.replace(catalog, mirrors=(gone, server.base)), tmp_path, say=lambda t: None)
    assert verify(_catalog("mnist", server.base), tmp_path) == "verified"
    with pytest.raises(DataError) as info:
        fetch(dataclasses.replace(catalog, mirrors=(gone,)), tmp_path / "other", say=lambda t: None)
    assert "HTTP 404" in str(info.value) and "\n" not in str(info.value)


def test_a_stalled_server_times_out(tmp_path, server):
    server.mode = "stall"
    start = time.perf_counter()
    with pytest.raises(DataError, match="timed out"):
        _fetch("mnist", tmp_path, server, timeout=0.5)
    assert time.perf_counter() - start < 2.5


def _plasticity(*args, env=None):
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip


def test_the_command_checks_the_published_checksums_and_lists_the_root(tmp_path, server):
    """Through the installed command: the loopback mirror's tiny files are not the published
    MNIST, so the fetch refuses them in one line; list shows each dataset's state."""
    done = _plasticity("data", "fetch", "mnist", "--mirror", server.base, "--root", str(tmp_path))
    assert done.returncode == 2
    assert (
        done.stderr.count("\n") == 1 and "expected f68b3c2dcbeaaa9fbdd348bbdeb94873" in done.stderr
    )
    _fetch("cifar100", tmp_path, server)  # tiny files: present but not the published ones
    listed = _plasticity("data", "list", "--root", str(tmp_path))
    assert listed.returncode == 0
    states = dict(line.split()[:2] for line in listed.stdout.splitlines()[1:])
    assert states == {"mnist": "missing", "cifar100": "incomplete"}


def test_a_named_dataset_that_is_absent_names_the_fetch_command(tmp_path):
    env = {**os.environ, "PLASTICITY_DATA": str(tmp_path)}
    for args in (
        ["run", "permuted-mnist", "--data", "mnist", "--tasks", "1"],
        ["sweep", "pmnist-activations", "--set", "data=mnist", "--out", str(tmp_path)],
    ):
        done = _plasticity(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "run: plasticity data fetch mnist" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
