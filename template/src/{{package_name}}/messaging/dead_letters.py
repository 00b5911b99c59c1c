"""Dead letters that say why they died: an ``x-keel-error`` header on each.

RabbitMQ's own dead-lettering (basic.reject without requeue) cannot add a header, so the
worker publishes a copy of the original message (same body, content type and headers) to
the queue's dead-letter exchange, waits for the broker's confirm, and only then
acknowledges the original. A copy that cannot be published leaves its original on the
queue, so nothing is lost.
"""

import logging
import time
from dataclasses import dataclass

from celery import Celery
from celery.worker.request import Request
from kombu import Message, Producer
from pydantic import ValidationError

from ..db import driver_error
from ..faults import masked
from .topology import load

log = logging.getLogger(__name__)

ERROR_HEADER = "x-keel-error"
REASON_LENGTH = 300
CONFIRM_TIMEOUT_SECONDS = 10
#: After a failed publish, so a broker that refuses every dead letter is not hammered.
RETURN_DELAY_SECONDS = 1.0


def describe(error: BaseException) -> str:
    """``Type: message`` on one short line, without SQL, row values or passwords."""
    if isinstance(error, ValidationError):
        kind = "ValidationError"
        message = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'payload'}: {problem['msg']}"
            for problem in error.errors(include_input=False)
        )
    else:
        # An ORM's text may repeat the statement and its parameters; the driver's does not,
        # and its first line names the problem (a DETAIL line may quote the row).
        error = driver_error(error) or error
        kind = type(error).__name__
        message = next(iter(str(error).strip().splitlines()), "")
    reason = masked(f"{kind}: {message}".strip())
    return reason if len(reason) <= REASON_LENGTH else reason[: REASON_LENGTH - 3] + "..."


@dataclass(frozen=True)
class DeadLetterRoute:
    exchange: str
    routing_key: str


def route_for(task_name: str) -> DeadLetterRoute | None:
    """Where topology.yaml dead-letters the task's queue; None when it does not."""
    topology = load()
    queue = topology.queue_for_task(task_name)
    if queue.dead_letter_queue is None:
        return None
    return DeadLetterRoute(topology.dead_letter_exchange(queue.domain), queue.dead_letter_queue)


def dead_letter(app: Celery, task_name: str, doomed: list[tuple[Request, str]]) -> None:
    """Dead-letter each request with its reason; any that cannot be goes back to its queue."""
    route = route_for(task_name)
    if route is None:
        for request, reason in doomed:
            log.error("%s[%s] rejected (no dead-letter queue): %s", task_name, request.id, reason)
            request.reject(requeue=False)
        return
    pending = list(doomed)
    try:
        with app.connection_for_write(transport_options={"confirm_publish": True}) as connection:
            producer = connection.Producer()
            while pending:
                request, reason = pending[0]
                _publish_copy(producer, request.message, route, reason)
                request.acknowledge()
                pending.pop(0)
                log.error("%s[%s] dead-lettered: %s", task_name, request.id, reason)
    except Exception as error:  # whatever failed, the originals must stay on the queue
        log.error(
            "%s: could not dead-letter %d message(s), returning them to the queue: %s",
            task_name,
            len(pending),
            describe(error),
        )
        time.sleep(RETURN_DELAY_SECONDS)
        for request, _ in pending:
            request.reject(requeue=True)


def _publish_copy(producer: Producer, message: Message, route: DeadLetterRoute, reason: str):
    properties = {
        key: message.properties[key]
        for key in ("correlation_id", "reply_to", "priority")
        if message.properties.get(key) is not None
    }
    producer.publish(
        message.body,
        exchange=route.exchange,
        routing_key=route.routing_key,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers={**message.headers, ERROR_HEADER: reason},
        delivery_mode=2,
        # Unroutable (no binding to the dead-letter queue) raises instead of vanishing.
        mandatory=True,
        confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
        **properties,
    )
