"""``worker NAME``: run one topology worker with the flags topology.yaml gives it.

A worker that serves a match queue loads that domain's cache and starts its cache-event
consumer before it consumes a single task, so a restarted worker never answers from an
empty cache.
"""

import argparse
import sys
from importlib import import_module

from celery import signals

from ..settings import SettingsError, get_settings
from .broker import broker_objects, check
from .heartbeat import Heartbeat
from .topology import Topology, TopologyError, Worker, load

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
    for queue in topology.worker_queues(worker):
        if queue.kind == "match":
            yield import_module(f"{PACKAGE}.{queue.domain}.cache").records


def preflight(topology: Topology, worker: Worker) -> list[str]:
    """Refuse to start against queues whose arguments differ from topology.yaml.

    Celery would otherwise fail its own declaration with PRECONDITION_FAILED and retry
    forever. An unreachable broker is not a mismatch: Celery keeps retrying that itself.
    """
    mine = tuple(q for q in broker_objects(topology).queues if q.name in worker.queues)
    try:
        problems = check(mine, get_settings().broker_url)
    except OSError:
        return []
    return [problem.message for problem in problems if not problem.missing]


def main(argv: list[str] | None = None) -> int:
    try:
        get_settings()
        topology = load()
    except (SettingsError, TopologyError) as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2
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
    mismatches = preflight(topology, worker)
    if mismatches:
        for problem in mismatches:
            print(f"worker: {problem}", file=sys.stderr)
        return 1

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
