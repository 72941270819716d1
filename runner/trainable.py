"""The Ray Tune trainable: one trial is one experiment run (a configuration and a seed).

A trial reports a compact metric line after every task (for live progress only) and, every
`checkpoint_every` tasks and at its end, a checkpoint holding

    state.pt       the experiment's complete state (loaded with weights_only=True)
    rows.parquet   every row the trial has produced so far
    trial.json     trial_id, stage, seed, params, status (running | complete | diverged),
                   tasks done, node and device

so the rows always match the state they came from: a resumed trial continues from the
state and the rows of its last checkpoint, and never repeats or loses a row (RAY-NOTES:
Tune's own result logs repeat the rows reported after the last checkpoint).
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray
import torch
from ray import tune

from plasticity_core.errors import ConfigError, TrainingDiverged
from runner.results import write_rows
from runner.trial import Trial

FAULTS_ENV = "PLASTICITY_FAULTS"
"""Names a folder of planned failures, for testing recovery: a file `<trial_id>@<task>.raise`
or `<trial_id>@<task>.kill` makes that trial raise (or SIGKILL its own worker process) just
before running that task, once: the file is removed as the fault fires."""
REPORTED = ("task", "accuracy", "train_accuracy", "loss", "resets", "seconds")


def trial_config(spec, trial: Trial) -> dict:
    """What Tune passes to `train_trial` for one trial (JSON-able; stored in tuner.pkl):
    the trial and how the spec runs it."""
    return {
        **trial.to_dict(),
        "device": spec.device,
        "cpus": spec.resources.cpu,
        "checkpoint_every": spec.checkpoint_every,
        "faults": os.environ.get(FAULTS_ENV, ""),
    }


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; see the module docstring."""
    trial = Trial.from_dict(config)
    seed = trial.seed
    # Workers are reused between trials: nothing may leak from the previous one.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = trial_device(config["device"])
    experiment_config = trial.config(device)
    info = {
        "trial_id": trial.trial_id,
        "stage": trial.stage,
        "seed": seed,
        "params": trial.params,
        "tasks": experiment_config.tasks,
        "status": "running",
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "device": device,
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }
    state, rows = None, []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = json.loads((Path(folder) / "trial.json").read_text())
            if saved["status"] != "running":
                return  # finished or diverged before the interruption: nothing to redo
            state = torch.load(Path(folder) / "state.pt", weights_only=True, map_location=device)
            rows = pq.read_table(Path(folder) / "rows.parquet").to_pylist()
    run = trial.entry.run(experiment_config, state)
    every = config["checkpoint_every"]
    rows_iter = iter(run)
    while run.task < experiment_config.tasks:
        _inject_fault(config["faults"], trial.trial_id, run.task)
        try:
            row = next(rows_iter)
        except TrainingDiverged as err:
            info.update(status="diverged", error=str(err), tasks_done=len(rows))
            _report(rows, info, None, diverged=1)
            return
        rows.append({"stage": trial.stage, "trial_id": trial.trial_id, **row})
        last = run.task == experiment_config.tasks
        if last or len(rows) % every == 0:
            info.update(status="complete" if last else "running", tasks_done=len(rows))
            _report(rows, info, run.state_dict())
        else:
            tune.report(_metrics(rows[-1]))


def trial_device(policy: str) -> str:
    """The torch device for this trial from the policy and what Ray assigned to it."""
    gpus = ray.get_gpu_ids()
    if policy == "cpu" or (policy == "auto" and not gpus):
        return "cpu"
    if not gpus:
        raise ConfigError("device 'cuda' needs resources.gpu > 0 in the spec")
    if not torch.cuda.is_available():
        node = ray.util.get_node_ip_address()
        raise ConfigError(
            f"Ray gave this trial GPU {', '.join(map(str, gpus))} on node {node}, but torch "
            f"{torch.__version__} there cannot use CUDA (a CPU build, or no driver). Install a "
            "CUDA build of torch on GPU nodes, or set resources.gpu: 0 (or device: cpu)."
        )
    return "cuda"


def _metrics(row: dict) -> dict:
    return {k: row[k] for k in REPORTED if k in row} | {"trial_id": row["trial_id"]}


def _report(rows: list[dict], info: dict, state: dict | None, diverged: int = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="plasticity-ckpt-") as folder:
        if state is not None:
            torch.save(state, Path(folder) / "state.pt")
        if rows:
            write_rows(rows, Path(folder) / "rows.parquet")
        (Path(folder) / "trial.json").write_text(json.dumps(info, indent=1))
        metrics = _metrics(rows[-1]) if rows else {"task": -1, "trial_id": info["trial_id"]}
        metrics["diverged"] = diverged
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _inject_fault(folder: str, trial_id: str, task: int) -> None:
    if not folder:
        return
    for kind in ("raise", "kill"):
        plan = Path(folder) / f"{trial_id}@{task}.{kind}"
        try:
            plan.unlink()  # whoever removes the file fires the fault, exactly once
        except FileNotFoundError:
            continue
        if kind == "kill":
            time.sleep(0.5)  # lets the driver register the last checkpoint: a repeatable test
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected fault: {trial_id} before task {task}")
