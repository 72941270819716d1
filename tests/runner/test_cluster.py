"""A multi-node local Ray cluster: GPU trials land on the GPU node, CPU trials elsewhere,
and a trial given a GPU without CUDA fails with a clear message instead of hanging."""

from __future__ import annotations

import json

import pytest
import torch

from runner.manifest import prepare
from runner.results import read_results
from runner.spec import load_spec
from runner.storage import Folder
from runner.sweep import run_stages
from tests.runner.ray_helpers import write_spec


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    from runner.ray_session import ray_session

    # Logical CPUs: 4 on the head keeps two CPU trials under Ray's 50% spread threshold,
    # so where they land depends only on the GPU-avoiding policy under test.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    with ray_session(address=cluster.address):
        yield gpu_node.node_id, ray.get_runtime_context().get_node_id()
    cluster.shutdown()


def _records(uri: str, name: str) -> list[dict]:
    folder = Folder(uri) / name / "trials" / "stage=sweep"
    return [json.loads(f.read_text()) for f in folder.files(".json")]


def _run(tmp_path, name: str, printed: list, **spec_fields):
    spec = load_spec(write_spec(tmp_path, name, **spec_fields))
    uri = f"file://{tmp_path}/out"  # a URI, as a real multi-node cluster needs
    stopped = run_stages(spec, prepare(spec, uri), ["sweep"], printer=printed.append)
    return stopped, uri


def test_gpu_trials_run_on_the_gpu_node_and_cpu_trials_elsewhere(two_nodes, tmp_path):
    gpu_node, head_node = two_nodes
    printed: list[str] = []
    stopped, uri = _run(tmp_path, "on-gpu", printed, resources={"cpu": 1, "gpu": 0.5}, device="cpu")
    assert stopped is None
    records = _records(uri, "on-gpu")
    assert len(records) == 2
    assert {r["node_id"] for r in records} == {gpu_node}
    assert all(r["gpu_ids"] for r in records), "Ray assigned a GPU to each trial"

    stopped, uri = _run(tmp_path, "on-cpu", printed, resources={"cpu": 1})
    assert stopped is None
    records = _records(uri, "on-cpu")
    assert {r["node_id"] for r in records} == {head_node}, records
    assert all(r["device"] == "cpu" and not r["gpu_ids"] for r in records)
    assert len(read_results(f"{uri}/on-cpu")) == 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_trial_without_cuda_fails_with_a_clear_message(two_nodes, tmp_path):
    printed: list[str] = []
    stopped, _ = _run(tmp_path, "no-cuda", printed, resources={"cpu": 1, "gpu": 1})
    assert (stopped.failed, stopped.finished, stopped.error) == (2, 0, "")
    errors = [line for line in printed if "error:" in line]
    assert len(errors) == 2
    assert all("cannot use CUDA" in line and "resources.gpu: 0" in line for line in errors)
