"""`plasticity data fetch`: download a named dataset into the data root, verified.

Each file goes to `NAME.part`, resumes an interrupted `.part` with an HTTP Range request
(starting over when the server ignores it), is checked against its published MD5 and only
then renamed into place (os.replace, atomic on one file system). A verified file is never
fetched again. Mirrors are tried in order. An archive (CIFAR-100) is extracted member by
member with tarfile's "data" filter into a temporary folder, checked, then renamed into
place. Every failure is one DataError line; a partial download stays for the next run.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from plasticity_core.data.catalog import CHUNK, Dataset, md5_of
from plasticity_core.errors import DataError

NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)
TIMEOUT = 30.0
"""Seconds a connection or one read may take."""


def fetch(
    dataset: Dataset,
    root: Path,
    mirror: str | None = None,
    timeout: float = TIMEOUT,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Download, verify and lay out `dataset` under `root`; returns the folder to read.
    `mirror` replaces the dataset's own base URLs."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    bases = (mirror if mirror.endswith("/") else mirror + "/",) if mirror else dataset.mirrors
    folder = root / dataset.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for remote in dataset.downloads:
            target = folder / remote.name
            if target.is_file() and md5_of(target) == remote.md5:
                say(f"{dataset.name}: {remote.name} present and verified")
                continue
            _fetch_file([base + remote.name for base in bases], target, remote.md5, timeout, say)
        if dataset.extract:
            _extract(dataset, root, say)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DataError(f"no space left on {root} while fetching {dataset.name}; "
                            "free some and run the same command again") from None  # fmt: skip
        raise DataError(f"cannot write under {root}: {err.strerror or err}") from None
    return dataset.location(root)


def _fetch_file(urls: list[str], target: Path, md5: str, timeout: float, say) -> None:
    part = target.with_name(target.name + ".part")
    problems = []
    for url in urls:
        try:
            _download(url, part, timeout)
            break
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            TimeoutError,
            ConnectionError,
        ) as err:
            problems.append(f"{url}: {_reason(err)}")
    else:
        kept = (
            f"; {part.stat().st_size} bytes kept in {part.name} for resume" if part.exists() else ""
        )
        raise DataError(f"cannot download {target.name}: {'; '.join(problems)}{kept}")
    got = md5_of(part)
    if got != md5:
        part.unlink()
        raise DataError(f"{target.name} from {url} has MD5 {got}, expected {md5}: discarded")
    os.replace(part, target)
    say(f"{target.name}: {target.stat().st_size} bytes, verified")


def _download(url: str, part: Path, timeout: float) -> None:
    """Append to `part` from where it ends (or write it whole if the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is already whole: let the checksum decide
            return
        raise
    with response:
        resumed = have and response.status == 206
        with part.open("ab" if resumed else "wb") as fh:
            shutil.copyfileobj(response, fh, CHUNK)
            written = fh.tell()
    # A connection closed early ends the read quietly: the length says whether all came.
    length = response.headers.get("Content-Length")
    expected = (have if resumed else 0) + int(length) if length else written
    if written < expected:
        raise http.client.IncompleteRead(b"", expected - written)


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, http.client.IncompleteRead):
        return "transfer cut short"
    reason = getattr(err, "reason", err)
    return "timed out" if isinstance(reason, TimeoutError) else str(reason) or type(err).__name__


def _extract(dataset: Dataset, root: Path, say) -> None:
    """Extract the archive's expected members into a temporary folder, verify, rename."""
    final = root / dataset.extract
    if all(p.is_file() and md5_of(p) == md5 for p, md5 in dataset.needed(root)):
        return
    archive = root / dataset.folder / dataset.downloads[0].name
    staging = root / f".{dataset.extract}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    wanted = {f"{dataset.extract}/{m.name}" for m in dataset.members}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"cannot extract {archive}: {err}") from None
    for member in dataset.members:
        path = staging / dataset.extract / member.name
        if not path.is_file() or md5_of(path) != member.md5:
            shutil.rmtree(staging, ignore_errors=True)
            raise DataError(f"{archive.name}: {member.name} missing or not the published file")
    if final.exists():  # an earlier, damaged extraction: the verified one replaces it
        shutil.rmtree(final)
    os.replace(staging / dataset.extract, final)
    staging.rmdir()
    say(f"{dataset.name}: extracted to {final}")
