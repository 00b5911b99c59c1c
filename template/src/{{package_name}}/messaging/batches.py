"""Batched tasks whose failed batches are dead-lettered, not silently acknowledged.

celery-batches acknowledges every ``acks_late`` message of a batch even when the batch
raised. This base class retries a failing batch in place, and when the last attempt fails
it rejects the batch's messages without requeueing, so RabbitMQ dead-letters them (through
the queue's policy or arguments, whichever topology.yaml chose).
"""

import logging
import time

from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

log = logging.getLogger(__name__)


class DeadLetteringBatches(Batches):
    abstract = True
    acks_late = True
    #: Extra attempts after the first failure (set from topology.yaml per task).
    retries = 0
    retry_delay_seconds = 0.5

    def __call__(self, requests: list[SimpleRequest]):
        for attempt in range(self.retries + 1):
            try:
                return super().__call__(requests)
            except Exception:
                if attempt == self.retries:
                    raise
                log.warning(
                    "%s: batch of %d failed (attempt %d of %d); retrying",
                    self.name,
                    len(requests),
                    attempt + 1,
                    self.retries + 1,
                    exc_info=True,
                )
                time.sleep(self.retry_delay_seconds * (attempt + 1))

    def flush(self, requests):
        serializable = ([SimpleRequest.from_request(request) for request in requests],)

        def settle(result) -> None:
            # apply_batches_task returns None when the batch raised.
            if result is None:
                log.error("%s: dead-lettering a failed batch of %d", self.name, len(requests))
                for request in requests:
                    request.reject(requeue=False)
            else:
                for request in requests:
                    request.acknowledge()

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None), callback=settle
        )
