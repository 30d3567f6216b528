"""A Ray cluster of local processes: a head and worker nodes on this machine (Ray's own multi-node-on-one-machine
harness, ray.cluster_utils.Cluster), reached through Ray Client like a real one. For trying PLASMA_RAY_ADDRESS
without containers, and for the tests and bench/ray_scaling.py.

    with LocalRayCluster(workers=2) as address:   # ray://127.0.0.1:<port>, for PLASMA_RAY_ADDRESS
        ...

The nodes are children of this process and stop with the block, not through `ray stop`, which stops every Ray
process the machine can see (a compose stack's containers' included).
"""

from __future__ import annotations

import socket
from types import TracebackType

from ray.cluster_utils import Cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRayCluster:
    """A head offering `head_cpus` CPUs to tasks and `workers` worker nodes offering `worker_cpus` each."""

    def __init__(self, workers: int, worker_cpus: int = 1, head_cpus: int = 0) -> None:
        self.workers, self._worker_cpus, self._head_cpus = workers, worker_cpus, head_cpus
        self._cluster: Cluster | None = None

    def __enter__(self) -> str:
        client_port = _free_port()
        self._cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": self._head_cpus, "ray_client_server_port": client_port, "include_dashboard": False})
        try:
            for _ in range(self.workers):
                self._cluster.add_node(num_cpus=self._worker_cpus)
            self._cluster.wait_for_nodes()
        except BaseException:
            self._cluster.shutdown()
            raise
        return f"ray://127.0.0.1:{client_port}"

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None
