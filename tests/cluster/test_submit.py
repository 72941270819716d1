"""End to end on loopback: a real two-node Ray cluster with token authentication, a sweep
sent through the Jobs API by `plasticity submit`, its extra node stopped mid-run."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from runner.results import read_results

HERE = Path(__file__).resolve().parent
PLASTICITY = [sys.executable, "-m", "runner.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(env: dict) -> tuple[subprocess.Popen, int, dict]:
    """The loopback cluster process, its dashboard port and its JSON line. The free port is
    only free when asked: another process (Ray's own workers included) may take it before
    the dashboard binds, and the cluster then exits without its line, so try a new port."""
    for _ in range(3):
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, str(HERE / "loopback_cluster.py"), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        line = process.stdout.readline()
        if line:
            return process, port, json.loads(line)
        process.wait(timeout=120)
    raise RuntimeError("the loopback cluster did not start in 3 tries")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    process, port, info = _start_cluster(env)
    try:
        yield {**info, "url": f"http://127.0.0.1:{port}", "env": env, "process": process}
    finally:
        if process.poll() is None:
            process.stdin.write("stop\n")
            process.stdin.flush()
            process.wait(timeout=120)


def _plasticity(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PLASTICITY, *args], capture_output=True, text=True, env=env, timeout=timeout,
        cwd=HERE.parents[1],
    )  # fmt: skip


def _spec(folder: Path) -> Path:
    spec = {
        "name": "e2e",
        "experiment": "permuted-mnist",
        "fixed": {"tasks": 30, "hidden": [64, 64], "probe_size": 100, "method": "cbp",
                  "utility": "gxd", "maturity": 5, "replacement_rate": 0.01},
        "grid": {"lr": [0.01, 0.05]},
        "seeds": {"sweep": 2, "final": 1},
        "select": {"per": ["utility"]},
        "checkpoint_every": 3,
        "max_failures": 3,
    }  # fmt: skip
    path = folder / "e2e.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_submit_without_the_token_is_refused_clearly(cluster, tmp_path):
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    store = f"file://{tmp_path}/store"
    done = _plasticity(["submit", "demo", "--address", cluster["url"], "--storage", store], env)
    assert done.returncode == 2
    assert "needs its authentication token" in done.stderr
    assert not (tmp_path / "store").exists()


def test_submitted_sweep_survives_losing_a_node(cluster, tmp_path):
    store = tmp_path / "store"
    env = cluster["env"]
    start = time.monotonic()
    submitted = _plasticity(
        ["submit", str(_spec(tmp_path)), "--address", cluster["url"], "--storage",
         f"file://{store}", "--stage", "sweep"], env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split("as job ")[1].split(";")[0]
    records = store / "e2e" / "trials" / "stage=sweep"

    def on_worker() -> list[dict]:
        files = records.glob("*.json") if records.exists() else []
        return [r for r in map(lambda f: json.loads(f.read_text()), files)
                if r.get("node_id") == cluster["worker"] and r["status"] == "running"]  # fmt: skip

    deadline = time.monotonic() + 120
    while not on_worker():
        assert time.monotonic() < deadline, "no trial checkpointed on the extra node"
        time.sleep(0.2)
    first_row = time.monotonic() - start
    interrupted = on_worker()[0]["trial_id"]
    cluster["process"].stdin.write("remove-worker\n")
    cluster["process"].stdin.flush()
    assert cluster["process"].stdout.readline().strip() == "removed"

    deadline = time.monotonic() + 240
    while True:
        status = _plasticity(["status", "--address", cluster["url"], "--job", job], env)
        assert status.returncode == 0, status.stderr
        if "SUCCEEDED" in status.stdout or "FAILED" in status.stdout:
            break
        assert time.monotonic() < deadline, status.stdout
        time.sleep(1)
    total = time.monotonic() - start
    assert "SUCCEEDED" in status.stdout, _plasticity(["logs", job, "--address", cluster["url"]],
                                                     env).stdout[-3000:]  # fmt: skip
    print(f"submit -> first checkpointed row {first_row:.1f} s, -> done {total:.1f} s")

    rows = read_results(f"file://{store}/e2e")
    assert rows.groupby("trial_id")["task"].apply(sorted).map(tuple).to_dict() == {
        t: tuple(range(30)) for t in rows["trial_id"].unique()
    }
    assert rows["trial_id"].nunique() == 4 and len(rows) == 120, "no lost or duplicated rows"
    final = json.loads((records / f"{interrupted}.json").read_text())
    assert final["status"] == "complete" and final["node_id"] == cluster["head"]
    folder = _plasticity(["status", f"file://{store}/e2e"], env)
    assert "4 trials: 4 done" in folder.stdout and "tasks saved 120/120" in folder.stdout
