"""One unreadable rows file (a truncated copy) hides only its own rows: `read_results`
with `bad_files` skips it and names it, and the dashboard still shows the experiment's
other rows with the bad file in its notes. Without `bad_files` it is still an error."""

from pathlib import Path

import pytest
import yaml

from plasticity_core.errors import DataError
from runner.dashboard.sources import load_sources
from runner.results import read_results, trial_rows_file, write_rows
from runner.storage import Folder
from tests.runner.specs import tiny_spec_document

TRIALS = ["aaa-s0", "bbb-s0", "ccc-s0"]
TASKS = 3


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A sweep's experiment folder with the rows of three trials, the second truncated to
    its first 100 bytes."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "spec.yaml").write_text(yaml.safe_dump(tiny_spec_document()))
    for i, trial_id in enumerate(TRIALS):
        rows = [{"trial_id": trial_id, "seed": 0, "task": t, "loss": i + t / 10}
                for t in range(TASKS)]  # fmt: skip
        write_rows(rows, trial_rows_file(Folder(str(folder)), "sweep", trial_id))
    bad = _rows_file(folder, TRIALS[1])
    bad.write_bytes(bad.read_bytes()[:100])
    return folder


def _rows_file(folder: Path, trial_id: str) -> Path:
    return folder / "rows" / "stage=sweep" / f"{trial_id}.parquet"


def test_read_results_skips_an_unreadable_file_and_names_it_with_the_remedy(experiment):
    notes: list[str] = []
    rows = read_results(experiment, bad_files=notes)
    assert sorted(set(rows["trial_id"])) == [TRIALS[0], TRIALS[2]]
    assert len(rows) == 2 * TASKS and set(rows["stage"]) == {"sweep"}
    assert list(rows["loss"]) == pytest.approx([0, 0.1, 0.2, 2, 2.1, 2.2])
    (note,) = notes
    assert note.startswith(f"{_rows_file(experiment, TRIALS[1])}: not a readable Parquet file (")
    assert "delete it and run `plasticity resume`" in note and "\n" not in note


def test_read_results_without_bad_files_still_raises_on_an_unreadable_file(experiment):
    with pytest.raises(DataError, match=f"{TRIALS[1]}.parquet: not a readable Parquet file"):
        read_results(experiment)


def test_every_file_unreadable_gives_no_rows_and_one_note_each(experiment):
    for trial_id in TRIALS:
        _rows_file(experiment, trial_id).write_bytes(b"PAR1 truncated")
    notes: list[str] = []
    assert read_results(experiment, bad_files=notes).empty
    assert len(notes) == len(TRIALS)


def test_the_dashboard_keeps_the_experiments_good_rows_and_notes_the_bad_file(experiment):
    sources = load_sources([str(experiment.parent)])
    (entry,) = sources.experiments
    assert entry["name"] == "tiny"  # its stages are whatever runner.status makes of them
    (rows,) = sources.rows
    assert sorted(set(rows["trial_id"])) == [TRIALS[0], TRIALS[2]]
    assert set(rows["source"]) == {"tiny"}
    assert any(note.startswith(str(_rows_file(experiment, TRIALS[1]))) for note in sources.notes)
