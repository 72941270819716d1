"""The results store on a filesystem that is not a local folder (pyarrow's in-memory
`mock://`), and clear errors for storage that cannot be used."""

from __future__ import annotations

import pytest

from plasticity_core.errors import ConfigError
from runner.results import read_results, trial_rows_file, write_rows
from runner.storage import Folder


def test_rows_round_trip_through_an_in_memory_filesystem(tmp_path):
    folder = Folder("mock:///experiments/study")
    assert not folder.local
    rows = [{"trial_id": "a-s0", "task": t, "accuracy": 0.5 + t / 10} for t in range(3)]
    write_rows(rows, trial_rows_file(folder, "sweep", "a-s0"))
    write_rows(rows[:1], trial_rows_file(folder, "final", "a-s1"))
    frame = read_results(folder)
    assert len(frame) == 4 and set(frame["stage"]) == {"sweep", "final"}
    assert frame[frame["stage"] == "sweep"]["accuracy"].tolist() == [0.5, 0.6, 0.7]
    assert not any(tmp_path.iterdir()) and not (tmp_path / "experiments").exists()


def test_a_rewrite_replaces_the_file_instead_of_adding_rows():
    folder = Folder("mock:///e")
    target = trial_rows_file(folder, "sweep", "t")
    write_rows([{"trial_id": "t", "task": 0}], target)
    write_rows([{"trial_id": "t", "task": 0}, {"trial_id": "t", "task": 1}], target)
    assert read_results(folder)["task"].tolist() == [0, 1]


def test_an_unsupported_storage_uri_is_a_clear_error_not_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not usable.*s3://"):
        Folder("nosuch://bucket/prefix")
    assert not any(tmp_path.iterdir())


def test_file_uri_and_plain_path_name_the_same_place(tmp_path):
    write_rows([{"trial_id": "x", "task": 0}], Folder(f"file://{tmp_path}") / "r.parquet")
    assert (tmp_path / "r.parquet").is_file()
    assert Folder(str(tmp_path)).files(".parquet")[0].path == str(tmp_path / "r.parquet")
