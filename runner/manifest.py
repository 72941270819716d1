"""The project's own record of an experiment folder, read and written without Ray.

    spec.yaml                 the validated spec
    run.json                  the stages that were asked for
    trials/stage=*/<id>.json  one record per run: status (running | complete | diverged |
                              failed), tasks done, node, device, pack, error
    selection.json            the configuration chosen per group (select stage)
    STAGE/attempt-K/TRIAL/checkpoint_N/   what a trial saved: state.pt, rows.parquet,
                              trials.json (see runner.trainable and runner.checkpoints)

These files are the truth of an experiment: `status`, `dashboard` and `resume` read only
them. Ray Tune's own experiment state (pickles) is written beside them by every attempt
and never read back, because a results folder may sit on shared storage where whoever can
write a pickle there would run code on whoever opens the folder.
"""

from __future__ import annotations

import hashlib
import json
import os

import yaml

from plasticity_core.errors import ConfigError
from runner.safe_yaml import load_yaml
from runner.spec import SweepSpec, parse_spec
from runner.storage import Folder
from runner.trial import Trial

FINISHED = ("complete", "diverged")
"""Run statuses that need no more work."""
FAULTS_ENV = "PLASTICITY_FAULTS"
"""Names a folder of planned failures, for testing recovery (see runner.trainable)."""


def prepare(spec: SweepSpec, out: str) -> Folder:
    """The experiment folder OUT/NAME with the spec written into it. A folder that already
    holds a different spec is refused, so two studies never mix their rows."""
    root = Folder(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing)")
    folder = root / spec.name
    written = folder / "spec.yaml"
    if written.exists():
        previous = load_folder_spec(folder)
        if previous.to_dict() != spec.to_dict():
            raise ConfigError(
                f"{folder} already holds a different spec named {spec.name!r}; choose another "
                "--out, or continue that experiment with `plasticity resume`"
            )
    else:
        written.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return folder


def load_folder_spec(folder: Folder) -> SweepSpec:
    """The spec an experiment folder was started with, validated again as it is read (no
    trial ceiling: the command that started it already allowed its size)."""
    spec_file = folder / "spec.yaml"
    if not spec_file.exists():
        raise ConfigError(f"{folder} is not an experiment folder (no spec.yaml)")
    data = load_yaml(spec_file.read_bytes(), str(spec_file))
    return parse_spec(data, str(spec_file), max_trials=None)


def asked_stages(folder: Folder) -> list[str]:
    """The stages the experiment's first command asked for (run.json)."""
    try:
        return json.loads((folder / "run.json").read_text())["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{folder}/run.json is missing or unreadable; start the stages "
                          "again with `plasticity sweep`") from None  # fmt: skip


def stage_trials(spec: SweepSpec, folder: Folder, stage: str) -> list[dict]:
    """Tune trial configs of a stage: grid x sweep seeds, or the selection x final seeds,
    in packs of up to `spec.pack` runs that can share a step."""
    if stage == "sweep":
        points, seeds = spec.configurations(), spec.sweep_seeds
    else:
        choice_file = folder / "selection.json"
        if not choice_file.exists():
            raise ConfigError(f"{folder}: no selection.json yet; run the select stage first")
        points = [c["params"] for c in json.loads(choice_file.read_text())["choices"]]
        seeds = spec.final_seeds
    return [trial_config(spec, runs) for runs in spec.packs(spec.trials(stage, points, seeds))]


def trial_config(spec: SweepSpec, runs: list[Trial]) -> dict:
    """What Tune passes to the trainable for one Tune trial (JSON-able): its runs (one, or
    a pack that shares a step), how the spec runs them, and `resume_from`, the checkpoint
    it continues from (None: from the start)."""
    return {
        "runs": [trial.to_dict() for trial in runs],
        "trial_id": pack_id(runs),
        "tasks": sum(trial.tasks for trial in runs),
        "device": spec.device,
        "cpus": spec.resources.cpu,
        "checkpoint_every": spec.checkpoint_every,
        "faults": os.environ.get(FAULTS_ENV, ""),
        "resume_from": None,
    }


def pack_id(runs: list[Trial]) -> str:
    """A one-run Tune trial is named by its run; a pack by its runs' ids."""
    if len(runs) == 1:
        return runs[0].trial_id
    digest = hashlib.sha1(" ".join(t.trial_id for t in runs).encode()).hexdigest()[:12]
    return f"pack-{digest}-x{len(runs)}"


def record_file(folder: Folder, stage: str, trial_id: str) -> Folder:
    return folder / "trials" / f"stage={stage}" / f"{trial_id}.json"


def trial_records(folder: Folder, stage: str, bad_files: list[str] | None = None) -> dict:
    """Run id -> its record. An unreadable record is skipped and named in `bad_files`
    (raised about when that is None)."""
    records = {}
    for file in (folder / "trials" / f"stage={stage}").files(".json"):
        try:
            record = json.loads(file.read_text())
            records[record["trial_id"]] = record
        except (OSError, ValueError, KeyError, TypeError) as err:
            if bad_files is None:
                raise ConfigError(f"{file} is not a readable trial record ({err})") from None
            bad_files.append(f"{file}: not a readable trial record; `plasticity resume` "
                             "rewrites it from the trial's checkpoint")  # fmt: skip
    return records


def write_records(folder: Folder, records: list[dict]) -> None:
    for record in records:
        record_file(folder, record["stage"], record["trial_id"]).write_text(json.dumps(record))


def mark_runs(folder: Folder, config: dict, status: str, error: str | None = None) -> None:
    """Sets the status of a Tune trial's unfinished runs in their records (the driver's
    view: running when Ray starts the trial, failed when it gives up on it)."""
    stage = config["runs"][0]["stage"]
    known = trial_records(folder, stage, bad_files=[])
    for run in config["runs"]:
        record = known.get(run["trial_id"]) or {
            "trial_id": run["trial_id"], "stage": stage, "seed": run["seed"],
            "params": run["params"], "tasks": run["tasks"], "tasks_done": 0,
            "pack": config["trial_id"],
        }  # fmt: skip
        if record.get("status") in FINISHED:
            continue
        record["status"] = status
        if error is None:
            record.pop("error", None)
        else:
            record["error"] = error
        write_records(folder, [record])


__all__ = [
    "FINISHED", "asked_stages", "load_folder_spec", "mark_runs", "pack_id", "prepare",
    "stage_trials", "trial_config", "trial_records", "write_records",
]  # fmt: skip
