"""A real two-node Ray cluster on 127.0.0.1 for the end-to-end test, in its own process.

    python loopback_cluster.py DASHBOARD_PORT

prints one JSON line {"address", "head", "worker"} when both nodes are up, then reads
commands from stdin: `remove-worker` stops the extra node, `stop` (or EOF) stops the
cluster. Only the processes this cluster started are stopped (never `ray stop`).

Why not `ray start`: in Ray 2.60 a node joins loopback-only only when Ray's cluster mode flag
is off, and `ray start --address` refuses to add a node in that mode; `ray.cluster_utils`
starts the same head and worker processes without that check. Token authentication comes
from the environment (RAY_AUTH_MODE, RAY_AUTH_TOKEN), as with `ray start`.
"""

import json
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every server on 127.0.0.1

from ray._private import ray_constants  # noqa: E402

ray_constants.ENABLE_RAY_CLUSTER = False
from ray.cluster_utils import Cluster  # noqa: E402


def main() -> None:
    port = int(sys.argv[1])
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": port,
        },
    )
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(
        json.dumps(
            {
                "address": cluster.address,
                "head": cluster.head_node.node_id,
                "worker": worker.node_id,
            }  # fmt: skip
        ),
        flush=True,
    )
    try:
        for line in sys.stdin:
            if line.strip() == "remove-worker":
                cluster.remove_node(worker)
                print("removed", flush=True)
            elif line.strip() == "stop":
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
