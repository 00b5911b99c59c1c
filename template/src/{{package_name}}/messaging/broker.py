"""The broker objects the topology describes, and declaring them as the operator would.

In Kubernetes the RabbitMQ Messaging Topology Operator creates these from CRs; with
compose or natively, ``declare-topology`` creates the same objects before any worker
starts. ``--check`` compares an existing broker with the topology instead, and explains a
mismatch rather than letting Celery fail later with PRECONDITION_FAILED.
"""

import argparse
import base64
import json
import re
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass

from amqp.exceptions import PreconditionFailed
from kombu import Connection, Exchange
from kombu import Queue as KombuQueue

from ..settings import SettingsError, get_settings
from .topology import Topology, TopologyError, load


@dataclass(frozen=True)
class BrokerExchange:
    name: str
    type: str


@dataclass(frozen=True)
class BrokerQueue:
    name: str
    arguments: dict
    durable: bool = True


@dataclass(frozen=True)
class BrokerBinding:
    source: str
    destination: str
    routing_key: str


@dataclass(frozen=True)
class BrokerPolicy:
    name: str
    pattern: str
    definition: dict
    apply_to: str = "queues"
    priority: int = 1


@dataclass(frozen=True)
class BrokerObjects:
    exchanges: tuple[BrokerExchange, ...]
    queues: tuple[BrokerQueue, ...]
    bindings: tuple[BrokerBinding, ...]
    policies: tuple[BrokerPolicy, ...]


def broker_objects(topology: Topology) -> BrokerObjects:
    """Every exchange, queue, binding and policy an operator declares for the topology."""
    exchanges, queues, bindings, policies = [], [], [], []
    for domain in topology.domains:
        exchanges.append(BrokerExchange(domain, "topic"))
        exchanges.append(BrokerExchange(topology.cache_exchange(domain), "fanout"))
        if any(queue.dead_letter_queue for queue in topology.queues if queue.domain == domain):
            exchanges.append(BrokerExchange(topology.dead_letter_exchange(domain), "direct"))
    for queue in topology.queues:
        queues.append(BrokerQueue(queue.name, dict(queue.arguments), queue.durable))
        bindings.append(BrokerBinding(queue.exchange, queue.name, queue.routing_key))
        if queue.dead_letter_queue:
            dead = queue.dead_letter_queue
            queues.append(BrokerQueue(dead, {"x-queue-type": topology.queue_type}))
            bindings.append(BrokerBinding(topology.dead_letter_exchange(queue.domain), dead, dead))
        if queue.policy:
            pattern = f"^{re.escape(queue.name)}$"
            policies.append(BrokerPolicy(queue.name, pattern, dict(queue.policy)))
    return BrokerObjects(tuple(exchanges), tuple(queues), tuple(bindings), tuple(policies))


def _kombu_queue(queue: BrokerQueue) -> KombuQueue:
    return KombuQueue(
        queue.name, durable=queue.durable, queue_arguments=queue.arguments, no_declare=True
    )


class BrokerMismatch(RuntimeError):
    """The broker holds an object that differs from the topology."""


def _explain(queue: BrokerQueue, error: PreconditionFailed) -> str:
    return (
        f"queue {queue.name} exists on the broker with arguments that differ from "
        f"topology.yaml ({', '.join(f'{k}={v}' for k, v in queue.arguments.items())}); "
        f"RabbitMQ says: {error.reply_text}. Queue arguments cannot change in place: move "
        "dead-lettering and TTL into a policy (dead_letter: policy), or declare the queue "
        "under a new name and drain the old one."
    )


def declare(objects: BrokerObjects, broker_url: str, management_url: str) -> None:
    """Create (or confirm) every object; raise BrokerMismatch on a differing queue."""
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        for exchange in objects.exchanges:
            Exchange(exchange.name, exchange.type, durable=True).declare(channel=channel)
        for queue in objects.queues:
            try:
                _kombu_queue(queue).bind(channel).queue_declare()
            except PreconditionFailed as error:
                raise BrokerMismatch(_explain(queue, error)) from None
        for binding in objects.bindings:
            channel.queue_bind(binding.destination, binding.source, binding.routing_key)
    vhost = urllib.parse.quote(vhost_of(broker_url), safe="")
    for policy in objects.policies:
        body = {
            "pattern": policy.pattern,
            "definition": policy.definition,
            "apply-to": policy.apply_to,
            "priority": policy.priority,
        }
        management_api(management_url, "PUT", f"policies/{vhost}/{policy.name}", body)


@dataclass(frozen=True)
class QueueProblem:
    queue: str
    missing: bool
    message: str


def check(queues: tuple[BrokerQueue, ...], broker_url: str) -> list[QueueProblem]:
    """Queues missing from the broker or declared there with different arguments."""
    problems = []
    with Connection(broker_url, connect_timeout=5) as connection:
        for queue in queues:
            try:
                _kombu_queue(queue).bind(connection.channel()).queue_declare(passive=True)
            except Exception as error:  # noqa: BLE001 - any channel error means "missing"
                message = f"queue {queue.name} is missing ({error.__class__.__name__})"
                problems.append(QueueProblem(queue.name, True, message))
                continue
            try:
                _kombu_queue(queue).bind(connection.channel()).queue_declare()
            except PreconditionFailed as error:
                problems.append(QueueProblem(queue.name, False, _explain(queue, error)))
    return problems


def vhost_of(broker_url: str) -> str:
    path = urllib.parse.urlsplit(broker_url).path.removeprefix("/")
    return urllib.parse.unquote(path) or "/"


def management_api(management_url: str, method: str, path: str, body=None) -> bytes:
    """Call the RabbitMQ management API (policies cannot be declared over AMQP)."""
    parts = urllib.parse.urlsplit(management_url)
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}/api/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"},
    )
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    request.add_header("authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="declare-topology",
        description="Declare the exchanges, queues, bindings and policies of topology.yaml "
        "on the broker, as the Messaging Topology Operator would.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing: validate topology.yaml and report queues that are missing "
        "on the broker or differ from it",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        objects = broker_objects(load())
    except (SettingsError, TopologyError) as error:
        print(f"declare-topology: {error}", file=sys.stderr)
        return 2
    if args.check:
        problems = check(objects.queues, settings.broker_url)
        for problem in problems:
            print(f"declare-topology: {problem.message}", file=sys.stderr)
        return 1 if problems else 0
    try:
        declare(objects, settings.broker_url, settings.rabbitmq_management_url)
    except BrokerMismatch as error:
        print(f"declare-topology: {error}", file=sys.stderr)
        return 1
    print(
        f"declared {len(objects.exchanges)} exchanges, {len(objects.queues)} queues, "
        f"{len(objects.bindings)} bindings and {len(objects.policies)} policies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
