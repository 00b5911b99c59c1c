"""Broker reachability and worker presence for the detailed health endpoint.

Never part of readiness: a broker outage must not take the API out of the load balancer.
Worker presence comes from each topology queue's consumer count (a passive declare), not
from ``inspect ping``, so it needs no reply queue and no worker round trip.
"""

import logging

from kombu import Connection

from ..settings import get_settings
from .topology import load

log = logging.getLogger(__name__)


def broker_details(timeout: float = 1.0) -> dict:
    topology = load()
    try:
        with Connection(get_settings().broker_url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            consumers: dict[str, int] = {}
            for queue in topology.queues:
                channel = connection.channel()
                _, _, count = channel.queue_declare(queue.name, passive=True)
                consumers[queue.worker] = consumers.get(queue.worker, 0) + count
                channel.close()
    except Exception:
        log.warning("detailed health: broker check failed", exc_info=True)
        return {"broker": "unreachable"}
    return {
        "broker": "reachable",
        "workers": {name: "present" if count else "absent" for name, count in consumers.items()},
    }
