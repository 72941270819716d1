"""The cluster definitions: Ray's own launcher validator (offline), KubeRay structure,
security settings, and `plasticity plan` counts."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from runner.cli import main
from runner.spec import load_spec

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
LAUNCHER = ["aws.yaml", "gcp.yaml"]


def validate(config: dict) -> None:
    """Ray's validator: the provider's defaults merged in first (offline, no credentials)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler").setLevel(logging.ERROR)
    validate_config(prepare_config(copy.deepcopy(config)))


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_definition_passes_rays_validator(name):
    validate(load(name))


@pytest.mark.parametrize("name", LAUNCHER)
def test_a_wrong_key_is_rejected(name):
    config = load(name)
    config["worker_typo"] = {}
    with pytest.raises(jsonschema.ValidationError, match="worker_typo"):
        validate(config)


@pytest.mark.parametrize("name", LAUNCHER)
def test_a_missing_head_node_type_is_rejected(name):
    config = load(name)
    del config["available_node_types"][config["head_node_type"]]
    with pytest.raises(ValueError, match="head_node_type"):
        validate(config)


@pytest.mark.parametrize("name", LAUNCHER)
def test_definition_scales_from_zero_with_cpu_and_gpu_workers(name):
    config = load(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head runs no trials"
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert all(w["min_workers"] == 0 and w["max_workers"] > 0 for w in workers.values())
    gpu = [w for w in workers.values() if w["resources"].get("GPU")]
    cpu = [w for w in workers.values() if not w["resources"].get("GPU")]
    assert gpu and cpu
    accelerator = "A10G" if name == "aws.yaml" else "L4"
    assert gpu[0]["resources"][accelerator] == 1
    if name == "aws.yaml":
        assert gpu[0]["node_config"]["InstanceType"].startswith("g5.")
    # CUDA torch on GPU nodes, the CPU build elsewhere
    assert any("whl/cu" in c for c in gpu[0]["worker_setup_commands"])
    assert any("whl/cpu" in c for c in cpu[0]["worker_setup_commands"])


@pytest.mark.parametrize("name", LAUNCHER)
def test_definition_keeps_ray_ports_closed_and_uses_tokens(name):
    config = load(name)
    text = (CLUSTER / name).read_text()
    assert "0.0.0.0" not in text
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert config["file_mounts"]["~/plasticity-bench"] == ".", "nodes run the submitter's code"


def test_kuberay_cluster_structure():
    manifest = load("kuberay.yaml")
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP", "never exposed outside"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    assert all(g["minReplicas"] == 0 for g in groups.values())
    gpu_pod = groups["gpu-workers"]["template"]["spec"]
    limits = gpu_pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert "nvidia-a10g" in gpu_pod["nodeSelector"].values()
    assert "A10G" in groups["gpu-workers"]["rayStartParams"]["resources"]
    images = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]] + [
        g["template"]["spec"]["containers"][0]["image"] for g in groups.values()
    ]
    for image in images:
        assert image.rsplit(":", 1)[1].startswith(ray.__version__), image
    for container in [c for g in groups.values() for c in g["template"]["spec"]["containers"]]:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and "RAY_AUTH_TOKEN" in env


def test_project_pins_the_ray_version_the_definitions_use():
    pyproject = (CLUSTER.parent / "pyproject.toml").read_text()
    assert f'"ray[tune]=={ray.__version__}"' in pyproject
    assert f"rayproject/ray:{ray.__version__}" in (CLUSTER / "Dockerfile").read_text()


@pytest.mark.parametrize("preset", ["pmnist-activations", "pmnist-layernorm", "demo"])
def test_plan_counts_equal_grid_size_times_seeds(preset, capsys):
    spec = load_spec(preset)
    assert main(["plan", preset, "--cluster", str(CLUSTER / "aws.yaml")]) == 0
    out = capsys.readouterr().out
    configs = len(spec.configurations())
    groups = {
        tuple(spec.build(p, 0).hyperparameters()[k] for k in spec.select.per)
        for p in spec.configurations()
    }
    sweep = re.search(r"^sweep\s+([\d,]+)\s+(\d+) x (\d+)", out, re.M)
    final = re.search(r"^final\s+([\d,]+)\s+(\d+) x (\d+)", out, re.M)
    assert int(sweep[1].replace(",", "")) == configs * len(spec.sweep_seeds)
    assert (int(sweep[2]), int(sweep[3])) == (configs, len(spec.sweep_seeds))
    assert int(final[1].replace(",", "")) == len(groups) * len(spec.final_seeds)
    total = re.search(r"^total\s+([\d,]+)", out, re.M)
    assert int(total[1].replace(",", "")) == (
        configs * len(spec.sweep_seeds) + len(groups) * len(spec.final_seeds)
    )


def test_plan_of_the_paper_preset_matches_hand_counts(capsys):
    assert main(["plan", "pmnist-activations"]) == 0
    out = capsys.readouterr().out
    # bp: 4 activations x 3 lr = 12; cbp: 7 utilities x 4 activations x 3 lr x 3 rates = 252
    assert re.search(r"^sweep\s+1,320\s+264 x 5\s+1,056,000", out, re.M)
    # one winner per (method, utility) x activation: (1 + 7) x 4 = 32 groups x 15 seeds
    assert re.search(r"^final\s+480\s+32 x 15\s+384,000", out, re.M)


def test_plan_rejects_a_cluster_where_no_worker_fits(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "g", "experiment": "permuted-mnist", "grid": {"lr": [0.01]},
        "resources": {"cpu": 1, "gpu": 1, "accelerator": "H100"},
    }))  # fmt: skip
    assert main(["plan", str(spec), "--cluster", str(CLUSTER / "aws.yaml")]) == 2
