"""Running a spec's stages on Ray Tune: sweep -> select -> final, resumable.

The experiment folder (a local path or a URI such as s3://bucket/prefix/NAME):

    spec.yaml         the validated spec; resume and status read it from here
    run.json          the stages that were asked for
    sweep/ final/     Ray Tune experiments (tuner.pkl, trial folders, checkpoints)
    rows/stage=*/     per-task rows, one Parquet file per trial (see runner.results)
    trials/stage=*/   one JSON record per trial: status, tasks done, node, device
    selection.json    the configuration chosen per group; selection.csv the table behind it

Rows travel inside each trial's checkpoints; the driver copies the newest checkpoint's rows
into `rows/` whenever a trial checkpoints and again after the stage, so the dataset grows
while a sweep runs and works when trials run on other nodes. Scheduling is FIFO: every trial
runs to its end (early stopping misranks plasticity curves, RAY-NOTES).
"""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from ray import tune

from plasticity_core.errors import ConfigError
from runner.results import read_results, trial_rows_file
from runner.select import Selection, format_selection, select_best
from runner.spec import STAGES, SweepSpec, parse_spec
from runner.storage import Folder
from runner.trainable import train_trial, trial_config


def prepare(spec: SweepSpec, out: str) -> Folder:
    """The experiment folder OUT/NAME with the spec written into it. A folder that already
    holds a different spec is refused, so two studies never mix their rows."""
    folder = Folder(out) / spec.name
    written = folder / "spec.yaml"
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if written.exists():
        previous = load_folder_spec(folder)
        if previous.to_dict() != spec.to_dict():
            raise ConfigError(
                f"{folder} already holds a different spec named {spec.name!r}; choose another "
                "--out, or continue that experiment with `plasticity resume`"
            )
    else:
        written.write_text(text)
    return folder


def load_folder_spec(folder: Folder) -> SweepSpec:
    spec_file = folder / "spec.yaml"
    if not spec_file.exists():
        raise ConfigError(f"{folder} is not an experiment folder (no spec.yaml)")
    return parse_spec(yaml.safe_load(spec_file.read_text()), str(spec_file))


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


def run_stages(spec: SweepSpec, folder: Folder, stages: list[str], printer=print) -> int:
    """Runs the stages in order inside an active Ray session; returns how many trials
    failed (0 = everything finished; diverged trials are finished)."""
    (folder / "run.json").write_text(json.dumps({"stages": stages}))
    for stage in stages:
        if stage == "select":
            selection = run_select(spec, folder)
            printer(format_selection(selection, spec))
            continue
        failed = run_tune_stage(spec, folder, stage, printer)
        if failed:
            printer(
                f"[{stage}] {failed} trial(s) failed; fix the cause and run "
                f"`plasticity resume {folder}` to continue them from their checkpoints"
            )
            return failed
    return 0


def run_select(spec: SweepSpec, folder: Folder) -> Selection:
    rows = read_results(folder, stage="sweep")
    selection = select_best(spec, rows, trial_records(folder, "sweep"))
    (folder / "selection.csv").write_text(selection.table.to_csv(index=False))
    (folder / "selection.json").write_text(selection.to_json(spec))
    return selection


def trial_records(folder: Folder, stage: str) -> dict[str, dict]:
    records = {}
    for file in (folder / "trials" / f"stage={stage}").files(".json"):
        record = json.loads(file.read_text())
        records[record["trial_id"]] = record
    return records


def run_tune_stage(spec: SweepSpec, folder: Folder, stage: str, printer=print) -> int:
    stage_folder = folder / stage
    progress = Progress(stage, printer)
    restored = tune.Tuner.can_restore(stage_folder.uri)
    if restored:
        tuner = tune.Tuner.restore(
            stage_folder.uri, trainable=_trainable(spec), resume_errored=True
        )
        printer(f"[{stage}] resuming {stage_folder}")
    else:
        trials = stage_trials(spec, folder, stage)
        printer(f"[{stage}] {len(trials)} trials -> {stage_folder}")
        tuner = tune.Tuner(
            _trainable(spec),
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(
                name=stage,
                storage_path=folder.uri,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[Collect(), progress],
            ),
        )
    results = tuner.fit()
    failed = 0
    for result in results:
        if result.checkpoint is not None:
            collect(result.checkpoint)
        if result.error is not None:
            failed += 1
    progress.summary(results)
    if not restored:
        _report_utilisation(folder, stage, progress, printer)
    return failed


def _report_utilisation(folder: Folder, stage: str, progress: Progress, printer) -> None:
    """Task time summed over trials against wall time x CPUs: what Ray's scheduling,
    process start-up and checkpointing leave of the machine."""
    import ray

    rows = read_results(folder, stage=stage)
    if not len(rows):
        return
    busy = float(rows["seconds"].sum())
    if "diagnostics_seconds" in rows:
        busy += float(rows["diagnostics_seconds"].fillna(0).sum())
    wall = time.monotonic() - progress.start
    cpus = ray.cluster_resources().get("CPU", 1)
    printer(
        f"[{stage}] task time {busy:.1f} s in {wall:.1f} s wall on {cpus:g} CPUs: "
        f"{busy / (wall * cpus):.0%} of the CPUs' time"
    )


def _trainable(spec: SweepSpec):
    return tune.with_resources(_run_trial, spec.resources.as_ray())


def _run_trial(config: dict) -> None:
    train_trial(config["trial"])


def _trial_dirname(trial) -> str:
    return trial.config["trial"]["trial_id"]


def collect(checkpoint: tune.Checkpoint) -> None:
    """Copies a checkpoint's rows and records into the experiment's dataset, one file per
    run. The experiment folder is found from the checkpoint's own place (EXPERIMENT/STAGE/
    TRIAL/checkpoint_N), so this keeps working when the folder has been moved since."""
    fs, path = checkpoint.filesystem, checkpoint.path.rstrip("/")
    folder = Folder.on(fs, path.rsplit("/", 3)[0])
    with fs.open_input_stream(f"{path}/trials.json") as f:
        records = json.loads(f.read())
    try:
        with fs.open_input_stream(f"{path}/rows.parquet") as f:
            rows = pq.read_table(pa.BufferReader(f.read()), use_threads=False)
    except FileNotFoundError:
        rows = None  # every run diverged on its first task: no rows
    for record in records:
        trial_id, stage = record["trial_id"], record["stage"]
        if rows is not None:
            own = rows.filter(pc.equal(rows["trial_id"], trial_id))
            if own.num_rows:
                sink = pa.BufferOutputStream()
                pq.write_table(own, sink)
                trial_rows_file(folder, stage, trial_id).write_bytes(sink.getvalue().to_pybytes())
        (folder / "trials" / f"stage={stage}" / f"{trial_id}.json").write_text(json.dumps(record))


class Collect(tune.Callback):
    """Copies rows into the dataset as soon as a trial checkpoints (live partial results)."""

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        collect(checkpoint)


class Progress(tune.Callback):
    """One compact line every `interval` seconds and on each trial's end, instead of
    Ray's tables."""

    def __init__(self, stage: str, printer=print, interval: float = 10.0) -> None:
        self.stage, self.printer, self.interval = stage, printer, interval
        self.setup_time()

    def setup_time(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0

    def setup(self, **info) -> None:  # also runs after a restore
        self.setup_time()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into tuner.pkl; the printer stays with this process
        # (a restored run prints with print()).
        return {k: v for k, v in self.__dict__.items() if k != "printer"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, printer=print)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last >= self.interval:
            self._line(trials)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if time.monotonic() - self.last >= self.interval or all(t.is_finished() for t in trials):
            self._line(trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.printer(f"[{self.stage}] trial {_trial_dirname(trial)} failed")
        self._line(trials)

    def _line(self, trials) -> None:
        self.last = time.monotonic()
        counts = {"TERMINATED": 0, "RUNNING": 0, "ERROR": 0, "PENDING": 0}
        tasks = total = 0
        for trial in trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
            tasks += (trial.last_result or {}).get("tasks_done", 0)
            total += trial.config["trial"]["tasks"]
        elapsed = int(time.monotonic() - self.start)
        self.printer(
            f"[{self.stage}] {counts['TERMINATED']}/{len(trials)} done, "
            f"{counts['RUNNING']} running, {counts['ERROR']} failed; "
            f"tasks {tasks}/{total}; {elapsed // 60}:{elapsed % 60:02d}"
        )

    def summary(self, results) -> None:
        errors = [r for r in results if r.error is not None]
        for result in errors:
            message = str(result.error).strip().splitlines()[-1]
            self.printer(f"[{self.stage}] error: {message}")
        elapsed = time.monotonic() - self.start
        self.printer(
            f"[{self.stage}] {len(results) - len(errors)}/{len(results)} trials finished "
            f"in {elapsed:.1f} s"
        )


__all__ = ["STAGES", "prepare", "run_stages", "run_select", "load_folder_spec"]
