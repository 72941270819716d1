"""read_results: rows written before a config field existed read back with its default."""

from __future__ import annotations

from plasticity_core.experiments.permuted_mnist import PermutedMNIST, PermutedMNISTConfig
from runner.results import read_results, trial_rows_file, write_rows
from runner.storage import Folder


def test_rows_from_before_an_added_field_read_back_with_its_default(tmp_path):
    config = PermutedMNISTConfig(tasks=1, hidden=(8,), probe_size=0, permute="labels")
    (new,) = list(PermutedMNIST(config))
    old = {k: v for k, v in new.items() if k not in ("permute", "reset_optimizer")}
    folder = Folder(tmp_path / "study")
    write_rows([{**old, "trial_id": "old-s0"}], trial_rows_file(folder, "final", "old-s0"))
    write_rows([{**new, "trial_id": "new-s0"}], trial_rows_file(folder, "final", "new-s0"))
    rows = read_results(folder).set_index("trial_id")
    assert rows.loc["old-s0", "permute"] == "inputs" and not rows.loc["old-s0", "reset_optimizer"]
    assert rows.loc["new-s0", "permute"] == "labels"
