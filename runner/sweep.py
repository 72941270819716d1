"""Running a spec's stages on Ray Tune: sweep -> select -> final, resumable.

The experiment folder (a local path or a URI such as s3://bucket/prefix/NAME) holds the
project's own record of it (runner.manifest: spec.yaml, run.json, trials/, selection.json)
and

    STAGE/attempt-K/  the K-th Ray Tune run of a stage (trial folders with checkpoints)
    rows/stage=*/     per-task rows, one Parquet file per run (see runner.results)
    selection.csv     the table behind the selection

Every run of a stage is rebuilt from the project's files: the trials from the spec (and
the selection, for final), and each unfinished one continues from the newest checkpoint
of any earlier attempt that reads back whole (runner.checkpoints); Tune's own saved state
is never restored, so nothing in the folder is unpickled. Rows travel inside each trial's
checkpoints; the driver copies the newest checkpoint's rows into `rows/` whenever a trial
checkpoints and again after the stage, so the dataset grows while a sweep runs and works
when trials run on other nodes. Scheduling is FIFO: every trial runs to its end (early
stopping misranks plasticity curves, RAY-NOTES).
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import threading
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray import tune

from runner.checkpoints import Saved, newest_readable, next_attempt, read_checkpoint
from runner.manifest import (
    FINISHED,
    mark_runs,
    stage_trials,
    trial_records,
    write_records,
)
from runner.results import read_results, trial_rows_file
from runner.select import Selection, format_selection, select_best
from runner.spec import STAGES, SweepSpec
from runner.storage import Folder
from runner.trainable import remove_orphaned_temp_folders, train_trial


@dataclass(frozen=True)
class Outcome:
    """How a stage ended, from the project's records of its runs."""

    stage: str
    runs: int
    finished: int
    failed: int
    error: str = ""
    """The driver's own error (a full disk, a Ray failure), if one ended the stage."""

    @property
    def unfinished(self) -> int:
        return self.runs - self.finished - self.failed

    @property
    def complete(self) -> bool:
        return self.finished == self.runs and not self.error


def run_stages(spec: SweepSpec, folder: Folder, stages: list[str], printer=print) -> Outcome | None:
    """Runs the stages in order inside an active Ray session; returns the outcome of the
    stage that did not complete (runs failed, interrupted, or a driver error), or None
    when every stage did (diverged runs are finished runs)."""
    (folder / "run.json").write_text(json.dumps({"stages": stages}))
    for stage in stages:
        if stage == "select":
            selection = run_select(spec, folder)
            printer(format_selection(selection, spec))
            continue
        result = run_tune_stage(spec, folder, stage, printer)
        if not result.complete:
            return result
    return None


def run_select(spec: SweepSpec, folder: Folder) -> Selection:
    rows = read_results(folder, stage="sweep")
    selection = select_best(spec, rows, trial_records(folder, "sweep"))
    (folder / "selection.csv").write_text(selection.table.to_csv(index=False))
    (folder / "selection.json").write_text(selection.to_json(spec))
    return selection


def run_tune_stage(spec: SweepSpec, folder: Folder, stage: str, printer=print) -> Outcome:
    configs = stage_trials(spec, folder, stage)
    todo = plan_attempt(folder, stage, configs, lambda text: printer(f"[{stage}] {text}"))
    error = ""
    if todo:
        error = _fit(spec, folder, stage, todo, len(configs), printer)
    else:
        printer(f"[{stage}] all {len(configs)} trials had finished")
    remove_orphaned_temp_folders()
    return outcome(folder, stage, configs, error)


def plan_attempt(folder: Folder, stage: str, configs: list[dict], warn) -> list[dict]:
    """The Tune trials still to run, each with the checkpoint it continues from; the rows
    and records of every trial's newest readable checkpoint are collected again on the
    way (a damaged rows file is rewritten)."""
    todo = []
    for config in configs:
        checkpoint, saved = newest_readable(folder / stage, config["trial_id"], warn)
        if saved is not None:
            collect(folder, saved)
            if all(record["status"] in FINISHED for record in saved.records):
                continue
        todo.append({**config, "resume_from": checkpoint.uri if checkpoint else None})
    return todo


def _fit(spec, folder: Folder, stage: str, todo: list[dict], total: int, printer) -> str:
    """Runs the trials as a new Tune attempt; returns the driver's error, if one ended it."""
    attempt = next_attempt(folder / stage)
    progress, collector = Progress(stage, str(folder), printer), Collect(str(folder))
    printer(f"[{stage}] {len(todo)} of {total} trials to run -> {folder / stage / attempt}")
    tuner = tune.Tuner(
        _trainable(spec),
        param_space={"trial": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=attempt,
            storage_path=(folder / stage).uri,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[collector, progress],
        ),
    )
    try:
        with _sigterm_as_sigint():
            results = tuner.fit()
        for result in results:
            if result.checkpoint is not None:
                collect(folder, read_checkpoint(_folder_of(result.checkpoint), states=False))
            if result.error is not None:
                mark_runs(folder, result.config["trial"], "failed", _one_line(result.error))
        if collector.error is not None:
            raise collector.error
    except Exception as err:  # noqa: BLE001 - reported as the stage's end, never as success
        return _one_line(err)
    progress.summary(results)
    _report_utilisation(folder, stage, progress, printer)
    return ""


def outcome(folder: Folder, stage: str, configs: list[dict], error: str = "") -> Outcome:
    records = trial_records(folder, stage, bad_files=[])
    runs = [run["trial_id"] for config in configs for run in config["runs"]]
    statuses = [records.get(run, {}).get("status") for run in runs]
    return Outcome(stage, len(runs), sum(s in FINISHED for s in statuses),
                   statuses.count("failed"), error)  # fmt: skip


@contextlib.contextmanager
def _sigterm_as_sigint():
    """SIGTERM ends a stage as Ctrl-C does (Tune's graceful stop, then an honest report)
    instead of killing the driver mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(err: BaseException) -> str:
    """The error as one line; a full disk anywhere in its chain as "no space left on"."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return f"no space left on {cause.filename or 'the results disk'}"
        cause = cause.__cause__ or cause.__context__
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else err.__class__.__name__)[:300]


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


def collect(folder: Folder, saved: Saved) -> None:
    """Copies a checkpoint's rows and records into the experiment's dataset, one file per
    run."""
    rows = saved.rows
    for record in saved.records:
        trial_id, stage = record["trial_id"], record["stage"]
        if rows is not None:
            own = rows.filter(pc.equal(rows["trial_id"], trial_id))
            if own.num_rows:
                sink = pa.BufferOutputStream()
                pq.write_table(own, sink)
                trial_rows_file(folder, stage, trial_id).write_bytes(sink.getvalue().to_pybytes())
    write_records(folder, saved.records)


def _folder_of(checkpoint: tune.Checkpoint) -> Folder:
    return Folder.on(checkpoint.filesystem, checkpoint.path)


class Collect(tune.Callback):
    """Copies rows into the dataset as soon as a trial checkpoints (live partial results).
    Tune would swallow an error raised here (a full disk): it is kept for the driver."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.error: Exception | None = None

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        try:
            collect(Folder(self.folder), read_checkpoint(_folder_of(checkpoint), states=False))
        except Exception as err:  # noqa: BLE001 - reported when the attempt ends
            self.error = self.error or err


class Progress(tune.Callback):
    """One compact line every `interval` seconds and on each trial's end, instead of
    Ray's tables."""

    def __init__(self, stage: str, folder: str, printer=print, interval: float = 10.0) -> None:
        self.stage, self.folder, self.printer, self.interval = stage, folder, printer, interval
        self.start = time.monotonic()
        self.last = 0.0

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into tuner.pkl (never read back: runner.manifest);
        # the printer stays with this process.
        return {k: v for k, v in self.__dict__.items() if k != "printer"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, printer=print)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        mark_runs(Folder(self.folder), trial.config["trial"], "running")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last >= self.interval:
            self._line(trials)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if time.monotonic() - self.last >= self.interval or all(t.is_finished() for t in trials):
            self._line(trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        mark_runs(Folder(self.folder), trial.config["trial"], "failed")
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
            self.printer(f"[{self.stage}] error: {_one_line(result.error)}")
        elapsed = time.monotonic() - self.start
        self.printer(
            f"[{self.stage}] {results.num_terminated}/{len(results)} trials ran to their end "
            f"in {elapsed:.1f} s"
        )


__all__ = ["STAGES", "Outcome", "run_select", "run_stages"]
