"""On CUDA, the training step, the optimizer and CBP's hooks never wait for the device.

`torch.cuda.set_sync_debug_mode("error")` turns every host synchronisation (`.item()`, a
boolean mask index, Python branching on a tensor, a blocking copy) into an exception. Skipped
on machines without CUDA (CI has none); on a GPU machine: `pytest tests/core/test_cuda_step.py`.
"""

import pytest
import torch

from runner.bench import CBP_UTILITIES, N_CLASSES, N_INPUTS, WARMUP, _model, engine_loop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("variant", ["bp", *(f"cbp:{u}" for u in CBP_UTILITIES)])
def test_engine_steps_and_resets_run_without_host_synchronisation(variant):
    device = torch.device("cuda")
    step = engine_loop(_model("256x4", device), variant)
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(64, N_INPUTS, device=device, generator=g)
    y = torch.randint(0, N_CLASSES, (64,), device=device, generator=g)
    for _ in range(WARMUP):  # past maturity, so units are replaced in the checked steps
        step(x, y)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        resets = sum(step(x, y) for _ in range(200))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert resets > 0 if variant != "bp" else resets == 0


@pytest.mark.parametrize("variant", ["bp", "cbp:gxd", "cbp:mc_adaptable"])
def test_a_pack_of_64_steps_and_resets_without_host_synchronisation(variant):
    from runner.bench_pack import WORKLOADS, packed_steps

    step = packed_steps(WORKLOADS["mlp"], variant, 64, torch.device("cuda"))
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(200):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
