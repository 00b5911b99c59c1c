"""Batched tasks where a bad message costs only itself.

A batch task declares the ``payload`` model of its messages, and its body saves a list of
validated :class:`Event` objects in one transaction. For every flushed batch this base
class:

1. validates each message on its own: one that does not fit the model is dead-lettered
   alone, without retries, and the rest of the batch goes on;
2. saves the valid rest with one call of the task body, retrying a failing batch
   ``retries`` times (topology.yaml);
3. when the database still refuses the rows (a data or integrity error), bisects the batch
   to find the culprits: each message that saves alone is saved once, each one refused
   alone is dead-lettered. Any other failure (database unreachable, busy or misconfigured)
   is no message's fault: the batch goes back to the queue to be tried again, rather than
   parking every message of an outage in the dead-letter queue.

celery-batches acknowledges every ``acks_late`` message of a batch even when the batch
raised; here each message is settled by what happened to it (see dead_letters.py for how
a dead letter carries its reason), and a saved batch is acknowledged with one frame where
that is safe (acks.py).

Warm shutdown (SIGTERM) needs nothing more: Celery stops consuming, lets the pool finish
every batch already flushed to it, acknowledging those, and only then closes the broker
connection. Requests still in celery-batches' buffer were never acknowledged, so the
broker puts them back on the queue. tests/test_messaging.py proves both.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from pydantic import BaseModel, ValidationError

from ..db import refused_rows
from .acks import Ledgers
from .dead_letters import dead_letter, describe

log = logging.getLogger(__name__)

Payload = TypeVar("Payload", bound=BaseModel)


@dataclass(frozen=True)
class Event(Generic[Payload]):
    """A validated message: its task id, which makes saving it idempotent, and payload."""

    id: str
    payload: Payload


@dataclass
class Settlement:
    """What becomes of each message of a batch, by its position in the batch."""

    saved: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    dead: dict[int, str] = field(default_factory=dict)


class DeadLetteringBatches(Batches):
    abstract = True
    acks_late = True
    #: The model each message's keyword arguments must fit (set per task).
    payload: type[BaseModel]
    #: Extra attempts after the first failure (set from topology.yaml per task).
    retries = 0
    retry_delay_seconds = 0.5
    #: Set when a worker consumes the task (Strategy); None when it is only called.
    _ledgers: Ledgers | None = None

    def Strategy(self, task, app, consumer):
        handle = super().Strategy(task, app, consumer)
        ledgers = self._ledgers = Ledgers()
        self._call_soon = consumer.call_soon
        self._connection_errors = consumer.connection_errors

        def handle_and_record(message, *args, **kwargs):
            ledgers.received(message)
            return handle(message, *args, **kwargs)

        return handle_and_record

    def __call__(self, requests: list[SimpleRequest]) -> Settlement:
        settlement = Settlement()
        valid = []
        for position, request in enumerate(requests):
            try:
                payload = self.payload.model_validate(request.kwargs)
            except ValidationError as error:
                settlement.dead[position] = describe(error)
            else:
                valid.append((position, Event(request.id, payload)))
        if valid:
            self._save_with_retries(valid, settlement)
        return settlement

    def _save_with_retries(self, events, settlement: Settlement) -> None:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            error = self._save(events)
            if error is None:
                settlement.saved += [position for position, _ in events]
                return
            if attempt < attempts:
                log.warning(
                    "%s: batch of %d failed (attempt %d of %d); retrying: %s",
                    self.name,
                    len(events),
                    attempt,
                    attempts,
                    describe(error),
                )
                time.sleep(self.retry_delay_seconds * attempt)
        if len(events) > 1 and refused_rows(error):
            log.warning(
                "%s: batch of %d refused; saving it in parts to find the culprits: %s",
                self.name,
                len(events),
                describe(error),
            )
        self._isolate(events, error, settlement)

    def _isolate(self, events, error: Exception, settlement: Settlement) -> None:
        """Halve a refused batch until each part saves or is one refused message: one
        culprit among n messages costs about 2 log2(n) transactions."""
        if not refused_rows(error):
            log.error(
                "%s: batch of %d returned to the queue: %s", self.name, len(events), describe(error)
            )
            settlement.returned += [position for position, _ in events]
        elif len(events) == 1:
            settlement.dead[events[0][0]] = describe(error)
        else:
            middle = len(events) // 2
            for part in (events[:middle], events[middle:]):
                part_error = self._save(part)
                if part_error is None:
                    settlement.saved += [position for position, _ in part]
                else:
                    self._isolate(part, part_error, settlement)

    def _save(self, events) -> Exception | None:
        """Run the task body on ``events`` (one transaction); the error, if it failed."""
        try:
            self.run([event for _, event in events])
        except Exception as error:  # judged by the caller: retry, bisect or return
            return error
        return None

    def flush(self, requests):
        serializable = ([SimpleRequest.from_request(request) for request in requests],)

        def settle(settlement: Settlement | None) -> None:
            # Runs in the pool's thread (or the worker's main process with prefork); an
            # exception here would vanish, and the messages would wait unacknowledged.
            try:
                self._settle(requests, settlement)
            except Exception:
                log.exception("%s: could not settle a batch of %d", self.name, len(requests))

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None), callback=settle
        )

    def _settle(self, requests, settlement: Settlement | None) -> None:
        if settlement is None:  # apply_batches_task logged what raised
            settlement = Settlement(returned=list(range(len(requests))))
        for position in settlement.returned:
            requests[position].reject(requeue=True)
        doomed = [(requests[position], reason) for position, reason in settlement.dead.items()]
        if doomed:
            dead_letter(self.app, self.name, doomed)
        saved = [requests[position] for position in settlement.saved]
        if self._ledgers is None:
            for request in saved:
                request.acknowledge()
            return
        for request in saved:
            request.acknowledged = True  # by the ledger, after everything queued above
        self._call_soon(
            self._ledgers.acknowledge,
            [request.message for request in saved],
            [requests[position].message for position in (*settlement.returned, *settlement.dead)],
            self._connection_errors,
        )
