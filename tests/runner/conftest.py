import pytest


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray (2 CPUs) per test module, started the way the CLI starts it."""
    from runner.ray_session import ray_session

    with ray_session(num_cpus=2) as resources:
        yield resources
