"""An experiment folder on a local disk or in object storage (s3://, gs://, file://...).

Everything the runner writes outside Ray's own checkpoints goes through `Folder`, so the
same code serves a laptop and a cluster whose trials run on other nodes. Writes are atomic:
a local file is written beside its target and renamed over it; an object store replaces an
object in one PUT.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from plasticity_core.errors import ConfigError


def is_uri(location: str) -> bool:
    return "://" in str(location)


class Folder:
    """A folder addressed by a local path or a URI; `uri` is what Ray Tune is given."""

    def __init__(self, location: str | Path) -> None:
        location = str(location)
        if is_uri(location):
            try:
                self.fs, self.path = pafs.FileSystem.from_uri(location)
            except (pa.ArrowInvalid, OSError) as err:
                raise ConfigError(
                    f"storage {location!r} is not usable: {err}. Use a local path or a URI "
                    "pyarrow supports (s3://, gs://, hdfs://, abfs://, file://)"
                ) from None
            self.uri = location.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            self.path = str(Path(location).expanduser().resolve())
            self.uri = self.path
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def on(cls, fs: pafs.FileSystem, path: str) -> Folder:
        """A folder of an already resolved filesystem (e.g. a Ray checkpoint's)."""
        folder = object.__new__(cls)
        folder.fs, folder.path, folder.uri = fs, path.rstrip("/"), path.rstrip("/")
        folder.local = isinstance(fs, pafs.LocalFileSystem)
        return folder

    def __truediv__(self, name: str) -> Folder:
        child = object.__new__(Folder)
        child.fs, child.local = self.fs, self.local
        child.path = f"{self.path.rstrip('/')}/{name}"
        child.uri = f"{self.uri}/{name}"
        return child

    def __str__(self) -> str:
        return self.uri

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def files(self, suffix: str = "") -> list[Folder]:
        """Files below this folder (recursively) whose names end with `suffix`, sorted."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True))
        paths = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.path.endswith(suffix)
            and not Path(i.path).name.startswith(".")
        )
        return [self / p[len(self.path.rstrip("/")) + 1 :] for p in paths]

    def children(self) -> list[Folder]:
        """The folders directly inside this one, sorted."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path))
        names = sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.Directory)
        return [self / name for name in names]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        parent = self.path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        tmp = f"{parent}/.{Path(self.path).name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())
