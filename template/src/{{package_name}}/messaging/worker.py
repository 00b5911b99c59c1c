"""``worker NAME``: run one topology worker with the flags topology.yaml gives it.

A worker that serves a match queue loads that domain's cache and starts its cache-event
consumer before it consumes a single task, so a restarted worker never answers from an
empty cache.
"""

import argparse
import sys
from importlib import import_module

from celery import signals

from .. import orm
from ..db import connect_once, database_faults
from ..faults import entry_point
from ..settings import get_settings
from .broker import BrokerMismatch, broker_objects, check
from .heartbeat import Heartbeat
from .topology import Topology, Worker, load

PACKAGE = __package__.rsplit(".", 1)[0]


def worker_flags(worker: Worker) -> list[str]:
    """The tuning flags topology.yaml gives; Kubernetes manifests spell them out too."""
    return [
        f"--pool={worker.pool}",
        f"--concurrency={worker.concurrency}",
        f"--prefetch-multiplier={worker.prefetch}",
    ]


def celery_arguments(worker: Worker) -> list[str]:
    return [
        "worker",
        f"--hostname={worker.name}@%h",
        f"--queues={','.join(worker.queues)}",
        *worker_flags(worker),
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]


def caches_to_warm(topology: Topology, worker: str):
    orm.setup()  # a cache loads its domain's models
    for queue in topology.worker_queues(worker):
        if queue.kind == "match":
            yield import_module(f"{PACKAGE}.{queue.domain}.cache").records


def preflight(topology: Topology, worker: Worker) -> None:
    """Refuse to start on a broker or database that cannot serve this worker.

    Celery would retry an unreachable broker or a refused login forever, and fail its own
    declaration of a queue whose arguments differ with PRECONDITION_FAILED, again forever;
    a match worker would warm its cache from a database it cannot reach and serve from an
    empty one. Once the worker runs, reconnecting after a broker cut is Celery's job.
    """
    mine = tuple(q for q in broker_objects(topology).queues if q.name in worker.queues)
    mismatches = [p.message for p in check(mine, get_settings().broker_url) if not p.missing]
    if mismatches:
        raise BrokerMismatch(" ".join(mismatches))
    with database_faults(worker.domain):
        connect_once(worker.domain)


@entry_point("worker")
def main(argv: list[str] | None = None) -> int:
    get_settings()
    topology = load()
    parser = argparse.ArgumentParser(
        prog="worker",
        description="Run one worker of topology.yaml. Further options go to `celery worker` "
        "after the topology's own, so they win (e.g. --concurrency=8).",
    )
    parser.add_argument(
        "name",
        choices=sorted(topology.workers),
        metavar="NAME",
        help=f"one of: {', '.join(sorted(topology.workers))}",
    )
    args, celery_options = parser.parse_known_args(argv)
    worker = topology.workers[args.name]
    preflight(topology, worker)

    from .app import app

    app.conf.topology_worker = worker.name
    app.steps["consumer"].add(Heartbeat)

    # After logging is set up, before the worker consumes its first task.
    @signals.celeryd_after_setup.connect(weak=False)
    def warm_caches(**_):
        for cache in caches_to_warm(topology, worker.name):
            cache.start()

    app.worker_main(celery_arguments(worker) + celery_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
