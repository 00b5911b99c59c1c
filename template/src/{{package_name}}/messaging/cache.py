"""In-process caches kept fresh by broadcast cache events.

Each domain has a fanout exchange ``<domain>.cache``. Every consumer binds its own
exclusive, server-named, auto-delete queue, so every process receives every event (a
shared, named queue would make consumers compete for them). The consumer is a thread in
the match worker's process, so the threads pool serves tasks from the cache it refreshes.
"""

import logging
import threading
from collections.abc import Callable

from kombu import Connection, Exchange, Queue

from ..settings import get_settings
from .broker import broker_faults, connected
from .topology import load

log = logging.getLogger(__name__)

FULL_REFRESH = {"event": "full_refresh"}


def cache_exchange(domain: str) -> Exchange:
    return Exchange(load().cache_exchange(domain), type="fanout", durable=True)


def publish(domain: str, event: dict) -> None:
    """Broadcast an event; a broker still down after BROKER_CONNECT_WAIT_SECONDS is a Fault."""
    broker_url = get_settings().broker_url
    with connected(broker_url) as connection, broker_faults(broker_url):
        exchange = cache_exchange(domain)
        producer = connection.Producer()
        producer.publish(event, exchange=exchange, declare=[exchange], serializer="json")


class LocalCache:
    """A snapshot of key/value pairs, swapped whole on refresh; safe to read from threads."""

    def __init__(self, domain: str, load_all: Callable[[], dict[str, str]]):
        self.domain = domain
        self._load_all = load_all
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        self._consumer: CacheEventConsumer | None = None

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def refresh(self) -> None:
        data = self._load_all()
        with self._lock:
            self._data = data
        log.info("%s cache refreshed: %d records", self.domain, len(data))

    def start(self) -> None:
        """Listen for events first, then load, so no refresh can slip in between."""
        self._consumer = CacheEventConsumer(self.domain, self._on_event)
        self._consumer.start()
        self._consumer.listening.wait(timeout=30)
        self.refresh()

    def stop(self) -> None:
        if self._consumer:
            self._consumer.stop()

    def _on_event(self, event: dict) -> None:
        if event.get("event") == FULL_REFRESH["event"]:
            self.refresh()
        else:
            log.warning("%s cache: ignoring unknown event %r", self.domain, event.get("event"))


class CacheEventConsumer(threading.Thread):
    def __init__(self, domain: str, on_event: Callable[[dict], None]):
        super().__init__(name=f"{domain}-cache-events", daemon=True)
        self.domain = domain
        self.on_event = on_event
        self.listening = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._consume()
            except Exception:
                log.exception("%s cache events: connection lost; reconnecting", self.domain)
                self._stopping.wait(2)

    def _consume(self) -> None:
        queue = Queue(
            "", cache_exchange(self.domain), exclusive=True, auto_delete=True, durable=False
        )
        with Connection(get_settings().broker_url, heartbeat=30) as connection:
            with connection.Consumer(queue, callbacks=[self._received], accept=["json"]):
                self.listening.set()
                while not self._stopping.is_set():
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _received(self, body: dict, message) -> None:
        try:
            self.on_event(body)
        except Exception:
            log.exception("%s cache: handling %r failed", self.domain, body)
        message.ack()
