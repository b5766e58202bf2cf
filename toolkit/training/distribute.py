"""Which workers train together, and the tf.distribute strategy that joins them.

Several workers train one model with `tf.distribute.MultiWorkerMirroredStrategy`:
every worker holds a copy of the variables, computes the gradient sums of its
own batch, and the strategy all-reduces them (collective ring all-reduce over
gRPC) so every copy takes the same step. The cluster comes from `TF_CONFIG`
(what Kubernetes operators and TF's own launchers set) or from the flags
`--workers HOST:PORT,...` and `--worker-index I`, which write `TF_CONFIG`.
Without either, training runs in this process on TF's default strategy: the
same code path, with nothing to all-reduce.

Worker 0 (or the `chief` task, if TF_CONFIG names one) is the chief: it writes
the run folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from toolkit.errors import InputError
from toolkit.tfenv import import_tf

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class Cluster:
    """The workers' addresses (chief first) and this process's place among them; () for a single process."""

    workers: tuple[str, ...] = ()
    index: int = 0

    @property
    def size(self) -> int:
        return max(1, len(self.workers))

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def my_shards(self, num_shards: int) -> range:
        """The shards this worker reads: every size-th one, from its index."""
        return range(self.index, num_shards, self.size)

    def as_record(self) -> dict:
        return {"workers": self.size, "worker_index": self.index, "addresses": list(self.workers)}


def cluster_from(workers: str | None = None, worker_index: int | None = None) -> Cluster:
    """The cluster named by the flags (which then write TF_CONFIG) or by TF_CONFIG; a single process if neither."""
    if workers is not None or worker_index is not None:
        return _from_flags(workers, worker_index)
    if os.environ.get("TF_CONFIG"):
        return _from_tf_config(os.environ["TF_CONFIG"])
    return Cluster()


def _from_flags(workers: str | None, worker_index: int | None) -> Cluster:
    if workers is None or worker_index is None:
        raise InputError("--workers and --worker-index go together: give both (or set TF_CONFIG instead)")
    addresses = tuple(a.strip() for a in workers.split(",") if a.strip())
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad or not addresses:
        raise InputError(f"--workers {workers!r}: expected HOST:PORT,HOST:PORT,... (bad: {', '.join(bad) or 'empty'})")
    if len(set(addresses)) != len(addresses):
        raise InputError(f"--workers {workers!r}: an address appears twice")
    if not 0 <= worker_index < len(addresses):
        raise InputError(
            f"--worker-index {worker_index}: must be between 0 and {len(addresses) - 1} for {len(addresses)} workers"
        )
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": worker_index}}
    )
    return Cluster(addresses, worker_index)


def _from_tf_config(text: str) -> Cluster:
    try:
        config = json.loads(text)
        jobs = config["cluster"]
        task_type, task_index = config["task"]["type"], int(config["task"]["index"])
        chief, workers = list(jobs.get("chief", [])), list(jobs.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        expected = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        raise InputError(f"TF_CONFIG: not a cluster spec ({type(exc).__name__}: {exc}); expected {expected}") from None
    if task_type not in ("chief", "worker") or set(jobs) - {"chief", "worker"}:
        raise InputError(
            f"TF_CONFIG: tfkit trains with chief and worker tasks only (got task {task_type!r}, "
            f"jobs {', '.join(sorted(jobs))})"
        )
    addresses = tuple(chief + workers)
    index = task_index if task_type == "chief" else len(chief) + task_index
    if not 0 <= index < len(addresses):
        raise InputError(f"TF_CONFIG: task {task_type} {task_index} is not in the cluster ({len(addresses)} tasks)")
    return Cluster(addresses, index)


def strategy_for(cluster: Cluster):
    """MultiWorkerMirroredStrategy for several workers (waits until all of them are up), else the default strategy.

    Must run before TensorFlow executes anything in this process: the strategy
    configures the collective ops at start-up.
    """
    tf = import_tf()
    if cluster.size == 1:
        return tf.distribute.get_strategy()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def sum_over_workers(strategy, value):
    """`value` (a tensor) summed over all workers; every worker must call this at the same point."""
    tf = import_tf()
    if strategy.num_replicas_in_sync == 1:
        return value
    per_replica = strategy.run(lambda: tf.identity(value))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
