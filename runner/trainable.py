"""The Ray Tune trainable: one Tune trial is one experiment run (a configuration and a
seed), or a pack of runs that share one vectorised step (`plasticity_core.packed`; a spec's
`pack: N`). Rows and records stay one per run, named by the run's own trial id.

A trial reports a compact metric line after every task (for live progress only) and, every
`checkpoint_every` tasks and at its end, a checkpoint holding

    state.pt       {"runs": each run's complete state} (loaded with weights_only=True)
    rows.parquet   every row the trial's runs have produced so far
    trials.json    per run: trial_id, stage, seed, params, status (running | complete |
                   diverged), tasks done, node, device and the pack it ran in

so the rows always match the state they came from: a resumed trial continues from the
state and the rows of a checkpoint (Tune's, after a crash within one attempt; the one the
driver chose, `resume_from`, in a later attempt), and never repeats or loses a row
(RAY-NOTES: Tune's own result logs repeat the rows reported after the last checkpoint).

`PLASTICITY_FAULTS` (runner.manifest.FAULTS_ENV) names a folder of planned failures, for
testing recovery: a file `<trial_id>@<task>.raise` or `<trial_id>@<task>.kill` makes that
run's trial raise (or SIGKILL its own worker process) just before that task, once: the file
is removed as the fault fires.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from plasticity_core.errors import ConfigError, TrainingDiverged
from plasticity_core.packed.loop import start
from runner.checkpoints import Saved, read_checkpoint
from runner.lock import process_alive
from runner.results import write_rows
from runner.storage import Folder
from runner.trial import Trial

REPORTED = ("task", "accuracy", "train_accuracy", "loss", "resets", "seconds")
TEMP_PREFIX = "plasticity-ckpt-"
"""Checkpoint folders are staged in the temp folder as TEMP_PREFIX<pid>-*: one whose
process has died (a killed worker) is removed by the next trial on that node."""


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; see the module docstring."""
    trials = [Trial.from_dict(t) for t in config["runs"]]
    seed = trials[0].seed
    # Workers are reused between trials: nothing may leak from the previous one.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = trial_device(config["device"])
    configs = [trial.config(device) for trial in trials]
    context = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
               "device": device, "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
               "pack": config["trial_id"]}  # fmt: skip
    remove_orphaned_temp_folders()
    records = [_record(trial, context) for trial in trials]
    states, rows = None, []
    saved = _continued_from(config, device)
    if saved is not None:
        records = saved.records
        if all(r["status"] != "running" for r in records):
            return  # finished or diverged before the interruption: nothing to redo
        for record in records:  # where the runs continue now
            if record["status"] in ("running", "failed"):
                record.update(context, status="running")
                record.pop("error", None)
        states = saved.states
        rows = saved.rows.to_pylist() if saved.rows is not None else []
    entry = trials[0].entry
    active = [i for i, r in enumerate(records) if r["status"] == "running"]
    run = start(entry.run, [configs[i] for i in active], [states[i] for i in active]
                if states else None)  # fmt: skip
    every = config["checkpoint_every"]
    tasks = configs[0].tasks
    results_of = iter(run)
    ids = [t.trial_id for t in trials]
    while True:
        _inject_fault(config["faults"], ids, run.task)
        results = next(results_of, None)
        if results is None:
            break
        task = run.task - 1
        for i, result in zip(active, results, strict=True):
            if isinstance(result, dict):
                rows.append({"stage": trials[i].stage, "trial_id": trials[i].trial_id, **result})
                records[i]["tasks_done"] = task + 1
            elif isinstance(result, TrainingDiverged):
                records[i].update(status="diverged", error=str(result))
        if run.task == tasks or not run.active:
            for record in records:
                if record["status"] == "running":
                    record["status"] = "complete"
            _report(rows, records, run.state_dict(), config["trial_id"])
        elif run.task % every == 0:
            _report(rows, records, run.state_dict(), config["trial_id"])
        else:
            tune.report(_metrics(rows, records, config["trial_id"]))


def _continued_from(config: dict, device: str) -> Saved | None:
    """The checkpoint this trial continues from: Tune's latest of this attempt (a retry
    after a crash), else the one the driver chose from an earlier attempt, else None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        return read_checkpoint(Folder.on(checkpoint.filesystem, checkpoint.path), device)
    if config.get("resume_from"):
        return read_checkpoint(Folder(config["resume_from"]), device)
    return None


def remove_orphaned_temp_folders() -> None:
    """Removes this node's staged checkpoint folders whose process is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _record(trial: Trial, context: dict) -> dict:
    return {"trial_id": trial.trial_id, "stage": trial.stage, "seed": trial.seed,
            "params": trial.params, "tasks": trial.tasks, "status": "running",
            "tasks_done": 0, **context}  # fmt: skip


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


def _metrics(rows: list[dict], records: list[dict], name: str) -> dict:
    """The compact line Tune keeps per report: the last row's metrics, and tasks done by
    all runs of the trial (progress)."""
    last = {k: rows[-1][k] for k in REPORTED if k in rows[-1]} if rows else {"task": -1}
    diverged = sum(r["status"] == "diverged" for r in records)
    return {**last, "trial_id": name, "tasks_done": sum(r["tasks_done"] for r in records),
            "diverged": diverged}  # fmt: skip


def _report(rows: list[dict], records: list[dict], state: dict, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as folder:
        torch.save(state, Path(folder) / "state.pt")
        if rows:
            write_rows(rows, Path(folder) / "rows.parquet")
        (Path(folder) / "trials.json").write_text(json.dumps(records, indent=1))
        checkpoint = tune.Checkpoint.from_directory(folder)
        tune.report(_metrics(rows, records, name), checkpoint=checkpoint)


def _inject_fault(folder: str, trial_ids: list[str], task: int) -> None:
    """Fires a planned fault of any run of the trial once `task` tasks are done."""
    if not folder:
        return
    for trial_id in trial_ids:
        for kind in ("raise", "kill"):
            plan = Path(folder) / f"{trial_id}@{task}.{kind}"
            try:
                plan.unlink()  # whoever removes the file fires the fault, exactly once
            except FileNotFoundError:
                continue
            if kind == "kill":
                time.sleep(0.5)  # lets the driver register the last checkpoint: repeatable
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault: {trial_id} before task {task}")
