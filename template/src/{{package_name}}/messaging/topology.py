"""The messaging topology: schema, loader and the names derived from it.

``topology.yaml`` (next to this package's ``settings.py``) is validated against the models
below; an unknown or wrong key stops the process with a message naming it. Everything else
reads the derived :class:`Topology`, never the YAML.

Derived names, per domain ``d`` and queue key ``q``:

- queue and routing key ``d.q``; task name ``d.q`` for ``match`` and ``reward`` queues;
- ``d``: the domain's topic exchange (topic, so Celery's native delayed delivery works with
  quorum queues);
- ``d.cache``: the fanout exchange of cache events;
- ``d.dlx`` and ``d.q.dlq``: the dead-letter exchange and the queue a dead-lettering queue
  feeds;
- a policy named ``d.q`` in ``dead_letter: policy`` mode, holding DLX and TTL.
"""

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TOPOLOGY_FILE = Path(__file__).resolve().parent.parent / "topology.yaml"
NAME = r"^[a-z][a-z0-9_]*$"
WORKER_NAME = r"^[a-z][a-z0-9-]*[a-z0-9]$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueSpec(_Strict):
    kind: Literal["match", "reward", "task"]
    #: The topology worker that consumes this queue.
    worker: str
    #: Task names routed here; match and reward queues route their own ``d.q`` task.
    tasks: tuple[str, ...] = ()
    #: Messages older than this expire (and dead-letter when ``dead_letter`` is on).
    message_ttl_ms: int | None = Field(default=None, gt=0)
    #: Send rejected and expired messages to ``d.q.dlq`` through ``d.dlx``.
    dead_letter: bool = False
    #: Reward queues: extra attempts at saving a failed batch before it is dead-lettered.
    retries: int = Field(default=0, ge=0, le=10)
    #: Reward queues: save after this many messages ...
    flush_every: int = Field(default=200, gt=0)
    #: ... or after this many seconds, whichever comes first.
    flush_interval: float = Field(default=1.0, gt=0)


class AutoscaleSpec(_Strict):
    """KEDA scales the worker's Deployment on the length of the queues it consumes."""

    min: int = Field(ge=0)
    max: int = Field(gt=0)
    #: Messages waiting per replica: KEDA runs ceil(length / queue_length) replicas.
    queue_length: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscaleSpec":
        _require(self.min <= self.max, f"min ({self.min}) is greater than max ({self.max})")
        return self


class WorkerSpec(_Strict):
    pool: Literal["threads", "prefork", "solo"]
    concurrency: int = Field(gt=0, le=64)
    #: Celery's prefetch multiplier for this worker (0: no limit).
    prefetch: int = Field(ge=0)
    #: Without it the worker runs the replicas the overlay gives it.
    autoscale: AutoscaleSpec | None = None


class DomainSpec(_Strict):
    queues: dict[str, QueueSpec] = Field(min_length=1)
    workers: dict[str, WorkerSpec] = Field(min_length=1)


class TopologySpec(_Strict):
    version: Literal[1]
    queue_type: Literal["classic", "quorum"]
    dead_letter: Literal["policy", "arguments"]
    domains: dict[str, DomainSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "TopologySpec":
        workers_seen: set[str] = set()
        for domain, spec in self.domains.items():
            _require(re.match(NAME, domain), f"domains.{domain}: not a lowercase identifier")
            for name in spec.workers:
                where = f"domains.{domain}.workers.{name}"
                _require(re.match(WORKER_NAME, name), f"{where}: use lowercase letters and dashes")
                _require(name not in workers_seen, f"{where}: worker name used twice")
                workers_seen.add(name)
            kinds_by_worker: dict[str, set[str]] = {}
            for key, queue in spec.queues.items():
                where = f"domains.{domain}.queues.{key}"
                _require(re.match(NAME, key), f"{where}: not a lowercase identifier")
                worker = spec.workers.get(queue.worker)
                _require(worker, f"{where}.worker: no worker {queue.worker!r} in this domain")
                kinds_by_worker.setdefault(queue.worker, set()).add(queue.kind)
                if queue.kind == "match":
                    _require(
                        worker.pool == "threads",
                        f"{where}: match queues need a threads-pool worker, so the cache "
                        "consumer thread and the tasks share one process",
                    )
                if queue.kind == "reward":
                    _require(
                        worker.prefetch == 0
                        or worker.prefetch * worker.concurrency > queue.flush_every,
                        f"{where}: prefetch x concurrency of {queue.worker} must exceed "
                        "flush_every (or prefetch be 0), or batches never fill",
                    )
                if queue.kind == "task":
                    _require(queue.tasks, f"{where}.tasks: a task queue lists its task names")
            for worker_name, kinds in kinds_by_worker.items():
                _require(
                    not {"match", "reward"} <= kinds,
                    f"domains.{domain}.workers.{worker_name}: serves match and reward queues; "
                    "give each its own worker so batches never delay matches",
                )
        return self


def _require(condition: object, message: str) -> None:
    if not condition:
        raise ValueError(message)


class TopologyError(ValueError):
    """topology.yaml is missing, malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class Queue:
    domain: str
    key: str
    name: str
    kind: str
    worker: str
    exchange: str
    routing_key: str
    tasks: tuple[str, ...]
    durable: bool
    #: What Celery declares and what the operator's Queue CR carries.
    arguments: dict[str, object]
    #: The RabbitMQ policy definition for this queue, in ``dead_letter: policy`` mode.
    policy: dict[str, object] | None
    dead_letter_queue: str | None
    spec: QueueSpec


@dataclass(frozen=True)
class Worker:
    name: str
    domain: str
    pool: str
    concurrency: int
    prefetch: int
    queues: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    queue_type: str
    dead_letter: str
    domains: tuple[str, ...]
    queues: tuple[Queue, ...]
    workers: dict[str, Worker] = field(default_factory=dict)

    def queue(self, name: str) -> Queue:
        return next(queue for queue in self.queues if queue.name == name)

    def queue_for_task(self, task_name: str) -> Queue:
        for queue in self.queues:
            if task_name in queue.tasks:
                return queue
        raise KeyError(f"no queue in topology.yaml routes task {task_name!r}")

    def worker_queues(self, worker: str) -> tuple[Queue, ...]:
        return tuple(queue for queue in self.queues if queue.worker == worker)

    def cache_exchange(self, domain: str) -> str:
        return f"{domain}.cache"

    def dead_letter_exchange(self, domain: str) -> str:
        return f"{domain}.dlx"


def _queue(topology: TopologySpec, domain: str, key: str, spec: QueueSpec) -> Queue:
    name = f"{domain}.{key}"
    dead_letter = {}
    if spec.dead_letter:
        dead_letter["dead-letter-exchange"] = f"{domain}.dlx"
        dead_letter["dead-letter-routing-key"] = f"{name}.dlq"
    if spec.message_ttl_ms:
        dead_letter["message-ttl"] = spec.message_ttl_ms
    arguments: dict[str, object] = {"x-queue-type": topology.queue_type}
    policy = None
    if topology.dead_letter == "arguments":
        arguments.update({f"x-{key}": value for key, value in dead_letter.items()})
    elif dead_letter:
        policy = dead_letter
    own_task = (name,) if spec.kind in ("match", "reward") else ()
    return Queue(
        domain=domain,
        key=key,
        name=name,
        kind=spec.kind,
        worker=spec.worker,
        exchange=domain,
        routing_key=name,
        tasks=own_task + spec.tasks,
        durable=True,
        arguments=arguments,
        policy=policy,
        dead_letter_queue=f"{name}.dlq" if spec.dead_letter else None,
        spec=spec,
    )


def build(spec: TopologySpec) -> Topology:
    queues = tuple(
        _queue(spec, domain, key, queue)
        for domain, domain_spec in spec.domains.items()
        for key, queue in domain_spec.queues.items()
    )
    workers = {
        name: Worker(
            name=name,
            domain=domain,
            pool=worker.pool,
            concurrency=worker.concurrency,
            prefetch=worker.prefetch,
            queues=tuple(queue.name for queue in queues if queue.worker == name),
        )
        for domain, domain_spec in spec.domains.items()
        for name, worker in domain_spec.workers.items()
    }
    return Topology(spec.queue_type, spec.dead_letter, tuple(spec.domains), queues, workers)


def parse(text: str, source: str = "topology.yaml") -> Topology:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TopologyError(f"{source}: not valid YAML: {error}") from None
    try:
        return build(TopologySpec.model_validate(data))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise TopologyError(f"{source}: " + "; ".join(problems)) from None


@cache
def load(path: Path = TOPOLOGY_FILE) -> Topology:
    """The service's topology; raises :class:`TopologyError` naming any bad key."""
    from ..settings import DOMAINS

    topology = parse(path.read_text(), source=str(path.name))
    if set(topology.domains) != set(DOMAINS):
        raise TopologyError(
            f"{path.name}: domains {sorted(topology.domains)} differ from the service's "
            f"domains {sorted(DOMAINS)} (settings.py)"
        )
    return topology
