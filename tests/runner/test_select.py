"""The select stage on hand-made rows: scores, winners, divergence, ties and output."""

import json
import math

import pandas as pd
import pytest

from runner.select import SelectionError, format_selection, select_best, trial_score
from runner.spec import parse_spec
from tests.runner.specs import tiny_spec_document

# Grid order: (contribution, 0.01), (contribution, 0.1), (gxd, 0.01), (gxd, 0.1).
C01, C1, G01, G1 = range(4)


def _spec(**changes):
    return parse_spec(tiny_spec_document(**changes))


def _trial_id(spec, config: int, seed: int) -> str:
    params = spec.configurations()[config]
    return f"{spec.build(params, seed).config_hash()}-s{seed}"


def _rows(spec, values: dict[tuple[int, int], list[float]], metric="accuracy") -> pd.DataFrame:
    """One row per task of each (configuration index, seed) -> per-task metric values."""
    records = [
        {"trial_id": _trial_id(spec, config, seed), "task": task, metric: value, "seed": seed}
        for (config, seed), per_task in values.items()
        for task, value in enumerate(per_task)
    ]
    return pd.DataFrame(records).sample(frac=1.0, random_state=0).reset_index(drop=True)


def _trials(spec, status=None) -> dict[str, dict]:
    """Every sweep trial complete, except those in `status`: (config, seed) -> status."""
    status = status or {}
    return {
        _trial_id(spec, config, seed): {"status": status.get((config, seed), "complete")}
        for config in range(len(spec.configurations()))
        for seed in spec.sweep_seeds
    }


# Trial scores (means over 3 tasks): C01 0.6 / 0.7, C1 0.9 / 0.5, G01 0.8 / 0.6, G1 0.4 / 0.4.
VALUES = {
    (C01, 0): [0.5, 0.6, 0.7],
    (C01, 1): [0.6, 0.7, 0.8],
    (C1, 0): [0.9, 0.9, 0.9],
    (C1, 1): [0.4, 0.5, 0.6],
    (G01, 0): [0.7, 0.8, 0.9],
    (G01, 1): [0.6, 0.6, 0.6],
    (G1, 0): [0.3, 0.4, 0.5],
    (G1, 1): [0.4, 0.4, 0.4],
}
# Configuration means over seeds, and SE = std(ddof=1) / sqrt(2) = |a - b| / 2.
MEANS = {C01: 0.65, C1: 0.7, G01: 0.7, G1: 0.4}
SES = {C01: 0.05, C1: 0.2, G01: 0.1, G1: 0.0}


# --- trial_score ----------------------------------------------------------------------------


@pytest.fixture
def four_tasks() -> pd.DataFrame:
    # tasks out of order on purpose
    return pd.DataFrame(
        {
            "trial_id": ["t"] * 4,
            "task": [2, 0, 3, 1],
            "accuracy": [0.6, 0.1, 1.0, 0.2],
            "loss": [3.0, 9.0, 1.0, 5.0],
        }
    )


def test_trial_score_is_the_mean_over_all_tasks(four_tasks):
    assert trial_score(four_tasks, "accuracy", 0) == pytest.approx(0.475)
    assert trial_score(four_tasks, "loss", 0) == pytest.approx(4.5)


def test_trial_score_is_the_mean_over_the_last_k_tasks(four_tasks):
    assert trial_score(four_tasks, "accuracy", 1) == pytest.approx(1.0)  # task 3
    assert trial_score(four_tasks, "accuracy", 2) == pytest.approx(0.8)  # tasks 2, 3
    assert trial_score(four_tasks, "loss", 3) == pytest.approx(3.0)  # tasks 1, 2, 3
    assert trial_score(four_tasks, "accuracy", 10) == pytest.approx(0.475)  # K > tasks: all


def test_trial_score_is_independent_of_row_order(four_tasks):
    for seed in range(5):
        shuffled = four_tasks.sample(frac=1.0, random_state=seed)
        assert trial_score(shuffled, "accuracy", 0) == pytest.approx(0.475)
        assert trial_score(shuffled, "accuracy", 2) == pytest.approx(0.8)


def test_trial_score_of_no_rows_is_nan(four_tasks):
    assert math.isnan(trial_score(four_tasks.iloc[:0], "accuracy", 0))


# --- winners --------------------------------------------------------------------------------


def test_winner_per_group_has_the_best_mean_over_seeds_with_its_standard_error():
    spec = _spec()
    selection = select_best(spec, _rows(spec, VALUES), _trials(spec))
    points = spec.configurations()
    assert [c["group"] for c in selection.choices] == [
        {"utility": "contribution"},
        {"utility": "gxd"},
    ]
    contribution, gxd = selection.choices
    assert contribution["params"] == points[C1]  # 0.70 beats 0.65
    assert contribution["score"] == pytest.approx(MEANS[C1])
    assert contribution["score_se"] == pytest.approx(SES[C1])
    assert contribution["seeds"] == 2
    assert contribution["config_hash"] == spec.build(points[C1], seed=0).config_hash()
    assert gxd["params"] == points[G01]  # 0.70 beats 0.40
    assert gxd["score"] == pytest.approx(MEANS[G01])
    assert gxd["score_se"] == pytest.approx(SES[G01])


def test_table_has_every_configuration_with_mean_and_standard_error_across_seeds():
    spec = _spec()
    table = select_best(spec, _rows(spec, VALUES), _trials(spec)).table
    assert len(table) == 4
    assert list(table["utility"]) == ["contribution", "contribution", "gxd", "gxd"]
    assert list(table["lr"]) == [0.01, 0.1, 0.01, 0.1]
    assert list(table["score"]) == pytest.approx([MEANS[i] for i in range(4)])
    assert list(table["score_se"]) == pytest.approx([SES[i] for i in range(4)], abs=1e-12)
    assert list(table["seeds"]) == [2, 2, 2, 2]
    assert list(table["diverged"]) == [0, 0, 0, 0]
    assert list(table["selected"]) == [False, True, True, False]


def test_standard_error_over_three_seeds_uses_ddof_1():
    spec = _spec(seeds={"sweep": 3, "final": 1})
    scores = {C01: [0.2, 0.5, 0.8], C1: [0.1, 0.1, 0.4], G01: [0.3, 0.3, 0.3], G1: [0, 0, 0.6]}
    values = {(c, s): [v] * 3 for c, per_seed in scores.items() for s, v in enumerate(per_seed)}
    table = select_best(spec, _rows(spec, values), _trials(spec)).table
    # C01: mean 0.5, deviations +-0.3 -> var (0.09 + 0.09) / 2 = 0.09 -> se 0.3 / sqrt(3)
    assert table["score"][C01] == pytest.approx(0.5)
    assert table["score_se"][C01] == pytest.approx(0.3 / math.sqrt(3))
    # G1: mean 0.2, deviations -0.2, -0.2, 0.4 -> var 0.24 / 2 = 0.12 -> se sqrt(0.04)
    assert table["score"][G1] == pytest.approx(0.2)
    assert table["score_se"][G1] == pytest.approx(0.2)


def test_last_tasks_ranks_by_the_end_of_each_trial():
    values = {
        (C01, 0): [0.9, 0.9, 0.1],  # all tasks 0.633, last task 0.1
        (C01, 1): [0.9, 0.9, 0.1],
        (C1, 0): [0.2, 0.2, 0.5],  # all tasks 0.3, last task 0.5
        (C1, 1): [0.2, 0.2, 0.5],
        (G01, 0): [0.5, 0.5, 0.5],
        (G01, 1): [0.5, 0.5, 0.5],
        (G1, 0): [0.5, 0.5, 0.5],
        (G1, 1): [0.5, 0.5, 0.5],
    }
    spec = _spec()
    assert select_best(spec, _rows(spec, values), _trials(spec)).choices[0]["params"]["lr"] == 0.01
    spec = _spec(select={"per": ["utility"], "last_tasks": 1})
    choice = select_best(spec, _rows(spec, values), _trials(spec)).choices[0]
    assert choice["params"]["lr"] == 0.1
    assert choice["score"] == pytest.approx(0.5)


def test_mode_min_picks_the_lowest_loss():
    spec = _spec(select={"metric": "loss", "per": ["utility"]})
    assert spec.select.mode == "min"
    selection = select_best(spec, _rows(spec, VALUES, metric="loss"), _trials(spec))
    points = spec.configurations()
    contribution, gxd = selection.choices
    assert contribution["params"] == points[C01]  # 0.65 below 0.70
    assert contribution["score"] == pytest.approx(MEANS[C01])
    assert gxd["params"] == points[G1]  # 0.40 below 0.70
    assert gxd["score"] == pytest.approx(MEANS[G1])


def test_explicit_mode_max_with_loss_picks_the_highest():
    spec = _spec(select={"metric": "loss", "mode": "max", "per": ["utility"]})
    selection = select_best(spec, _rows(spec, VALUES, metric="loss"), _trials(spec))
    assert [c["params"]["lr"] for c in selection.choices] == [0.1, 0.01]


def test_selection_is_independent_of_row_order():
    spec = _spec()
    rows = _rows(spec, VALUES)
    expected = select_best(spec, rows, _trials(spec)).choices
    for seed in range(3):
        shuffled = rows.sample(frac=1.0, random_state=seed + 10)
        assert select_best(spec, shuffled, _trials(spec)).choices == expected


# --- divergence -----------------------------------------------------------------------------


def test_a_configuration_with_one_diverged_seed_is_never_selected():
    spec = _spec()
    values = {**VALUES, (C1, 0): [1.0, 1.0, 1.0]}  # C1's surviving seed is the best trial
    selection = select_best(spec, _rows(spec, values), _trials(spec, {(C1, 1): "diverged"}))
    contribution = selection.choices[0]
    assert contribution["params"] == spec.configurations()[C01]
    assert contribution["score"] == pytest.approx(MEANS[C01])
    table = selection.table
    assert table["diverged"][C1] == 1
    assert table["seeds"][C1] == 1
    assert not table["selected"][C1]


def test_a_group_whose_configurations_all_diverged_has_no_choice():
    spec = _spec()
    trials = _trials(spec, {(G01, 0): "diverged", (G1, 1): "diverged"})
    selection = select_best(spec, _rows(spec, VALUES), trials)
    assert [c["group"] for c in selection.choices] == [{"utility": "contribution"}]
    assert not selection.table[selection.table["utility"] == "gxd"]["selected"].any()
    assert selection.table["selected"].sum() == 1


def test_every_configuration_diverged_is_a_selection_error():
    spec = _spec()
    trials = _trials(spec, {(c, 0): "diverged" for c in range(4)})
    with pytest.raises(SelectionError, match="diverged"):
        select_best(spec, _rows(spec, VALUES), trials)


# --- unfinished trials ----------------------------------------------------------------------


def test_a_missing_trial_is_a_selection_error_suggesting_resume():
    spec = _spec()
    trials = _trials(spec)
    missing = _trial_id(spec, G1, 1)
    del trials[missing]
    with pytest.raises(SelectionError) as info:
        select_best(spec, _rows(spec, VALUES), trials)
    message = str(info.value)
    assert message.startswith("1 sweep trials are not finished")
    assert f"{missing} (missing)" in message
    assert "plasticity resume" in message


def test_running_trials_are_a_selection_error_counting_them():
    spec = _spec()
    trials = _trials(spec, {(C01, 0): "running", (G01, 1): "running"})
    with pytest.raises(SelectionError) as info:
        select_best(spec, _rows(spec, VALUES), trials)
    message = str(info.value)
    assert message.startswith("2 sweep trials are not finished")
    assert f"{_trial_id(spec, C01, 0)} (running)" in message
    assert "plasticity resume" in message


def test_a_complete_trial_without_rows_counts_as_unfinished():
    spec = _spec()
    values = {k: v for k, v in VALUES.items() if k != (C1, 0)}
    with pytest.raises(SelectionError, match="^1 sweep trials are not finished"):
        select_best(spec, _rows(spec, values), _trials(spec))


def test_no_rows_at_all_lists_every_trial_as_unfinished():
    spec = _spec()
    with pytest.raises(
        SelectionError, match=r"^8 sweep trials .* \.\.\.\); run `plasticity resume"
    ):
        select_best(spec, pd.DataFrame(columns=["trial_id", "task", "accuracy"]), _trials(spec))


# --- ties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_ties_go_to_the_first_configuration_in_grid_order(metric):
    flat = {(c, s): [0.5, 0.25, 0.75] for c in range(4) for s in (0, 1)}
    spec = _spec(select={"metric": metric, "per": ["utility"]})
    selection = select_best(spec, _rows(spec, flat, metric), _trials(spec))
    assert [c["params"]["lr"] for c in selection.choices] == [0.01, 0.01]
    spec = _spec(
        grid={"method": ["cbp"], "utility": ["contribution", "gxd"], "lr": [0.1, 0.01]},
        select={"metric": metric, "per": ["utility"]},
    )
    selection = select_best(spec, _rows(spec, flat, metric), _trials(spec))
    assert [c["params"]["lr"] for c in selection.choices] == [0.1, 0.1]


# --- output ---------------------------------------------------------------------------------


def test_to_json_is_valid_json_with_the_chosen_params():
    spec = _spec()
    selection = select_best(spec, _rows(spec, VALUES), _trials(spec))

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(selection.to_json(spec), parse_constant=refuse)
    assert data["metric"] == "accuracy"
    assert data["mode"] == "max"
    assert data["last_tasks"] == 0
    assert data["per"] == ["utility"]
    points = spec.configurations()
    assert [c["params"] for c in data["choices"]] == [
        {**points[C1], "hidden": [8]},
        {**points[G01], "hidden": [8]},
    ]
    assert [c["group"] for c in data["choices"]] == [
        {"utility": "contribution"},
        {"utility": "gxd"},
    ]
    assert data["choices"][0]["score"] == pytest.approx(MEANS[C1])
    assert data["choices"][0]["config_hash"] == spec.build(points[C1], 0).config_hash()
    assert data["choices"][0]["seeds"] == 2


def test_to_json_is_valid_json_with_a_single_sweep_seed():
    spec = _spec(seeds={"sweep": 1, "final": 1})
    values = {k: v for k, v in VALUES.items() if k[1] == 0}
    selection = select_best(spec, _rows(spec, values), _trials(spec))

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    json.loads(selection.to_json(spec), parse_constant=refuse)


def test_format_selection_marks_exactly_the_winners():
    spec = _spec()
    trials = _trials(spec, {(G1, 0): "diverged"})
    selection = select_best(spec, _rows(spec, VALUES), trials)
    lines = format_selection(selection, spec).splitlines()
    assert lines[0] == "selection by accuracy (max, all tasks, mean over seeds):"
    body = lines[1:]
    assert len(body) == 4
    marked = [line for line in body if line.startswith(" * ")]
    assert len(marked) == len(selection.choices) == 2
    assert all(line.startswith("   ") for line in body if line not in marked)
    assert "contribution" in marked[0] and "lr=0.1 " in marked[0] and "0.7000" in marked[0]
    assert "gxd" in marked[1] and "lr=0.01 " in marked[1] and "0.7000" in marked[1]
    # best first within each group; the diverged configuration says so
    assert body[0] == marked[0]
    assert body[2] == marked[1]
    assert "diverged" in body[3] and "lr=0.1 " in body[3]


def test_format_selection_names_last_tasks_and_min_mode():
    spec = _spec(select={"metric": "loss", "last_tasks": 2, "per": ["utility"]})
    selection = select_best(spec, _rows(spec, VALUES, metric="loss"), _trials(spec))
    lines = format_selection(selection, spec).splitlines()
    assert lines[0] == "selection by loss (min, last 2 tasks, mean over seeds):"
    marked = [line for line in lines[1:] if line.startswith(" * ")]
    assert len(marked) == 2
    assert [line.startswith(" * ") for line in lines[1:]] == [True, False, True, False]
