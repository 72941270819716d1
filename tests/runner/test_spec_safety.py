"""Bad spec files and bad --device values through the command line: exit 2 with a
'plasticity: error:' message that quotes at most ~80 characters of the bad value, never a
traceback, a hang or gigabytes of memory."""

import io
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from plasticity_core.errors import ConfigError
from runner.cli import main
from runner.spec import MAX_TRIALS, SpecError, load_spec
from tests.runner.specs import tiny_spec_document
from tests.runner.test_safe_yaml import billion_laughs


def _write(tmp_path, document: str | bytes | dict, name: str = "spec.yaml"):
    path = tmp_path / name
    if isinstance(document, dict):
        document = yaml.safe_dump(document)
    if isinstance(document, str):
        document = document.encode()
    path.write_bytes(document)
    return path


def _plan(capsys, *argv) -> str:
    """stderr of `plasticity plan ARGV`, which must exit 2 without a traceback."""
    assert main(["plan", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error:") and "Traceback" not in err
    return err


def _one_line(capsys, *argv) -> str:
    err = _plan(capsys, *argv)
    assert err.count("\n") == 1
    return err


def _console(*argv: str) -> subprocess.CompletedProcess:
    """The installed `plasticity` command itself, in a process of its own."""
    command = shutil.which("plasticity")
    assert command, "the project is installed (pip install -e .), so `plasticity` exists"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([command, *argv], capture_output=True, text=True, timeout=120, env=env)


# --- the installed command ------------------------------------------------------------------


def test_console_command_reports_a_non_utf8_spec_in_one_line_with_exit_2(tmp_path):
    path = _write(tmp_path, "name: caf\xe9\n".encode("latin-1"))
    result = _console("plan", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"plasticity: error: {path}: not UTF-8 text: byte 0xe9 at offset 9 (line 1); save the "
        "file as UTF-8"
    ]


def test_console_command_refuses_an_alias_bomb_at_once_in_one_short_line(tmp_path):
    path = _write(tmp_path, billion_laughs())
    start = time.perf_counter()
    result = _console("plan", str(path))
    assert time.perf_counter() - start < 60  # before: > 3 GB and minutes
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and len(result.stderr) < 250
    assert "aliases expanded" in result.stderr


# --- YAML that cannot be loaded: one line ---------------------------------------------------


def test_nesting_20000_deep_is_one_line_not_a_recursion_error(tmp_path, capsys):
    err = _one_line(capsys, _write(tmp_path, "name: " + "[" * 20_000 + "]" * 20_000))
    assert "nested more than 50 deep" in err


def test_a_repeated_key_is_one_line_naming_the_key_and_its_line(tmp_path, capsys):
    text = yaml.safe_dump(tiny_spec_document(), sort_keys=False)
    err = _one_line(capsys, _write(tmp_path, text + "name: other\n"))
    last = text.count("\n") + 1
    assert f"duplicate key 'name' at line {last}, column 1 (first at line 1)" in err


def test_a_spec_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path, capsys):
    path = _write(tmp_path, b"description: " + b"x" * (1 << 20))
    assert "larger than 1,048,576 bytes" in _one_line(capsys, path)


def test_a_spec_path_too_long_for_the_file_system_is_one_short_line(capsys):
    err = _one_line(capsys, "a" * 5000)
    assert "File name too long" in err and len(err) < 200


def test_a_folder_given_as_the_spec_is_named_as_not_a_file(tmp_path, capsys):
    assert "is not a file" in _one_line(capsys, tmp_path)


# --- spec problems: listed together, each value quoted briefly ------------------------------


@pytest.mark.parametrize(
    "name, problem",
    [
        ("a" * 300, "300 characters; a folder name has 1 to 100"),
        ("\u00e9" * 100, ""),  # 100 characters, 200 bytes: a valid name
        ("a\x00b", "control character '\\x00'"),
        ("tab\there", "control character '\\t'"),
        ("a/b", "no '/' or '\\'"),
        ("a\\b", "no '/' or '\\'"),
        (".hidden", "does not start with '.'"),
        ("", "expected a folder name"),
    ],
)
def test_a_name_must_be_a_plain_folder_name_of_at_most_100_characters(
    tmp_path, capsys, name, problem
):
    path = _write(tmp_path, tiny_spec_document(name=name))
    if not problem:
        assert load_spec(path).name == name
        return
    line = next(line for line in _plan(capsys, path).splitlines() if line.startswith("  name: "))
    assert problem in line and len(line) < 200


@pytest.mark.parametrize(
    "change, where",
    [
        ({"experiment": "permuted-mnist\x1b[2J"}, "experiment: "),
        ({"device": "cpu\x00"}, "device: "),
        ({"fixed": {"tasks": 3, "hidden": [8], "data": "/data\r\nmnist"}}, "fixed.data: "),
        ({"description": "ok\nbut a bell\x07"}, "description: control character '\\x07'"),
    ],
)
def test_control_characters_in_text_values_are_problems(tmp_path, capsys, change, where):
    err = _plan(capsys, _write(tmp_path, tiny_spec_document(**change)))
    assert f"  {where}" in err


def test_a_key_with_a_terminal_escape_is_printed_escaped(tmp_path, capsys):
    document = tiny_spec_document(fixed={"tasks": 3, "da\x1b[2Jta": 1})
    err = _plan(capsys, _write(tmp_path, document))
    assert "\x1b" not in err and "  fixed.da\\x1b[2Jta: not a field" in err


def test_a_non_utf8_spec_on_standard_input_is_one_line(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO("name: caf\xe9\n".encode("latin-1")))
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(ConfigError) as info:
        load_spec("-")
    assert str(info.value).startswith("standard input: not UTF-8 text: byte 0xe9 at offset 9")


def test_a_description_keeps_its_newlines_and_tabs(tmp_path):
    spec = load_spec(_write(tmp_path, tiny_spec_document(description="two\n\tlines")))
    assert spec.description == "two\n\tlines"


def test_a_huge_bad_value_is_quoted_in_at_most_80_characters(tmp_path, capsys):
    err = _plan(capsys, _write(tmp_path, tiny_spec_document(device="x" * 100_000)))
    line = next(line for line in err.splitlines() if line.startswith("  device: "))
    assert line.startswith("  device: 'xxx") and "...; choose from auto, cpu, cuda" in line
    assert len(line) < 130


def test_a_fixed_list_with_overrides_is_a_spec_problem_not_a_type_error(tmp_path):
    path = _write(tmp_path, tiny_spec_document(fixed=[1, 2]))
    with pytest.raises(SpecError) as info:
        load_spec(path, {"tasks": 2})
    assert info.value.problems == ["fixed: expected a mapping of config fields"]


# --- the trial ceiling: counted before anything is expanded ---------------------------------


def test_a_two_million_trial_grid_is_refused_at_once_with_its_count(tmp_path, capsys):
    grid = {"lr": [round(0.001 * (i + 1), 6) for i in range(400)],
            "replacement_rate": [1e-6 * (i + 1) for i in range(1000)]}  # fmt: skip
    path = _write(tmp_path, tiny_spec_document(grid=grid, seeds={"sweep": 5, "final": 2}))
    start = time.perf_counter()
    err = _plan(capsys, path)
    assert time.perf_counter() - start < 5
    assert (
        "2,000,000 sweep trials (grid 400,000 configurations x 5 seeds), above the ceiling "
        f"of {MAX_TRIALS:,}; raise it with --max-trials N"
    ) in err


def test_a_seed_count_of_10_to_the_18_is_refused_without_building_the_seeds(tmp_path, capsys):
    path = _write(tmp_path, tiny_spec_document(seeds={"sweep": 10**18, "final": 2}))
    err = _plan(capsys, path)
    assert "4,000,000,000,000,000,000 sweep trials (grid 4 configurations x " in err


def test_the_final_stage_is_bounded_by_every_configuration_times_the_final_seeds(tmp_path):
    path = _write(tmp_path, tiny_spec_document(seeds={"sweep": 2, "final": 3}))
    with pytest.raises(SpecError) as info:
        load_spec(path, max_trials=11)
    assert info.value.problems == [
        "grid x seeds.final: up to 12 final trials (grid 4 configurations x 3 seeds), above "
        "the ceiling of 11; raise it with --max-trials N"
    ]
    assert len(load_spec(path, max_trials=12).final_seeds) == 3


def test_a_raised_ceiling_or_none_accepts_what_the_default_refuses(tmp_path):
    path = _write(tmp_path, tiny_spec_document(seeds={"sweep": 2_501, "final": 1}))
    with pytest.raises(SpecError, match="10,004 sweep trials"):
        load_spec(path)
    assert len(load_spec(path, max_trials=10_004).sweep_seeds) == 2_501
    assert len(load_spec(path, max_trials=None).sweep_seeds) == 2_501


# --- devices --------------------------------------------------------------------------------

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this torch can use CUDA")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "permuted-mnist", "--device", "tpu"],
        ["run", "permuted-mnist", "--device", "cuda:x"],
        ["bench", "--device", "cuda:"],
        ["assay", "--device", "gpu"],
    ],
)
def test_an_unknown_device_is_one_line_naming_the_choices(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("plasticity: error: unknown device ")
    assert err.rstrip().endswith("choose cpu, cuda or cuda:N")


@NO_CUDA
@pytest.mark.parametrize(
    "argv",
    [
        ["run", "permuted-mnist", "--device", "cuda"],
        ["run", "permuted-mnist", "--device", "cuda:1"],
        ["assay", "--device", "cuda"],
        ["bench", "--device", "cuda"],
        ["bench", "--device", "cuda", "--pack", "1"],
    ],
)
def test_cuda_on_a_torch_without_cuda_is_one_line_saying_use_cpu(argv, capsys):
    assert main(argv) == 2
    device = argv[argv.index("--device") + 1]
    assert capsys.readouterr().err == (
        f"plasticity: error: device '{device}': this torch ({torch.__version__}) cannot use "
        "CUDA (a CPU build, or no driver); use --device cpu\n"
    )


def test_a_cuda_index_past_the_machines_devices_names_how_many_there_are(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["run", "permuted-mnist", "--device", "cuda:2"]) == 2
    assert capsys.readouterr().err == (
        "plasticity: error: device 'cuda:2': this machine has 2 CUDA device(s), cuda:0 to cuda:1\n"
    )


# --- what `sweep` checks before it writes anything or starts Ray ---------------------------


def _sweep_refused(capsys, *argv) -> str:
    started = time.monotonic()
    assert main(["sweep", *map(str, argv)]) == 2
    assert time.monotonic() - started < 10, "refused before Ray started"
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error:") and err.count("\n") == 1
    return err


def test_a_missing_data_folder_is_refused_before_any_trial_starts(tmp_path, capsys):
    document = tiny_spec_document()
    document["fixed"]["data"] = str(tmp_path / "no-such-folder")
    err = _sweep_refused(capsys, _write(tmp_path, document), "--out", tmp_path / "out")
    assert f"data folder {tmp_path / 'no-such-folder'} does not exist" in err
    assert not (tmp_path / "out").exists(), "nothing written for a refused sweep"


def test_an_out_that_names_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("kept")
    err = _sweep_refused(capsys, _write(tmp_path, tiny_spec_document()), "--out",
                         tmp_path / "a-file")  # fmt: skip
    assert "is a file; give a folder" in err
    assert (tmp_path / "a-file").read_text() == "kept"


@pytest.mark.parametrize("field", ["lr", "dormant_threshold", "weight_decay", "noise_std"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_in_a_spec_are_problems(tmp_path, capsys, field, value):
    text = yaml.safe_dump(tiny_spec_document()).replace("fixed:\n", f"fixed:\n  {field}: {value}\n")
    err = _plan(capsys, _write(tmp_path, text))
    assert f"fixed.{field}:" in err and "finite" in err


def test_a_non_finite_option_of_run_is_one_line(capsys):
    assert main(["run", "permuted-mnist", "--dormant-threshold", "nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dormant-threshold: expected a finite number" in err
