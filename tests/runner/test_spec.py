"""Sweep specs: presets, grids, round trips, seeds, selection defaults and error reporting."""

import pytest
import yaml

from plasticity_core.errors import ConfigError
from runner.cli import main
from runner.spec import SpecError, SweepSpec, load_spec, parse_spec, presets
from tests.runner.specs import tiny_spec_document as _spec

PRESETS = [
    "ccifar-quick",
    "ccifar-resnet8",
    "demo",
    "methods-demo",
    "pmnist-activations",
    "pmnist-demo",
    "pmnist-layernorm",
    "pmnist-quick",
    "slowly-changing-regression",
]


def _problems(data: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "bad.yaml")
    return info.value.problems


def _paths(problems: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in problems]


# --- presets --------------------------------------------------------------------------------


def test_presets_lists_every_packaged_preset():
    assert presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_packaged_preset_loads_and_validates(name):
    spec = load_spec(name)
    assert isinstance(spec, SweepSpec)
    assert spec.name == name
    assert spec.configurations()
    assert not set(spec.sweep_seeds) & set(spec.final_seeds)
    hashes = [spec.build(p, seed=0).config_hash() for p in spec.configurations()]
    assert len(set(hashes)) == len(hashes)  # every grid point is a valid, distinct config


def test_pmnist_demo_preset_has_four_configurations_two_sweep_seeds_three_new_final_seeds():
    spec = load_spec("pmnist-demo")
    assert len(spec.configurations()) == 4
    assert spec.sweep_seeds == (0, 1)
    assert len(spec.final_seeds) == 3
    assert not set(spec.final_seeds) & set(spec.sweep_seeds)


def test_demo_preset_packs_each_methods_runs_into_one_trial_judged_by_late_error():
    spec = load_spec("demo")
    assert spec.experiment == "slowly-changing-regression"
    assert (spec.select.metric, spec.select.mode) == ("loss", "min")
    sweep = spec.packs(spec.trials("sweep", spec.configurations(), spec.sweep_seeds))
    assert len(sweep) == 3  # bp, cbp+contribution, cbp+gxd: step sizes and seeds packed
    assert {len(runs) for runs in sweep} == {len(spec.sweep_seeds) * 2}


def test_the_reference_figure_preset_is_100_seeds_of_3_step_sizes_in_packs_of_150():
    spec = load_spec("slowly-changing-regression")
    bp = [p for p in spec.configurations() if p["method"] == "bp"]
    assert sorted(p["lr"] for p in bp) == [0.001, 0.003, 0.01]
    assert len(spec.sweep_seeds) == 100 and spec.fixed["tasks"] == 100
    trials = spec.trials("sweep", bp, spec.sweep_seeds)
    assert [len(runs) for runs in spec.packs(trials)] == [150, 150]


def test_a_pack_of_runs_that_differ_in_more_than_packed_fields_is_split():
    spec = parse_spec(
        _spec(
            fixed={"tasks": 3},
            pack=8,
            grid={"method": ["cbp"], "utility": ["gxd"], "hidden": [[8], [4]], "lr": [0.01, 0.1]},
        )
    )
    packs = spec.packs(spec.trials("sweep", spec.configurations(), spec.sweep_seeds))
    assert sorted(len(p) for p in packs) == [4, 4]  # per width: 2 lrs x 2 seeds
    assert all(len({t.params["hidden"] for t in p}) == 1 for p in packs)


def test_pmnist_activations_covers_four_activations_and_bp_and_cbp_with_gxd():
    points = load_spec("pmnist-activations").configurations()
    assert {p["activation"] for p in points} == {"relu", "leaky_relu", "tanh", "silu"}
    assert {p["method"] for p in points} == {"bp", "cbp"}
    assert any(p["method"] == "cbp" and p.get("utility") == "gxd" for p in points)
    for activation in ("relu", "leaky_relu", "tanh", "silu"):
        assert any(p["method"] == "bp" and p["activation"] == activation for p in points)
        assert any(
            p["method"] == "cbp" and p.get("utility") == "gxd" and p["activation"] == activation
            for p in points
        )


# --- grids and round trips ------------------------------------------------------------------


def test_list_of_mappings_grid_is_union_of_products_without_duplicates_in_grid_order():
    spec = parse_spec(
        _spec(
            grid=[
                {"method": ["bp"], "lr": [0.01, 0.1]},
                {"method": ["cbp"], "utility": ["gxd", "contribution"], "lr": [0.01]},
                {"method": ["bp"], "lr": [0.1, 0.3]},  # (bp, 0.1) repeats the first mapping
            ]
        )
    )
    fixed = {"tasks": 3, "hidden": (8,)}
    assert spec.configurations() == [
        {**fixed, "method": "bp", "lr": 0.01},
        {**fixed, "method": "bp", "lr": 0.1},
        {**fixed, "method": "cbp", "utility": "gxd", "lr": 0.01},
        {**fixed, "method": "cbp", "utility": "contribution", "lr": 0.01},
        {**fixed, "method": "bp", "lr": 0.3},
    ]


def test_grid_points_naming_the_same_experiment_config_are_one_configuration():
    spec = parse_spec(
        _spec(
            grid=[
                {"method": ["cbp"], "utility": ["gxd"]},
                {"method": ["cbp"]},  # cbp's default utility is gxd
                {"method": ["cbp"], "lr": [0.01]},  # the default lr
            ]
        )
    )
    hashes = [spec.build(p, seed=0).config_hash() for p in spec.configurations()]
    assert len(set(hashes)) == 1
    assert len(hashes) == 1


def test_mapping_grid_is_the_product_in_key_order():
    spec = parse_spec(_spec())
    assert [(p["utility"], p["lr"]) for p in spec.configurations()] == [
        ("contribution", 0.01),
        ("contribution", 0.1),
        ("gxd", 0.01),
        ("gxd", 0.1),
    ]


def test_to_dict_round_trips_through_parse_spec_to_an_equal_spec():
    spec = parse_spec(
        _spec(
            grid=[{"method": ["bp"]}, {"method": ["cbp"], "replacement_rate": [1e-4, 1e-3]}],
            resources={"cpu": 2, "gpu": 1},
            device="cuda",
            checkpoint_every=4,
            max_failures=0,
            description="round trip",
        )
    )
    assert parse_spec(spec.to_dict()) == spec


@pytest.mark.parametrize("name", PRESETS)
def test_to_dict_round_trips_through_yaml_text_to_an_equal_spec(name):
    spec = load_spec(name)
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    assert parse_spec(yaml.safe_load(text)) == spec
    assert parse_spec(spec.to_dict()) == spec


def test_yaml_1_1_exponent_text_is_accepted_as_a_float():
    text = """
name: quirk
experiment: permuted-mnist
fixed: {tasks: 3, replacement_rate: 1e-5}
grid:
  lr: [1e-4, 0.01]
"""
    data = yaml.safe_load(text)
    assert data["grid"]["lr"][0] == "1e-4"  # the quirk: PyYAML reads this as text
    spec = parse_spec(data)
    assert spec.grid[0]["lr"] == (0.0001, 0.01)
    assert all(isinstance(v, float) for v in spec.grid[0]["lr"])
    assert spec.fixed["replacement_rate"] == 1e-5
    assert isinstance(spec.fixed["replacement_rate"], float)


# --- error reporting ------------------------------------------------------------------------

# Every problem below is independent of the others; each must be reported with its path.
MANY_PROBLEMS = {
    "name": "bad",
    "experiment": "permuted-mnist",
    "colour": "blue",  # unknown top-level key
    "fixed": {"tasks": 3, "seed": 1},  # seed is reserved
    "grid": {
        "foo": [1],  # not a config field
        "lr": ["fast"],  # not a number
        "device": ["cpu"],  # reserved
        "tasks": [2],  # also in fixed
        "method": ["cbp"],
    },
    "seeds": {"sweep": [0, 1, 2], "final": [2, 3]},  # 2 in both
    "select": {"metric": "f1"},
    "resources": {"gpu": 1.5},
    "checkpoint_every": -1,
}
MANY_PATHS = [
    "colour",
    "fixed.seed",
    "grid.foo",
    "grid.lr[0]",
    "grid.device",
    "grid.tasks",
    "seeds.final",
    "select.metric",
    "resources.gpu",
    "checkpoint_every",
]


def test_many_problems_are_reported_at_once_each_with_its_yaml_path():
    problems = _problems(MANY_PROBLEMS)
    assert sorted(_paths(problems)) == sorted(MANY_PATHS)
    assert len(problems) == len(MANY_PATHS)


def test_spec_error_message_lists_every_problem():
    with pytest.raises(SpecError) as info:
        parse_spec(MANY_PROBLEMS, "bad.yaml")
    message = str(info.value)
    assert message.startswith(f"bad.yaml: {len(MANY_PATHS)} problems:")
    for problem in info.value.problems:
        assert problem in message
    assert isinstance(info.value, ConfigError)


def test_unknown_names_are_reported_together_with_structural_problems():
    data = {**MANY_PROBLEMS, "grid": {**MANY_PROBLEMS["grid"], "utility": ["gxd", "nope"]}}
    problems = _problems(data)
    assert sorted(_paths(problems)) == sorted([*MANY_PATHS, "grid.utility[1]"])
    assert len(problems) == len(MANY_PATHS) + 1


def test_a_value_valid_only_beside_a_fixed_or_grid_value_is_no_problem():
    # nap needs norm layer: given in fixed, or beside it in the same grid entry.
    fixed = _spec(fixed={"tasks": 3, "hidden": [8], "method": "nap", "norm": "layer"},
                  grid={"lr": [0.01]})  # fmt: skip
    assert parse_spec(fixed, "fixed.yaml").fixed["method"] == "nap"
    beside = _spec(grid={"method": ["bp", "nap"], "norm": ["layer"]})
    assert len(list(parse_spec(beside, "beside.yaml").points())) == 2
    alone = _spec(grid={"method": ["bp", "nap"]})
    assert _paths(_problems(alone)) == ["grid.method[1]"]


def test_empty_grid_and_cuda_without_gpu_are_reported_with_other_problems():
    problems = _problems(
        {
            "name": "bad",
            "experiment": "permuted-mnist",
            "grid": [],
            "device": "cuda",
            "resources": {"cpu": 1},
            "seeds": {"sweep": 3, "final": [1]},
            "max_failures": -2,
        }
    )
    assert sorted(_paths(problems)) == sorted(["grid", "device", "seeds.final", "max_failures"])
    assert len(problems) == 4


def test_unknown_field_in_a_grid_list_entry_is_reported_with_its_index():
    problems = _problems(_spec(grid=[{"method": ["bp"]}, {"method": ["cbp"], "foo": [1]}]))
    assert problems == ["grid[1].foo: not a field of the experiment's config"]


@pytest.mark.parametrize("grid", [[], None, "lr"])
def test_a_missing_or_empty_grid_is_a_problem(grid):
    assert _paths(_problems(_spec(grid=grid))) == ["grid"]


def test_a_missing_grid_key_is_a_problem():
    data = _spec()
    del data["grid"]
    assert _paths(_problems(data)) == ["grid"]


def test_unknown_utility_is_reported_with_its_index_and_the_allowed_names():
    problems = _problems(_spec(grid={"method": ["cbp"], "utility": ["gxd", "nope"]}))
    assert _paths(problems) == ["grid.utility[1]"]
    for allowed in ("contribution", "gxd", "activation"):
        assert allowed in problems[0]
    assert "nope" in problems[0]


def test_unknown_utility_in_a_grid_list_entry_is_reported_with_both_indices():
    problems = _problems(
        _spec(grid=[{"method": ["bp"]}, {"method": ["cbp"], "utility": ["nope", "gxd"]}])
    )
    assert _paths(problems) == ["grid[1].utility[0]"]


def test_wrong_type_in_grid_names_the_value_index():
    problems = _problems(_spec(grid={"lr": [0.01, "fast"]}))
    assert _paths(problems) == ["grid.lr[1]"]
    assert "'fast'" in problems[0]


@pytest.mark.parametrize(
    ("key", "where"), [("seed", "seeds"), ("device", "device")], ids=["seed", "device"]
)
def test_reserved_fields_are_refused_in_fixed_and_grid(key, where):
    problems = _problems(_spec(fixed={"tasks": 3, key: 0 if key == "seed" else "cpu"}))
    assert _paths(problems) == [f"fixed.{key}"]
    assert f"'{where}'" in problems[0]
    value = [0] if key == "seed" else ["cpu"]
    problems = _problems(_spec(grid={"method": ["bp"], key: value}))
    assert _paths(problems) == [f"grid.{key}"]


def test_a_key_in_both_fixed_and_grid_is_a_problem():
    problems = _problems(_spec(fixed={"tasks": 3, "lr": 0.1}, grid={"lr": [0.01]}))
    assert _paths(problems) == ["grid.lr"]


def test_overlapping_sweep_and_final_seeds_are_a_problem_of_seeds_final():
    problems = _problems(_spec(seeds={"sweep": [0, 1], "final": [1, 2]}))
    assert _paths(problems) == ["seeds.final"]
    assert "[1]" in problems[0]


def test_cuda_device_without_a_gpu_is_a_problem():
    assert _paths(_problems(_spec(device="cuda"))) == ["device"]
    spec = parse_spec(_spec(device="cuda", resources={"gpu": 1}))
    assert spec.device == "cuda"


def test_whole_number_gpus_above_one_are_accepted_and_a_gpu_and_a_half_is_not():
    assert parse_spec(_spec(resources={"gpu": 2})).resources.gpu == 2
    assert _paths(_problems(_spec(resources={"gpu": 1.5}))) == ["resources.gpu"]


def test_fractional_resources_are_accepted():
    spec = parse_spec(_spec(resources={"cpu": 0.5, "gpu": 0.25}))
    assert spec.resources.as_ray() == {"cpu": 0.5, "gpu": 0.25}


def test_a_gpu_and_a_half_is_refused_by_the_fraction_rule():
    (problem,) = _problems(_spec(resources={"gpu": 1.5}))
    assert problem.startswith("resources.gpu: a fraction <= 1 or a whole number")


@pytest.mark.parametrize("every", [0, -1, 2.5, "ten"])
def test_checkpoint_every_must_be_a_positive_integer(every):
    assert _paths(_problems(_spec(checkpoint_every=every))) == ["checkpoint_every"]


def test_unknown_select_metric_lists_the_metrics():
    (problem,) = _problems(_spec(select={"metric": "f1"}))
    assert problem.startswith("select.metric: 'f1'")
    for metric in ("accuracy", "train_accuracy", "loss"):
        assert metric in problem


def test_not_a_mapping_is_one_problem():
    assert _problems(["name"]) == ["(top): expected a mapping, got list"]


def test_an_unknown_experiment_stops_further_checks():
    problems = _problems(_spec(experiment="cifar", colour="blue"))
    assert _paths(problems) == ["colour", "experiment"]


# --- loading --------------------------------------------------------------------------------


def test_unknown_preset_is_a_config_error_listing_the_presets():
    with pytest.raises(ConfigError) as info:
        load_spec("no-such-preset")
    assert "no-such-preset" in str(info.value)
    for name in PRESETS:
        assert name in str(info.value)


def test_missing_yaml_file_is_a_config_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(missing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(str(tmp_path / "missing.yml"))


def test_invalid_yaml_is_a_config_error_mentioning_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ngrid: {lr: [0.01, 0.1\n")
    with pytest.raises(ConfigError, match="YAML") as info:
        load_spec(path)
    assert not isinstance(info.value, SpecError)
    assert str(path) in str(info.value)


def test_a_spec_file_is_loaded_and_named_by_its_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_spec()))
    assert load_spec(path) == parse_spec(_spec())
    path.write_text(yaml.safe_dump(_spec(colour="blue")))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: 1 problem:")


def test_overrides_replace_a_fixed_field():
    spec = load_spec("pmnist-demo", {"tasks": 3})
    assert spec.fixed["tasks"] == 3
    assert spec.fixed["method"] == "cbp"
    assert all(p["tasks"] == 3 for p in spec.configurations())
    assert load_spec("pmnist-demo").fixed["tasks"] == 10


def test_overrides_add_a_fixed_field_and_are_validated():
    assert load_spec("pmnist-demo", {"data": "/data/mnist"}).fixed["data"] == "/data/mnist"
    with pytest.raises(SpecError) as info:
        load_spec("pmnist-demo", {"tasks": "many", "seed": 3})
    assert sorted(_paths(info.value.problems)) == ["fixed.seed", "fixed.tasks"]


# --- seeds and selection defaults -----------------------------------------------------------


def test_seed_counts_give_sweep_from_zero_and_final_after_the_sweep():
    spec = parse_spec(_spec(seeds={"sweep": 3, "final": 4}))
    assert spec.sweep_seeds == (0, 1, 2)
    assert spec.final_seeds == (3, 4, 5, 6)


def test_seed_defaults_are_five_sweep_and_fifteen_final():
    data = _spec()
    del data["seeds"]
    spec = parse_spec(data)
    assert spec.sweep_seeds == tuple(range(5))
    assert spec.final_seeds == tuple(range(5, 20))


def test_final_seed_count_starts_after_the_largest_listed_sweep_seed():
    spec = parse_spec(_spec(seeds={"sweep": [7, 2], "final": 2}))
    assert spec.sweep_seeds == (7, 2)
    assert spec.final_seeds == (8, 9)


def test_seed_lists_are_kept():
    spec = parse_spec(_spec(seeds={"sweep": [4, 1], "final": [10, 0, 20]}))
    assert spec.sweep_seeds == (4, 1)
    assert spec.final_seeds == (10, 0, 20)


@pytest.mark.parametrize("value", [0, -1, [], [1, 1], [-1], True, "3"])
def test_bad_seed_values_are_problems(value):
    assert _paths(_problems(_spec(seeds={"sweep": value, "final": [50]}))) == ["seeds.sweep"]


def test_select_mode_defaults_to_the_metric_direction():
    assert parse_spec(_spec(select={"metric": "loss"})).select.mode == "min"
    assert parse_spec(_spec(select={"metric": "accuracy"})).select.mode == "max"
    assert parse_spec(_spec(select={"metric": "train_accuracy"})).select.mode == "max"
    assert parse_spec(_spec(select={})).select.mode == "max"


def test_explicit_select_mode_is_kept():
    assert parse_spec(_spec(select={"metric": "loss", "mode": "max"})).select.mode == "max"
    assert parse_spec(_spec(select={"metric": "accuracy", "mode": "min"})).select.mode == "min"
    assert _paths(_problems(_spec(select={"mode": "best"}))) == ["select.mode"]


def test_select_per_must_name_config_fields():
    problems = _problems(_spec(select={"per": ["utility", "colour"], "last_tasks": -1}))
    assert sorted(_paths(problems)) == ["select.last_tasks", "select.per"]


# --- command line ---------------------------------------------------------------------------


def test_cli_sweep_of_a_bad_spec_exits_2_with_one_error_naming_every_problem(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(MANY_PROBLEMS))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("plasticity: error:") == 1
    assert f"{len(MANY_PATHS)} problems" in captured.err
    for where in MANY_PATHS:
        assert f"  {where}: " in captured.err
    assert not (tmp_path / "out").exists()


def test_cli_sweep_of_an_unknown_preset_exits_2(tmp_path, capsys):
    assert main(["sweep", "no-such-preset", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error:")
    assert "no-such-preset" in err
    assert "demo" in err


def test_cli_list_presets_prints_every_preset(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert names == PRESETS
