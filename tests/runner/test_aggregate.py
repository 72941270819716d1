"""Aggregation across seeds against hand-computed means and standard errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from runner.aggregate import (
    curve_stats,
    facets_of,
    moving_average,
    relative_to_baseline,
    with_labels,
)


def _rows():
    # bp (2 seeds) and cbp+gxd (3 seeds), relu, 2 tasks
    records = []
    for seed, accs in enumerate([(0.5, 0.6), (0.7, 0.4)]):
        for task, acc in enumerate(accs):
            records.append(dict(method="bp", utility="none", activation="relu", norm="none",
                                lr=0.01, seed=seed, task=task, accuracy=acc))  # fmt: skip
    for seed, accs in enumerate([(0.6, 0.9), (0.8, 0.7), (0.7, 0.8)]):
        for task, acc in enumerate(accs):
            records.append(dict(method="cbp", utility="gxd", activation="relu", norm="none",
                                lr=0.03, seed=seed, task=task, accuracy=acc))  # fmt: skip
    return pd.DataFrame(records)


def test_curve_stats_are_the_mean_and_standard_error_across_seeds():
    stats = curve_stats(_rows()).set_index(["curve", "task"])
    # bp task 0: values 0.5, 0.7 -> mean 0.6, std 0.1414.., se = std / sqrt(2) = 0.1
    assert stats.loc[("bp", 0), "mean"] == pytest.approx(0.6)
    assert stats.loc[("bp", 0), "se"] == pytest.approx(0.1)
    assert stats.loc[("bp", 0), "n"] == 2
    # cbp+gxd task 1: 0.9, 0.7, 0.8 -> mean 0.8, std 0.1, se = 0.1 / sqrt(3)
    assert stats.loc[("cbp+gxd", 1), "mean"] == pytest.approx(0.8)
    assert stats.loc[("cbp+gxd", 1), "se"] == pytest.approx(0.1 / math.sqrt(3))


def test_one_seed_has_no_standard_error():
    rows = _rows()
    stats = curve_stats(rows[rows["seed"] == 0])
    assert stats["se"].isna().all() and (stats["n"] == 1).all()


def test_a_hyperparameter_that_varies_within_a_curve_joins_its_label():
    rows = _rows()
    assert set(with_labels(rows)["curve"]) == {"bp", "cbp+gxd"}  # lr differs only between
    swept = pd.concat([rows, rows.assign(lr=0.1, accuracy=rows["accuracy"] / 2)])
    assert set(with_labels(swept)["curve"]) == {
        "bp lr=0.01", "bp lr=0.1", "cbp+gxd lr=0.03", "cbp+gxd lr=0.1",
    }  # fmt: skip


def test_missing_facet_columns_are_filled_not_fatal():
    rows = _rows().drop(columns=["norm", "utility"])
    stats = curve_stats(rows)
    assert set(stats["norm"]) == {"n/a"} and set(stats["curve"]) == {"bp", "cbp"}


def test_moving_average_is_trailing_and_shorter_at_the_start():
    values = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert moving_average(values, 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert moving_average(values, 50).tolist() == [1.0, 1.5, 2.0, 2.5]


def test_relative_to_baseline_subtracts_bp_then_smooths():
    delta = relative_to_baseline(curve_stats(_rows()), window=2)
    # cbp+gxd means: task0 0.7, task1 0.8; bp means: 0.6, 0.5 -> deltas 0.1, 0.3 -> MA 0.1, 0.2
    assert delta["curve"].tolist() == ["cbp+gxd", "cbp+gxd"]
    assert delta["delta"].tolist() == pytest.approx([0.1, 0.2])
    assert set(delta["baseline"]) == {"bp"}


def test_the_best_baseline_is_used_when_bp_was_swept():
    rows = _rows()
    worse_bp = rows[rows["method"] == "bp"].assign(lr=0.1, accuracy=0.0)
    delta = relative_to_baseline(curve_stats(pd.concat([rows, worse_bp])), window=1)
    assert set(delta["baseline"]) == {"bp lr=0.01"}
    cbp = delta[delta["curve"] == "cbp+gxd lr=0.03"]
    assert cbp["delta"].tolist() == pytest.approx([0.1, 0.3])


def test_without_a_baseline_the_result_is_empty():
    rows = _rows()
    assert relative_to_baseline(curve_stats(rows[rows["method"] != "bp"])).empty


def _cifar_rows():
    # Continuous CIFAR-100: every task has its own class pair, which is not configuration
    records = []
    for method, utility in (("bp", "none"), ("cbp", "gxd")):
        for seed in (0, 1):
            for task, (a, b) in enumerate([(3, 7), (1, 9), (3, 5)]):
                records.append(dict(experiment="continuous-cifar100", method=method,
                                    utility=utility, model="resnet8", augment=False, lr=0.1,
                                    seed=seed, task=task, class_a=a, class_b=b,
                                    accuracy=0.6 + 0.1 * seed))  # fmt: skip
    return pd.DataFrame(records)


def test_a_task_s_class_pair_is_not_part_of_a_curve_label():
    assert set(with_labels(_cifar_rows())["curve"]) == {"bp", "cbp+gxd"}


def test_each_experiment_is_grouped_by_its_own_registered_facets():
    rows = pd.concat([_rows().assign(experiment="permuted-mnist"), _cifar_rows()])
    stats = curve_stats(rows)
    cifar = stats[stats["experiment"] == "continuous-cifar100"]
    assert facets_of("continuous-cifar100") == ("model", "augment")
    assert set(zip(cifar["model"], cifar["augment"], strict=True)) == {("resnet8", False)}
    assert set(cifar["curve"]) == {"bp", "cbp+gxd"} and len(cifar) == 2 * 3
    mnist = stats[stats["experiment"] == "permuted-mnist"]
    assert set(zip(mnist["activation"], mnist["norm"], strict=True)) == {("relu", "none")}
    # the baseline is subtracted within each experiment's own facets
    delta = relative_to_baseline(stats, window=1)
    assert set(delta.groupby("experiment")["curve"].unique().map(tuple)) == {("cbp+gxd",)}
    assert len(delta) == 2 + 3


def test_an_unregistered_experiment_is_faceted_by_activation_and_norm():
    assert facets_of("not-registered") == ("activation", "norm")
    stats = curve_stats(_rows().assign(experiment="not-registered"))
    assert set(stats["activation"]) == {"relu"} and set(stats["experiment"]) == {"not-registered"}
