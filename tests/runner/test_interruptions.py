"""Honest ends: a sweep stopped by Ctrl-C or SIGTERM says what finished and how to resume,
and exits non-zero; one command at a time holds a folder; staged checkpoint folders of
dead processes are removed. Through the installed `plasticity` command where a signal is
involved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from plasticity_core.errors import ConfigError
from runner.cli import main
from runner.lock import LOCK, folder_lock
from runner.storage import Folder
from runner.trainable import TEMP_PREFIX, remove_orphaned_temp_folders
from tests.runner.ray_helpers import write_spec


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(["plasticity", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def _wait_for_rows(folder: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list((folder / "rows").rglob("*.parquet")):
        assert time.monotonic() < deadline, "no rows were written"
        time.sleep(0.2)


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)
    time.sleep(1)


def _stop(process: subprocess.Popen, *signals: int) -> tuple[int, str]:
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.3)
        process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def test_interrupted_stages_exit_non_zero_and_say_how_to_resume(tmp_path, capsys):
    spec = write_spec(tmp_path, "long", fixed={"tasks": 400})
    folder = tmp_path / "out" / "long"
    sweep = _start(["sweep", str(spec), "--stage", "sweep", "--out", str(tmp_path / "out")])
    _wait_for_rows(folder)
    code, err = _stop(sweep, signal.SIGINT)
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert "runs finished" in last and f"plasticity resume {folder}" in last
    assert not (folder / LOCK).exists()

    assert main(["status", str(folder)]) == 0
    assert "0 running" in capsys.readouterr().out

    for attempt, signals in ((1, (signal.SIGTERM,)), (2, (signal.SIGINT, signal.SIGINT))):
        resumed = _start(["resume", str(folder)])
        _wait_for(folder / "sweep" / f"attempt-{attempt}")  # the stage is running
        started = time.monotonic()
        code, err = _stop(resumed, *signals)
        assert code == 130, err
        assert f"plasticity resume {folder}" in err.strip().splitlines()[-1]
        assert time.monotonic() - started < 60
        assert not (folder / LOCK).exists()


def test_a_folder_in_use_by_a_live_command_is_refused_before_ray(tmp_path, capsys):
    spec = write_spec(tmp_path, "busy")
    folder = tmp_path / "out" / "busy"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        folder.mkdir(parents=True)
        lock = {"host": os.uname().nodename, "pid": holder.pid, "started": "now",
                "command": "plasticity sweep busy.yaml"}  # fmt: skip
        (folder / LOCK).write_text(json.dumps(lock))
        started = time.monotonic()
        assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
        assert time.monotonic() - started < 5, "refused without starting Ray"
        err = capsys.readouterr().err
        assert "is in use by `plasticity sweep busy.yaml`" in err and str(holder.pid) in err
        assert json.loads((folder / LOCK).read_text())["pid"] == holder.pid, "lock kept"
    finally:
        holder.kill()


def test_a_stale_lock_is_taken_over_with_a_warning_and_released(tmp_path):
    folder = Folder(tmp_path)
    (tmp_path / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": _dead_pid(),
                                             "started": "then", "command": "x"}))  # fmt: skip
    warnings: list[str] = []
    with folder_lock(folder, "plasticity resume", warn=warnings.append):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(ConfigError, match="in use by `plasticity resume`"):
            with folder_lock(folder, "another"):
                pass
    assert len(warnings) == 1 and "stale lock" in warnings[0]
    assert not (tmp_path / LOCK).exists()


def test_staged_checkpoint_folders_of_dead_processes_are_removed():
    temp = Path(tempfile.gettempdir())
    dead = temp / f"{TEMP_PREFIX}{_dead_pid()}-test"
    alive = temp / f"{TEMP_PREFIX}{os.getpid()}-test"
    for folder in (dead, alive):
        (folder / "inner").mkdir(parents=True, exist_ok=True)
    try:
        remove_orphaned_temp_folders()
        assert not dead.exists() and alive.exists()
    finally:
        for folder in (dead, alive):
            subprocess.run(["rm", "-rf", str(folder)], check=True)
