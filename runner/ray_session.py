"""Starting or joining Ray for a command, quietly and on loopback.

By default a command starts an embedded single-machine Ray whose servers all listen on
127.0.0.1 only (Ray's own default binds them to every interface), with the dashboard off.
`address` joins an existing cluster instead ("auto", or "HOST:6379").
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from plasticity_core.errors import ConfigError

QUIET = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_TQDM": "0"}
"""Ray's verbose Tune tables off: the runner prints its own compact progress."""


def _loopback_only() -> None:
    """Ray picks the node address from this flag (read from the environment when Ray is
    imported, so also set on the already imported module): off means 127.0.0.1, and every
    Ray server, including those of the worker processes, then binds loopback only."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
) -> Iterator[dict[str, float]]:
    """Yields the cluster's resources; shuts down only a Ray this call started."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    import ray

    if address is None and not ray.is_initialized():
        _loopback_only()

    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    logging.getLogger("ray.train").setLevel(logging.CRITICAL)
    started = False
    if not ray.is_initialized():
        options = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        try:
            if address is None:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    num_gpus=num_gpus,
                    include_dashboard=dashboard,
                    dashboard_host="127.0.0.1",
                    **options,
                )
            else:
                ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {err}") from None
        started = True
    try:
        yield dict(ray.cluster_resources())
    finally:
        if started:
            ray.shutdown()
