"""The Celery application, configured from settings and topology.yaml at import time.

Producers (the API) and workers import the same app, so both declare every queue with the
arguments the topology gives it: RabbitMQ refuses a re-declaration that differs.
"""

from uuid import uuid4

from celery import Celery
from kombu import Exchange, Queue

from ..settings import get_settings
from .topology import Topology, load

PACKAGE = __package__.rsplit(".", 1)[0]


def _queues(topology: Topology) -> list[Queue]:
    return [
        Queue(
            queue.name,
            Exchange(queue.exchange, type="topic", durable=True),
            routing_key=queue.routing_key,
            durable=queue.durable,
            queue_arguments=dict(queue.arguments),
        )
        for queue in topology.queues
    ]


def _router(topology: Topology):
    routes = {
        task: {"queue": queue.name, "exchange": queue.exchange, "routing_key": queue.routing_key}
        for queue in topology.queues
        for task in queue.tasks
    }

    def route(name, args, kwargs, options, task=None, **_):
        try:
            return routes[name]
        except KeyError:
            raise LookupError(f"task {name!r} has no queue in topology.yaml") from None

    return route


class ServiceCelery(Celery):
    @property
    def thread_oid(self) -> str:
        """Name of this thread's rpc reply queue: unique per thread, not per thread id.

        Celery derives it from the thread id, which the OS reuses. A new thread then gets
        the name of a reply queue that was auto-deleted with its old owner, kombu's declare
        cache skips declaring it again, and replies to that thread are dropped.
        """
        try:
            return self._local.reply_queue
        except AttributeError:
            self._local.reply_queue = uuid4().hex
            return self._local.reply_queue


def create_app(topology: Topology) -> Celery:
    app = ServiceCelery(PACKAGE)
    app.conf.update(
        broker_url=get_settings().broker_url,
        # Replies travel over RabbitMQ itself: no extra result store to run.
        result_backend="rpc://",
        task_queues=_queues(topology),
        # A task with no route in topology.yaml fails to send instead of creating a queue.
        task_routes=(_router(topology),),
        task_create_missing_queues=False,
        task_default_queue=topology.queues[0].name,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Quorum queues need QoS per consumer; Celery switches global QoS off when it sees
        # x-queue-type: quorum in the queues this worker consumes.
        worker_detect_quorum_queues=True,
        broker_connection_retry_on_startup=True,
        # A task is sent once the broker has it: without confirms, a message published as
        # the broker stops is lost while its sender (the api's 202) believes it was sent.
        broker_transport_options={"confirm_publish": True},
        imports=[f"{PACKAGE}.{domain}.tasks" for domain in topology.domains],
    )
    return app


app = create_app(load())
