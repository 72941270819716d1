"""Bounded YAML loading: bombs, deep nesting, repeated keys, bad bytes and oversized
documents are one-line ConfigErrors, found while loading and in well under a second."""

import time

import pytest
import yaml

from plasticity_core.errors import ConfigError
from runner.safe_yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, load_yaml
from runner.spec import PRESETS, presets


def billion_laughs(levels: int = 9) -> str:
    """The classic bomb: nine strings, then each level nine aliases of the one before
    (9^levels strings once expanded, from ~400 bytes)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _refusal(document: str | bytes) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml(document, "spec.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("spec.yaml: ")
    return message


def test_a_billion_laughs_document_is_refused_at_once_with_a_short_message():
    document = billion_laughs()
    assert len(document) < 500
    start = time.perf_counter()
    message = _refusal(document)
    assert time.perf_counter() - start < 1.0
    assert "aliases expanded" in message and len(message) < 200


def test_more_alias_uses_than_the_bound_are_refused_even_when_each_is_small():
    document = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    assert f"more than {MAX_ALIASES} aliases" in _refusal(document)


def test_aliases_of_small_values_within_the_bounds_load_as_safe_load_does():
    document = "base: &b {tasks: 3, hidden: [8, 8]}\nfixed: *b\nmerged: {<<: *b, tasks: 4}\n"
    assert load_yaml(document, "spec.yaml") == yaml.safe_load(document)
    assert load_yaml(document, "spec.yaml")["merged"] == {"tasks": 4, "hidden": [8, 8]}


def test_an_alias_inside_its_own_anchor_is_refused_rather_than_built_as_a_cycle():
    assert "inside its own anchor" in _refusal("a: &a [1, *a]\n")


def test_nesting_20000_deep_is_refused_without_a_recursion_error():
    start = time.perf_counter()
    message = _refusal("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert time.perf_counter() - start < 1.0
    assert f"nested more than {MAX_DEPTH} deep" in message


def test_nesting_at_the_bound_loads_and_one_level_more_is_refused():
    def nested(depth: int) -> str:  # depth levels including the innermost scalar
        return "[" * (depth - 1) + "1" + "]" * (depth - 1)

    assert load_yaml(nested(MAX_DEPTH), "spec.yaml") is not None
    assert "nested" in _refusal(nested(MAX_DEPTH + 1))


def test_an_alias_that_makes_the_nesting_too_deep_is_refused():
    inner = "[" * 30 + "1" + "]" * 30
    assert "through an alias" in _refusal(f"a: &a {inner}\nb: {'[' * 30}*a{']' * 30}\n")


def test_a_repeated_key_is_refused_naming_the_key_and_both_lines():
    message = _refusal("name: first\ntasks: 3\nname: second\n")
    assert "duplicate key 'name' at line 3" in message and "first at line 1" in message


def test_a_repeated_key_in_a_nested_flow_mapping_is_refused():
    assert "duplicate key 'lr'" in _refusal("grid: {lr: [0.1], lr: [0.2]}\n")


def test_non_utf8_bytes_are_refused_naming_the_byte_its_offset_and_line():
    message = _refusal("name: tiny\ndescription: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in message and "0xe9" in message
    assert "offset 27" in message and "line 2" in message


def test_a_document_over_the_size_bound_is_refused_before_it_is_parsed():
    start = time.perf_counter()
    message = _refusal(b"a: [" + b"1," * (MAX_BYTES // 2) + b"1]")
    assert time.perf_counter() - start < 0.5
    assert f"{MAX_BYTES:,} bytes" in message


def test_invalid_yaml_is_one_line_with_its_line_and_column():
    message = _refusal("name: x\ngrid: {lr: [0.01, 0.1\n")
    assert "not valid YAML at line 3" in message


def test_python_object_tags_are_refused_as_the_safe_loader_refuses_them():
    assert "could not determine a constructor" in _refusal("!!python/object/apply:os.system [ls]")


def test_a_raw_control_character_is_refused_with_its_code():
    assert "#x0007" in _refusal("name: a\x07b\n")


@pytest.mark.parametrize("name", presets())
def test_every_preset_loads_as_pyyaml_safe_load_does(name):
    text = (PRESETS / f"{name}.yaml").read_text()
    assert load_yaml(text.encode(), name) == yaml.safe_load(text)
