"""The broker objects the topology describes, and declaring them as the operator would.

In Kubernetes the RabbitMQ Messaging Topology Operator creates these from CRs; with
compose or natively, ``declare-topology`` creates the same objects before any worker
starts. ``--check`` compares an existing broker with the topology instead, and explains a
mismatch rather than letting Celery fail later with PRECONDITION_FAILED.

Failing to reach the broker or its management API, or being refused by either, raises a
``Fault``: one line that names BROKER_URL or RABBITMQ_MANAGEMENT_URL (password masked) and
what to do.
"""

import argparse
import base64
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from amqp.exceptions import AccessRefused, NotAllowed, NotFound, PreconditionFailed
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu import Connection, Exchange
from kombu import Queue as KombuQueue
from kombu.exceptions import OperationalError

from ..faults import Fault, entry_point, masked
from ..settings import get_settings
from .topology import Topology, load


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


class BrokerMismatch(Fault):
    """The broker holds an object that differs from the topology."""


def _explain(queue: BrokerQueue, error: PreconditionFailed) -> str:
    return (
        f"queue {queue.name} exists on the broker with arguments that differ from "
        f"topology.yaml ({', '.join(f'{k}={v}' for k, v in queue.arguments.items())}); "
        f"RabbitMQ says: {error.reply_text}. Queue arguments cannot change in place: move "
        "dead-lettering and TTL into a policy (dead_letter: policy), or declare the queue "
        "under a new name and drain the old one."
    )


@contextmanager
def broker_faults(broker_url: str) -> Iterator[None]:
    """Report a broker that is down or refuses us as a Fault naming BROKER_URL."""
    where = f"the broker at {masked(broker_url)}"
    try:
        yield
    except AccessRefused as error:
        raise Fault(
            f"{where} refused access ({_first_sentence(error.reply_text)}); fix the user or "
            "password in BROKER_URL, or the user's permissions on its virtual host"
        ) from None
    except NotAllowed as error:
        raise Fault(
            f"{where} did not allow the connection ({_first_sentence(error.reply_text)}); "
            "create the virtual host or fix its name in BROKER_URL"
        ) from None
    except (OperationalError, AMQPConnectionError, OSError) as error:
        raise Fault(
            f"{where} is not reachable ({error}); check BROKER_URL and that RabbitMQ is running"
        ) from None


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0]


@contextmanager
def connected(broker_url: str) -> Iterator[Connection]:
    """A connection to the broker, or a Fault naming BROKER_URL when there is none in time.

    BROKER_CONNECT_WAIT_SECONDS bounds the retries of a broker that is down; a refused login
    or an unknown virtual host fails at once, as waiting cannot fix either.
    """
    wait_seconds = get_settings().broker_connect_wait_seconds
    with Connection(broker_url, connect_timeout=min(wait_seconds, 5)) as connection:
        with broker_faults(broker_url):
            connection.ensure_connection(
                max_retries=max(1, int(wait_seconds)),
                interval_start=1,
                interval_step=1,
                interval_max=2,
                timeout=wait_seconds,
            )
        yield connection


def declare(objects: BrokerObjects, broker_url: str, management_url: str) -> None:
    """Create (or confirm) every object; raise a Fault when any step fails.

    Policies go first: they match queues by name and may exist before them, so no queue is
    ever on the broker without the dead-lettering and TTL that topology.yaml gives it, and a
    management API that cannot take them stops the run before anything is declared.
    """
    with connected(broker_url) as connection:
        apply_policies(objects.policies, management_url, vhost_of(broker_url))
        with broker_faults(broker_url):
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


def apply_policies(policies: tuple[BrokerPolicy, ...], management_url: str, vhost: str) -> None:
    if not policies:
        return
    quoted = urllib.parse.quote(vhost, safe="")
    # Ask before changing anything, so a wrong URL or user fails before the first policy.
    management_api(management_url, "GET", "whoami")
    for policy in policies:
        body = {
            "pattern": policy.pattern,
            "definition": policy.definition,
            "apply-to": policy.apply_to,
            "priority": policy.priority,
        }
        management_api(management_url, "PUT", f"policies/{quoted}/{policy.name}", body)


@dataclass(frozen=True)
class QueueProblem:
    queue: str
    missing: bool
    message: str


def check(queues: tuple[BrokerQueue, ...], broker_url: str) -> list[QueueProblem]:
    """Queues missing from the broker or declared there with different arguments."""
    problems = []
    with connected(broker_url) as connection, broker_faults(broker_url):
        for queue in queues:
            try:
                _kombu_queue(queue).bind(connection.channel()).queue_declare(passive=True)
            except NotFound:
                message = f"queue {queue.name} is missing"
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


class ManagementApiError(Fault):
    """The management API is unreachable, refuses us, or is not where the URL says."""


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
    where = f"the RabbitMQ management API at {masked(management_url)}"
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise ManagementApiError(f"{where}: {_advice(error, method, path)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ManagementApiError(
            f"{where} is not reachable ({reason}); enable it with `rabbitmq-plugins enable "
            "rabbitmq_management`, or set RABBITMQ_MANAGEMENT_URL to its address"
        ) from None


def _advice(error: urllib.error.HTTPError, method: str, path: str) -> str:
    answer = f"{method} /api/{path} answered {error.code} {error.reason}"
    if error.code == 401:
        return (
            f"{answer}; fix the user or password in RABBITMQ_MANAGEMENT_URL, and give that "
            "user the policymaker or administrator tag"
        )
    if error.code == 404:
        return (
            f"{answer}; is the management plugin there? Enable it with `rabbitmq-plugins "
            "enable rabbitmq_management`, or set RABBITMQ_MANAGEMENT_URL to its address"
        )
    return answer


@entry_point("declare-topology")
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
    settings = get_settings()
    objects = broker_objects(load())
    if args.check:
        problems = check(objects.queues, settings.broker_url)
        missing = [problem.queue for problem in problems if problem.missing]
        differing = [problem.message for problem in problems if not problem.missing]
        if missing:
            print(
                f"declare-topology: missing on the broker: {', '.join(missing)}; "
                "run `declare-topology`",
                file=sys.stderr,
            )
        if differing:
            print(f"declare-topology: {' '.join(differing)}", file=sys.stderr)
        return 1 if problems else 0
    declare(objects, settings.broker_url, settings.rabbitmq_management_url)
    print(
        f"declared {len(objects.exchanges)} exchanges, {len(objects.queues)} queues, "
        f"{len(objects.bindings)} bindings and {len(objects.policies)} policies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
