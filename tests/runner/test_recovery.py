"""Recovery from the project's own records: a failed sweep, then damage to its folder
(planted pickles, a lost checkpoint, a truncated rows file), then `status`, `dashboard` and
`resume` through the command line, which must end with the rows of uninterrupted runs."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil

import pandas as pd
import pytest
import torch

from plasticity_core.experiments.permuted_mnist import PermutedMNIST
from runner.cli import main
from runner.dashboard.sources import load_sources
from runner.manifest import FAULTS_ENV
from runner.results import read_results
from runner.spec import load_spec
from runner.storage import Folder
from tests.runner.ray_helpers import TIMING, write_spec


class Planted:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def failed_sweep(local_ray, tmp_path_factory):
    """A sweep whose two runs failed before their last task (one raised, one's worker was
    killed), after checkpoints at tasks 2 and 4."""
    tmp = tmp_path_factory.mktemp("failed")
    spec_file = write_spec(tmp, "faulty")
    spec = load_spec(spec_file)
    faults = tmp / "faults"
    faults.mkdir()
    ids = [f"{spec.build(p, 0).config_hash()}-s0" for p in spec.configurations()]
    (faults / f"{ids[0]}@4.raise").touch()
    (faults / f"{ids[1]}@4.kill").touch()
    mp = pytest.MonkeyPatch()
    mp.setenv(FAULTS_ENV, str(faults))
    try:
        code = main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(tmp / "out")])
    finally:
        mp.undo()
    assert code == 1
    assert not list(faults.iterdir()), "each fault fires once"
    return spec, ids, tmp / "out" / "faulty"


@pytest.fixture(scope="module")
def uninterrupted(failed_sweep) -> pd.DataFrame:
    """The same runs without Ray, start to end (a 1-CPU trial uses 1 thread)."""
    spec, _, _ = failed_sweep
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = [
            pd.DataFrame(list(PermutedMNIST(spec.build(p, 0)))) for p in spec.configurations()
        ]
    finally:
        torch.set_num_threads(threads)
    rows = pd.concat(frames)
    rows["trial_id"] = rows["config_hash"] + "-s0"
    return rows.sort_values(["trial_id", "task"]).reset_index(drop=True)


def _copy(failed_sweep, tmp_path):
    _, ids, folder = failed_sweep
    copy = tmp_path / "faulty"
    shutil.copytree(folder, copy)
    return ids, copy


def _assert_rows_equal(folder, reference: pd.DataFrame) -> None:
    rows = read_results(folder, stage="sweep")
    assert not rows.duplicated(["trial_id", "task"]).any()
    columns = [c for c in reference.columns if c not in TIMING]
    pd.testing.assert_frame_equal(
        rows[columns].reset_index(drop=True), reference[columns].reset_index(drop=True),
        check_dtype=False,
    )  # fmt: skip


def test_failed_runs_are_counted_from_the_projects_records(failed_sweep, capsys):
    _, ids, folder = failed_sweep
    assert read_results(folder).groupby("trial_id")["task"].apply(list).to_dict() == {
        ids[0]: [0, 1, 2, 3],
        ids[1]: [0, 1, 2, 3],
    }
    capsys.readouterr()
    assert main(["status", str(folder)]) == 0
    assert "sweep: 2 trials: 0 done (0 diverged), 0 running, 0 pending, 2 failed; " \
        "tasks saved 8/10" in capsys.readouterr().out  # fmt: skip


def test_planted_pickles_are_never_loaded(failed_sweep, uninterrupted, tmp_path, capsys):
    """Tune's pickles in the folder are replaced by ones that create a file when loaded:
    status, dashboard and resume work from the project's own records and load none."""
    ids, folder = _copy(failed_sweep, tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Planted(marker))
    planted = 0
    for file in folder.rglob("*"):
        if file.suffix == ".pkl":
            file.write_bytes(payload)
            planted += 1
        elif file.name.startswith("experiment_state") and file.suffix == ".json":
            state = json.loads(file.read_text())
            for trial in state.get("trial_data", []):
                trial[1] = json.dumps({"storage": {"value": payload.hex()}})
            file.write_text(json.dumps(state))
            planted += 1
    assert planted >= 2, "the folder held Tune's pickles to replace"
    assert main(["status", str(folder)]) == 0
    assert "2 failed" in capsys.readouterr().out
    assert main(["dashboard", str(folder), "--out", str(tmp_path / "page.html")]) == 0
    assert main(["resume", str(folder)]) == 0
    assert not marker.exists(), "a planted pickle was loaded"
    _assert_rows_equal(folder, uninterrupted)


def test_resume_skips_lost_or_damaged_files(failed_sweep, uninterrupted, tmp_path, capsys):
    """One run's newest checkpoint folder is gone and the other's rows file is truncated:
    status and the dashboard name the bad file and show the rest; resume continues the
    first run from its older checkpoint, rewrites the second's rows from its checkpoint,
    and both end equal to the uninterrupted runs."""
    ids, folder = _copy(failed_sweep, tmp_path)
    shutil.rmtree(_newest_checkpoint(folder, ids[1]))
    rows_file = folder / "rows" / "stage=sweep" / f"{ids[0]}.parquet"
    rows_file.write_bytes(rows_file.read_bytes()[:100])
    capsys.readouterr()

    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 failed; tasks saved 4/10" in out and f"skipped {rows_file}" in out
    sources = load_sources([str(folder)])
    assert len(sources.rows[0]) == 4 and any(str(rows_file) in n for n in sources.notes)

    assert main(["resume", str(folder)]) == 0
    assert "skipped" not in capsys.readouterr().out  # a folder that is gone is no warning
    _assert_rows_equal(folder, uninterrupted)


def test_resume_falls_back_to_an_older_checkpoint(failed_sweep, uninterrupted, tmp_path, capsys):
    """A damaged newest checkpoint (truncated state.pt) is skipped with a warning, and
    the run continues from the one before."""
    ids, folder = _copy(failed_sweep, tmp_path)
    newest = _newest_checkpoint(folder, ids[0])
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[:50])
    capsys.readouterr()
    assert main(["resume", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert f"{ids[0]}: skipped unreadable attempt-0/{newest.name} (" in printed
    assert "continuing from attempt-0/checkpoint_" in printed
    _assert_rows_equal(folder, uninterrupted)


def _newest_checkpoint(folder, trial_id):
    found = sorted(folder.glob(f"sweep/attempt-0/{trial_id}/checkpoint_*"))
    assert len(found) == 2, found
    return found[-1]


def test_a_full_disk_ends_the_stage_in_one_line_and_resume_completes(
    failed_sweep, uninterrupted, tmp_path, monkeypatch, capsys
):
    """The driver's rows writes fail for space: the stage ends non-zero saying so, the
    files written before stay whole, and once there is space `resume` completes the runs."""
    spec_file = write_spec(tmp_path, "full")
    folder = tmp_path / "out" / "full"
    write_bytes = Folder.write_bytes

    def full_disk(self, data):
        if "/rows/" in self.path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        write_bytes(self, data)

    monkeypatch.setattr(Folder, "write_bytes", full_disk)
    code = main(["sweep", str(spec_file), "--stage", "sweep", "--out", str(tmp_path / "out")])
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no space left on " in last and f"plasticity resume {folder}" in last
    assert load_spec(folder / "spec.yaml").name == "full"
    monkeypatch.undo()
    assert main(["resume", str(folder)]) == 0
    _assert_rows_equal(folder, uninterrupted)
