"""One command at a time runs an experiment folder: an advisory lock file naming its holder.

    FOLDER/lock.json   {"host", "pid", "started", "command"}

`sweep`, `resume` and `demo` hold it while their stages run; a second one refuses to start
(it would re-run the first one's trials). A lock whose process is gone (same host, pid not
alive) is stale: it is taken over with a warning. A lock held on another host cannot be
checked from here, so it is reported with what to delete if that host's command is gone.
`status` reads it to tell a running stage from a stopped one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from plasticity_core.errors import ConfigError
from runner.storage import Folder

LOCK = "lock.json"
UNKNOWN = {"host": "?", "pid": -1, "started": "?", "command": "?"}
"""The holder of an unreadable lock file: treated as stale."""


def process_alive(pid: int) -> bool:
    """Whether a process of that id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def holder(folder: Folder) -> dict | None:
    """The lock's holder record, or None when the folder is not locked."""
    lock = folder / LOCK
    if not lock.exists():
        return None
    try:
        record = json.loads(lock.read_text())
        if isinstance(record, dict) and isinstance(record.get("pid"), int):
            return record
    except (OSError, ValueError):
        pass
    return UNKNOWN  # unreadable: stale


def held_by_live_process(record: dict) -> bool:
    """True when the holder may still be running (another host's cannot be checked)."""
    if record["host"] != socket.gethostname():
        return record["host"] != "?"
    return process_alive(record["pid"])


@contextlib.contextmanager
def folder_lock(folder: Folder, command: str, warn=None) -> Iterator[None]:
    """Holds FOLDER/lock.json for the block; raises ConfigError if a live command holds it."""
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}  # fmt: skip
    lock = folder / LOCK
    current = holder(folder)
    if current is not None:
        if held_by_live_process(current):
            raise ConfigError(_busy(folder, current))
        warn(f"{lock}: taking over the stale lock of pid {current['pid']} on "
             f"{current['host']} ({current['command']}), which is no longer running")  # fmt: skip
        _remove(lock)
    _create(folder, json.dumps(me))
    try:
        yield
    finally:
        if holder(folder) == me:
            _remove(lock)


def _busy(folder: Folder, record: dict) -> str:
    where = (f"pid {record['pid']}" if record["host"] == socket.gethostname()
             else f"pid {record['pid']} on host {record['host']}")  # fmt: skip
    text = (f"{folder} is in use by `{record['command']}` ({where}, since {record['started']}); "
            "wait for it to end or stop it")  # fmt: skip
    if record["host"] != socket.gethostname():
        text += f"; if it is gone, delete {folder / LOCK}"
    return text


def _create(folder: Folder, text: str) -> None:
    """Creates the lock file, failing if another command created it first (local disks;
    an object store has no exclusive create, so there the check before is the guard)."""
    lock = folder / LOCK
    if not lock.local:
        lock.write_text(text)
        return
    lock.fs.create_dir(lock.path.rsplit("/", 1)[0], recursive=True)
    try:
        fd = os.open(lock.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(_busy(folder, holder(folder) or UNKNOWN)) from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _remove(lock: Folder) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        lock.fs.delete_file(lock.path)


__all__ = ["LOCK", "folder_lock", "held_by_live_process", "holder", "process_alive"]
